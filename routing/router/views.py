"""HTML pages of the router: the manager's routing page and an item's routing history."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.selectors import project_get_for_user
from routing.router import fitting, route, selectors


@login_required
@require_GET
def project_routing(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    context = {
        "project": project,
        "policy": route.routing_policy_get(project=project),
        "budget": route.budget_state(project=project),
        "expected": fitting.project_expected_agreement(project=project),
        "routes": selectors.route_counts(project=project),
    }
    return render(request, "routing/project_routing.html", context)


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
