"""HTML pages: the project list and a project's page. The workspace is in ``workspace.py``."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from tandem.errors import InvalidInput

from . import selectors
from .import_jobs import (
    import_job_cancel,
    import_job_create,
    import_job_retry,
    import_job_state,
    upload_format,
)
from .models import Annotation, ImportJob
from .rendering import render_markdown


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = selectors.project_list_for_user(user=request.user).annotate(
        n_items=Count("items", distinct=True)
    )
    return render(request, "annotation/home.html", {"projects": projects})


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    access = selectors.project_access_get(user=request.user, project_id=project_id)
    project = access.project
    counts = project.annotations.aggregate(
        human=Count("id", filter=Q(source=Annotation.Source.HUMAN)),
        judge=Count("id", filter=Q(source=Annotation.Source.JUDGE)),
    )
    can_manage = access.can_manage
    jobs = []
    if can_manage:
        jobs = [import_job_state(j) for j in project.import_jobs.order_by("-id")[:3]]
    context = {
        "project": project,
        "n_items": project.items.count(),
        "counts": counts,
        "can_manage": can_manage,
        "can_annotate": access.can_annotate,
        "guidelines_html": render_markdown(project.guidelines),
        "annotators": selectors.annotator_progress(project=project) if can_manage else None,
        "jobs": jobs,
    }
    return render(request, "annotation/project_detail.html", context)


@login_required
@require_POST
def project_import(request: HttpRequest, project_id: int) -> HttpResponse:
    """Upload a file from the project page; the worker imports it while the page polls."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    upload = request.FILES.get("file")
    if upload is None:
        raise InvalidInput("Choose a file to import.")
    fmt = upload_format(upload.name)
    job = import_job_create(
        project=project,
        user=request.user,
        upload=upload,
        name=upload.name,
        fmt=fmt,
        partial=request.POST.get("partial") == "on",
    )
    return _render_job(request, project, job)


@login_required
@require_GET
def import_job_detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """The progress partial that the project page polls until the import ends."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    job = ImportJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404
    return _render_job(request, project, job)


@login_required
@require_POST
def import_job_control(
    request: HttpRequest, project_id: int, job_id: int, verb: str
) -> HttpResponse:
    """Retry or cancel an import from the project page (managers); answers the job's partial."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    job = ImportJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404
    if verb == "retry":
        job = import_job_retry(job=job)
    elif verb == "cancel":
        job = import_job_cancel(job=job, user=request.user)
    else:
        raise Http404
    return _render_job(request, project, job)


def _render_job(request: HttpRequest, project, job: ImportJob) -> HttpResponse:
    context = {"project": project, "job": import_job_state(job)}
    return render(request, "annotation/project_detail.html#import-job", context)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
