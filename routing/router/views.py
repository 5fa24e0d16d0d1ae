"""HTML pages of the router: the manager's routing page (policy form, dry run, route now, the
history of versions) and an item's routing history."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.selectors import project_get_for_user
from routing.router import fitting, reward_margins, route, selectors
from routing.router.forms import RoutingPolicyForm
from tandem.errors import ApplicationError


def _page_context(project, form) -> dict:
    return {
        "project": project,
        "form": form,
        "policy": route.routing_policy_get(project=project),
        "budget": route.budget_state(project=project),
        "expected": fitting.project_expected_agreement(project=project),
        "routes": selectors.route_counts(project=project),
        "history": route.routing_policy_history(project=project)[:50],
        "reward_feature": reward_margins.reward_feature_get(project=project),
    }


@login_required
@require_http_methods(["GET", "POST"])
def project_routing(request: HttpRequest, project_id: int) -> HttpResponse:
    """The routing page; POST sets the policy (a new version)."""
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    policy = route.routing_policy_get(project=project)
    form = RoutingPolicyForm(request.POST or None, policy=policy)
    if request.method == "POST" and form.is_valid():
        try:
            saved = route.routing_policy_set(project=project, **form.policy_values())
        except ValidationError as exc:
            form.add_policy_errors(exc.message_dict)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Routing policy saved (version {saved.version}).")
            return redirect("routing-project", project_id=project.pk)
    status = 400 if form.is_bound and form.errors else 200
    return render(
        request, "routing/project_routing.html", _page_context(project, form), status=status
    )


@login_required
@require_POST
def routing_dry_run(request: HttpRequest, project_id: int) -> HttpResponse:
    """How many unrouted items each target would get under the form's policy (htmx partial)."""
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    form = RoutingPolicyForm(request.POST)
    context = {"project": project, "dry_run": None, "error": None}
    if form.is_valid():
        values = form.policy_values()
        try:
            context["dry_run"] = route.routing_dry_run(
                project=project, name=values["name"], params=values["params"]
            )
        except ValidationError as exc:
            context["error"] = "; ".join(exc.messages)
        except ApplicationError as exc:
            context["error"] = exc.message
    else:
        context["error"] = "Fix the form's fields first."
    return render(request, "routing/project_routing.html#dry-run", context)


@login_required
@require_POST
def routing_route_now(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    if route.routing_policy_get(project=project) is None:
        messages.error(request, "Set a routing policy first.")
        return redirect("routing-project", project_id=project.pk)
    result = route.project_route(project=project)
    counts = ", ".join(f"{n} to {target}" for target, n in result.counts().items())
    messages.success(request, f"Routed {result.n_routed} items: {counts}.")
    return redirect("routing-project", project_id=project.pk)


@login_required
@require_GET
def item_routing(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    item = selectors.item_get(project=project, item_id=item_id)
    context = {"project": project, "item": item, "decisions": selectors.decision_list(item=item)}
    return render(request, "routing/item_routing.html", context)


@login_required
@require_GET
def project_pipeline(request: HttpRequest, project_id: int) -> HttpResponse:
    """The pipeline block of the manager's project page (htmx-polled while work is under way)."""
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    context = {"project": project, "pipeline": selectors.project_pipeline(project=project)}
    return render(request, "routing/pipeline_block.html", context)
