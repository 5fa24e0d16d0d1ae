from django.urls import path

from . import api, views

api_urlpatterns = [
    path(
        "projects/<int:project_id>/preferences/",
        api.PreferenceListView.as_view(),
        name="project-preferences",
    ),
    path(
        "projects/<int:project_id>/snapshots/",
        api.SnapshotListView.as_view(),
        name="project-snapshots",
    ),
    path(
        "projects/<int:project_id>/snapshots/preview/",
        api.SnapshotPreviewView.as_view(),
        name="project-snapshot-preview",
    ),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/",
        api.SnapshotDetailView.as_view(),
        name="project-snapshot",
    ),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/files/<path:path>",
        api.SnapshotFileView.as_view(),
        name="project-snapshot-file",
    ),
]

page_urlpatterns = [
    path("projects/<int:project_id>/snapshots/", views.snapshot_page, name="snapshots-page"),
    path(
        "projects/<int:project_id>/snapshots/preview/",
        views.snapshot_preview,
        name="snapshots-preview",
    ),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/",
        views.snapshot_row,
        name="snapshots-row",
    ),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/delete/",
        views.snapshot_remove,
        name="snapshots-delete",
    ),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/files/<path:path>",
        views.snapshot_download,
        name="snapshots-download",
    ),
]
