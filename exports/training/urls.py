from django.urls import path

from . import views

page_urlpatterns = [
    path(
        "projects/<int:project_id>/training-jobs/",
        views.training_jobs_page,
        name="training-jobs-page",
    ),
    path(
        "projects/<int:project_id>/training-jobs/<int:job_id>/",
        views.training_job_page,
        name="training-job-page",
    ),
    path(
        "projects/<int:project_id>/training-jobs/<int:job_id>/cancel/",
        views.training_job_cancel,
        name="training-job-cancel",
    ),
    path(
        "projects/<int:project_id>/training-jobs/<int:job_id>/use-for-routing/",
        views.training_job_use_for_routing,
        name="training-job-use-for-routing-page",
    ),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/train/",
        views.snapshot_train,
        name="snapshot-train",
    ),
]
