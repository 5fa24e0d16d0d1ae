from django.urls import path

from . import api

api_urlpatterns = [
    path(
        "projects/<int:project_id>/preferences/",
        api.PreferenceListView.as_view(),
        name="project-preferences",
    ),
]
