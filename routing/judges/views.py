"""HTML pages for judge runs: a project's runs, and one run's progress (htmx-polled)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation import selectors as annotation_selectors
from annotation.models import Annotation
from routing.judges import selectors, services
from tandem.errors import NotFound

RECENT_VERDICTS = 5


@login_required
@require_GET
def judge_run_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = annotation_selectors.project_get_for_user(
        user=request.user, project_id=project_id, manage=True
    )
    runs = selectors.judge_run_list_for_user(user=request.user).filter(project=project)
    context = {
        "project": project,
        "runs": runs.order_by("-id")[:100],
        "totals": selectors.project_judge_cost(project=project),
    }
    return render(request, "routing/judges/run_list.html", context)


@login_required
@require_GET
def judge_run_detail(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    """The run's page; htmx asks for ``#progress`` every second until the run is finished."""
    project = annotation_selectors.project_get_for_user(
        user=request.user, project_id=project_id, manage=True
    )
    run = selectors.judge_run_get_for_user(user=request.user, run_id=run_id, project=project)
    recent = Annotation.objects.filter(judge_run_id=run.pk).order_by("-id")[:RECENT_VERDICTS]
    context = {"project": project, "run": run, "recent": recent}
    template = "routing/judges/run_detail.html"
    if request.htmx:
        template += "#progress"
    return render(request, template, context)


@login_required
@require_POST
def judge_run_control(request: HttpRequest, project_id: int, run_id: int, verb: str):
    project = annotation_selectors.project_get_for_user(
        user=request.user, project_id=project_id, manage=True
    )
    run = selectors.judge_run_get_for_user(user=request.user, run_id=run_id, project=project)
    if verb == "cancel":
        services.judge_run_cancel(run=run)
    elif verb == "resume":
        services.judge_run_resume(run=run)
    else:
        raise NotFound("No such action.")
    return redirect("project-judge-run", project_id=project.pk, run_id=run.pk)
