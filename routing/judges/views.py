"""HTML pages for judge runs: a project's runs, and one run's progress (htmx-polled)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation import selectors as annotation_selectors
from annotation.models import Annotation, Item
from routing.judges import selectors, services
from routing.judges.estimate import judge_run_estimate
from routing.judges.forms import JudgeForm, RunStartForm, TrialForm
from routing.judges.trial import judge_test_call
from tandem.errors import ApplicationError, Forbidden, NotFound

RECENT_VERDICTS = 5


@login_required
@require_http_methods(["GET", "POST"])
def judge_run_list(request: HttpRequest, project_id: int) -> HttpResponse:
    """A project's runs, and the form that starts one (POST)."""
    project = annotation_selectors.project_get_for_user(
        user=request.user, project_id=project_id, manage=True
    )
    initial = {k: request.GET[k] for k in ("scope", "item_ids") if k in request.GET}
    form = RunStartForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            run = services.judge_run_create(
                project=project, created_by=request.user, **form.run_arguments()
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("project-judge-run", project_id=project.pk, run_id=run.pk)
    runs = selectors.judge_run_list_for_user(user=request.user).filter(project=project)
    context = {
        "project": project,
        "runs": runs.order_by("-id")[:100],
        "totals": selectors.project_judge_cost(project=project),
        "form": form,
    }
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "routing/judges/run_list.html", context, status=status)


@login_required
@require_POST
def judge_run_estimate_view(request: HttpRequest, project_id: int) -> HttpResponse:
    """The cost estimate of the run the form describes (an htmx partial; writes nothing)."""
    project = annotation_selectors.project_get_for_user(
        user=request.user, project_id=project_id, manage=True
    )
    form = RunStartForm(request.POST)
    context = {"project": project, "form": form, "estimate": None, "error": None}
    if form.is_valid():
        args = form.run_arguments()
        try:
            if args["scope"] != "selection":
                services.check_scope_has_items(project=project, scope=args["scope"])
            context["estimate"] = judge_run_estimate(project=project, **args)
        except ApplicationError as exc:
            context["error"] = exc.message
    return render(request, "routing/judges/run_list.html#estimate", context)


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


# --- judges (site-wide; managers read, admins change) -----------------------------------------


def _judges_visible(user) -> None:
    if not user.is_manager:
        raise Forbidden("Judges are visible to managers and admins.")


def _judges_editable(user) -> None:
    if not user.is_admin:
        raise Forbidden("Only admins configure judges.")


@login_required
@require_GET
def judge_list(request: HttpRequest) -> HttpResponse:
    _judges_visible(request.user)
    return render(request, "routing/judges/judge_list.html", {"judges": selectors.judge_list()})


@login_required
@require_http_methods(["GET", "POST"])
def judge_edit(request: HttpRequest, judge_id: int | None = None) -> HttpResponse:
    """Add a judge (no id) or edit one; admins only. The test call is on the edit page."""
    _judges_editable(request.user)
    judge = selectors.judge_get(name_or_id=judge_id) if judge_id is not None else None
    form = JudgeForm(request.POST or None, instance=judge)
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in services.JUDGE_FIELDS}
        try:
            if judge is None:
                judge = services.judge_create(**fields)
            else:
                judge = services.judge_update(
                    judge=selectors.judge_get(name_or_id=judge.pk), **fields
                )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Judge {judge.name} saved.")
            return redirect("judges-page-edit", judge_id=judge.pk)
    context = {"form": form, "judge": judge, "trial_form": TrialForm()}
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "routing/judges/judge_form.html", context, status=status)


@login_required
@require_POST
def judge_test(request: HttpRequest, judge_id: int) -> HttpResponse:
    """One call to the judge; the raw answer, the parsed label and the cost (htmx partial)."""
    _judges_editable(request.user)
    judge = selectors.judge_get(name_or_id=judge_id)
    form = TrialForm(request.POST)
    context = {"judge": judge, "trial_form": form, "result": None}
    if form.is_valid():
        item = None
        if form.cleaned_data["item"]:
            item = (
                Item.objects.filter(pk=form.cleaned_data["item"]).select_related("project").first()
            )
            if item is None:
                form.add_error("item", "No such item.")
        if not form.errors:
            try:
                context["result"] = judge_test_call(judge=judge, item=item)
            except ApplicationError as exc:  # e.g. the key's variable is not set
                context["error"] = exc.message
    return render(request, "routing/judges/judge_form.html#trial", context)
