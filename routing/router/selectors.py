"""Reads of the router's data for pages and the API."""

from django.db.models import Count, QuerySet

from annotation.models import Item, Project
from routing.router.models import RoutingDecision
from tandem.errors import NotFound


def item_get(*, project: Project, item_id: int | str) -> Item:
    try:
        return Item.objects.get(project=project, pk=item_id)
    except (Item.DoesNotExist, ValueError):
        raise NotFound("No such item.") from None


def decision_list(*, item: Item) -> QuerySet[RoutingDecision]:
    return RoutingDecision.objects.filter(item=item).order_by("id")


def route_counts(*, project: Project) -> dict[str, int]:
    rows = Item.objects.filter(project=project).values("route").annotate(n=Count("id"))
    counts = {choice: 0 for choice in Item.Route.values}
    counts.update({row["route"]: row["n"] for row in rows})
    return counts
