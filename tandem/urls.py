from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.routers import DefaultRouter

from annotation import api as annotation_api
from annotation import project_pages, workspace, workspace_api
from annotation import views as annotation_views
from exports import urls as exports_urls
from exports.training import api as training_api
from exports.training import urls as training_urls
from routing import urls as routing_urls
from routing.judges import api as judge_api
from routing.judges import views as judge_views

router = DefaultRouter()
router.register("projects", annotation_api.ProjectViewSet, basename="api-project")
router.register("annotations", annotation_api.AnnotationViewSet, basename="annotation")
router.register("import-jobs", annotation_api.ImportJobViewSet, basename="import-job")
router.register("judges", judge_api.JudgeViewSet, basename="judge")
router.register("judge-runs", judge_api.JudgeRunViewSet, basename="judge-run")
router.register("training-jobs", training_api.TrainingJobViewSet, basename="training-job")

api_urls = [
    path("projects/<int:project_id>/next/", workspace_api.NextTaskView.as_view(), name="task-next"),
    path(
        "assignments/<int:assignment_id>/submit/",
        workspace_api.SubmitView.as_view(),
        name="task-submit",
    ),
    path(
        "assignments/<int:assignment_id>/skip/", workspace_api.SkipView.as_view(), name="task-skip"
    ),
    *routing_urls.api_urlpatterns,
    *exports_urls.api_urlpatterns,
    path("", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

urlpatterns = [
    path("", annotation_views.home, name="home"),
    path("projects/new/", project_pages.project_new, name="project-new"),
    path("projects/<int:project_id>/", annotation_views.project_detail, name="project-detail"),
    path(
        "projects/<int:project_id>/settings/",
        project_pages.project_settings,
        name="project-settings",
    ),
    path(
        "projects/<int:project_id>/members/", project_pages.project_members, name="project-members"
    ),
    path(
        "projects/<int:project_id>/members/<int:user_id>/",
        project_pages.project_member_change,
        name="project-member",
    ),
    path("markdown-preview/", project_pages.markdown_preview, name="markdown-preview"),
    path("projects/<int:project_id>/work/", workspace.workspace, name="workspace"),
    path("projects/<int:project_id>/work/next/", workspace.task_next, name="workspace-next"),
    path("projects/<int:project_id>/work/progress/", workspace.progress, name="workspace-progress"),
    path(
        "projects/<int:project_id>/work/<int:assignment_id>/submit/",
        workspace.task_submit,
        name="workspace-submit",
    ),
    path("projects/<int:project_id>/work/undo/", workspace.task_undo, name="workspace-undo"),
    path(
        "projects/<int:project_id>/labels/<int:annotation_id>/correct/",
        workspace.label_correct,
        name="workspace-correct",
    ),
    path("my-labels/", annotation_views.my_labels, name="my-labels"),
    path(
        "projects/<int:project_id>/work/<int:assignment_id>/skip/",
        workspace.task_skip,
        name="workspace-skip",
    ),
    path(
        "projects/<int:project_id>/import/", annotation_views.project_import, name="project-import"
    ),
    path("projects/<int:project_id>/items/", annotation_views.item_list, name="project-items"),
    path(
        "projects/<int:project_id>/items/<int:item_id>/",
        annotation_views.item_detail,
        name="project-item",
    ),
    path(
        "projects/<int:project_id>/quality/",
        annotation_views.project_quality,
        name="project-quality-page",
    ),
    path(
        "projects/<int:project_id>/quality/<str:table>.csv",
        annotation_views.project_quality_csv,
        name="project-quality-csv",
    ),
    path(
        "projects/<int:project_id>/import-jobs/<int:job_id>/",
        annotation_views.import_job_detail,
        name="project-import-job",
    ),
    path(
        "projects/<int:project_id>/import-jobs/<int:job_id>/<str:verb>/",
        annotation_views.import_job_control,
        name="project-import-job-control",
    ),
    *routing_urls.page_urlpatterns,
    *exports_urls.page_urlpatterns,
    *training_urls.page_urlpatterns,
    path(
        "projects/<int:project_id>/judge-runs/",
        judge_views.judge_run_list,
        name="project-judge-runs",
    ),
    path(
        "projects/<int:project_id>/judge-runs/estimate/",
        judge_views.judge_run_estimate_view,
        name="project-judge-run-estimate",
    ),
    path(
        "projects/<int:project_id>/judge-runs/<int:run_id>/",
        judge_views.judge_run_detail,
        name="project-judge-run",
    ),
    path(
        "projects/<int:project_id>/judge-runs/<int:run_id>/<str:verb>/",
        judge_views.judge_run_control,
        name="project-judge-run-control",
    ),
    path("judges/", judge_views.judge_list, name="judges-page"),
    path("judges/new/", judge_views.judge_edit, name="judges-page-new"),
    path("judges/<int:judge_id>/", judge_views.judge_edit, name="judges-page-edit"),
    path("judges/<int:judge_id>/test/", judge_views.judge_test, name="judges-page-test"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_urls)),
    path("healthz", annotation_views.healthz, name="healthz"),
]

handler404 = "tandem.views.page_not_found"
