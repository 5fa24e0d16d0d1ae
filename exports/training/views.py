"""HTML pages of training jobs: a project's jobs, one job (htmx-polled log, loss curve and test
figures), cancel, and the Train form beside a snapshot. Managers of the project only; anyone
else gets 404, as for a missing job."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.selectors import project_access_get
from tandem.errors import InvalidInput, NotFound

from . import jobs, routing_scores, selectors
from .models import TrainingJob
from .plots import curve_svg

RECENT = 100


def _project(request: HttpRequest, project_id: int):
    """The project, if the caller manages it (404 otherwise, annotators included)."""
    access = project_access_get(user=request.user, project_id=project_id)
    if not access.can_manage:
        raise NotFound("No such project.")
    return access.project


@login_required
@require_GET
def training_jobs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id)
    rows = TrainingJob.objects.filter(project=project).defer("log").order_by("-id")[:RECENT]
    return render(request, "exports/training/jobs.html", {"project": project, "jobs": rows})


@login_required
@require_GET
def training_job_page(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """The job; htmx asks for ``#progress`` every 2 s until the job has ended."""
    project = _project(request, project_id)
    job = selectors.training_job_get_for_user(
        user=request.user, job_id=job_id, project_id=project.pk
    )
    context = {"project": project, "job": job, "plot": curve_svg(job.metrics.get("curve") or [])}
    template = "exports/training/job.html"
    if request.htmx:
        template += "#progress"
    return render(request, template, context)


@login_required
@require_POST
def training_job_cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    project = _project(request, project_id)
    job = selectors.training_job_get_for_user(
        user=request.user, job_id=job_id, project_id=project.pk
    )
    jobs.training_job_cancel(job=job)
    return redirect("training-job-page", project_id=project.pk, job_id=job.pk)


@login_required
@require_POST
def training_job_use_for_routing(request: HttpRequest, project_id: int, job_id: int):
    """The job page's "Use for routing" button: register the reward model, score the items,
    and show the routing page, where the scoring's progress is."""
    project = _project(request, project_id)
    job = selectors.training_job_get_for_user(
        user=request.user, job_id=job_id, project_id=project.pk
    )
    routing_scores.reward_routing_register(job=job, user=request.user)
    messages.success(request, f"Training job {job.pk}'s reward model is scoring the items.")
    return redirect("routing-project", project_id=project.pk)


@login_required
@require_POST
def snapshot_train(request: HttpRequest, project_id: int, snapshot_id: int) -> HttpResponse:
    """The Train button beside a snapshot: queue a job, then show it."""
    project = _project(request, project_id)
    snapshot = selectors.snapshot_get_for_manager(user=request.user, snapshot_id=snapshot_id)
    if snapshot.project_id != project.pk:
        raise NotFound("No such snapshot.")
    hyperparameters: dict = {}
    epochs = request.POST.get("epochs", "").strip()
    if epochs:
        try:
            hyperparameters["epochs"] = float(epochs)
        except ValueError:
            raise InvalidInput("epochs: a number", details={"epochs": epochs}) from None
    if request.POST.get("lora"):
        hyperparameters["lora"] = True
    job = jobs.training_job_create(
        snapshot=snapshot,
        user=request.user,
        kind=request.POST.get("kind", ""),
        base_model=request.POST.get("base_model") or None,
        hyperparameters=hyperparameters,
    )
    return redirect("training-job-page", project_id=project.pk, job_id=job.pk)
