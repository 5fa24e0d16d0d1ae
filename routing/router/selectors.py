"""Reads of the router's data for pages and the API."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from annotation.models import Annotation, Item, Project
from annotation.routes import JUDGE_TARGETS, PEOPLE_TARGETS
from routing.judges.models import JudgeRun
from routing.router.models import RoutingDecision, RoutingWork
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


# The pipeline: where a project stands ----------------------------------------------------------


# Who counts the resolved items by provenance: the app that owns final preferences (exports)
# registers its count here at start-up (its AppConfig.ready), so routing never imports it and
# the dependency keeps pointing one way (exports -> routing).
ResolvedCounts = Callable[..., dict[str, int]]
_resolved_counts_provider: list[ResolvedCounts] = []


def pipeline_resolved_counts_register(provider: ResolvedCounts) -> None:
    """Set ``provider(*, project_id) -> {"human", "judge", "hybrid", "unresolved": n}``."""
    _resolved_counts_provider[:] = [provider]


def _resolved_counts(project: Project) -> dict[str, int] | None:
    if not _resolved_counts_provider:
        return None
    return _resolved_counts_provider[0](project_id=project.pk)


def project_pipeline(*, project: Project) -> dict[str, Any]:
    """Where the project stands (``GET /api/v1/projects/{id}/pipeline/``, ``manage.py
    pipeline``): items by stage, the budget, the judges' cost, the routing task's state and
    whether any routing or judging work is queued or running (``idle``). Human work may remain
    on an idle project. A constant number of queries, whatever the project's size."""
    from routing.router import loop, route

    config = route.routing_policy_get(project=project)
    judges = list(config.judges or []) if config else []
    primary = judges[0] if judges else None
    answered = Annotation.objects.filter(item=OuterRef("pk"), source=Annotation.Source.JUDGE)
    if primary is not None:
        answered = answered.filter(judge=primary)
    items = Item.objects.filter(project=project).annotate(answered=Exists(answered))
    judge_q, people_q = Q(route__in=JUDGE_TARGETS), Q(route__in=PEOPLE_TARGETS)
    done_q = Q(human_done__gte=project.overlap)
    counts = items.aggregate(
        total=Count("id"),
        unrouted=Count("id", filter=Q(route=Item.Route.UNROUTED)),
        judge_queued=Count("id", filter=judge_q & Q(answered=False)),
        judge_judged=Count("id", filter=judge_q & Q(answered=True)),
        people_waiting=Count("id", filter=people_q & ~done_q),
        people_done=Count("id", filter=people_q & done_q),
    )
    waiting = RoutingDecision.objects.filter(
        project=project, superseded_by__isnull=True, waiting=True
    ).count()
    ready = len(loop.items_ready(project=project, config=config)) if config else 0
    runs = JudgeRun.objects.filter(project=project)
    run_sums = runs.aggregate(
        cost=Sum("cost"),
        calls=Sum("done"),
        cached=Sum("cached"),
        open=Count("id", filter=Q(status__in=JudgeRun.OPEN)),
        automatic=Count("id", filter=Q(automatic=True)),
    )
    stopped = [
        {"run": pk, "judge": name, "status": status, "reason": reason}
        for pk, name, status, reason in runs.filter(
            status__in=[JudgeRun.Status.INCOMPLETE, JudgeRun.Status.CAPPED]
        )
        .exclude(stop_reason="")
        .order_by("-id")
        .values_list("id", "judge__name", "status", "stop_reason")[:5]
    ]
    work = RoutingWork.objects.filter(project=project).first()
    status = work.status if work else RoutingWork.Status.IDLE
    busy = status in RoutingWork.BUSY or run_sums["open"] > 0
    # Work that is due but not yet requested (the moment between a commit and its signal)
    # counts as busy too; after a failure the error is shown instead of waiting forever.
    due = config is not None and (counts["unrouted"] > 0 or ready > 0)
    if status != RoutingWork.Status.FAILED and due:
        busy = True
    return {
        "project": project.pk,
        "policy": (
            {"name": config.name, "version": config.version, "judges": judges} if config else None
        ),
        "items": counts["total"],
        "unrouted": counts["unrouted"],
        "judge": {
            "queued": counts["judge_queued"],
            "judged": counts["judge_judged"],
            "waiting_for_verdicts": waiting,
            "ready_to_reroute": ready,
        },
        "people": {"waiting": counts["people_waiting"], "done": counts["people_done"]},
        "resolved": _resolved_counts(project),
        "budget": route.budget_state(project=project),
        "judge_cost": str(run_sums["cost"] or Decimal(0)),
        "judge_calls": run_sums["calls"] or 0,
        "judge_cached": run_sums["cached"] or 0,
        "judge_runs": {"open": run_sums["open"], "automatic": run_sums["automatic"]},
        "judge_stopped": stopped,
        "routing": {
            "status": status,
            "error": work.error if work else "",
            "reason": work.reason if work else "",
            "runs": work.runs if work else 0,
            "finished_at": work.finished_at.isoformat() if work and work.finished_at else None,
        },
        "idle": not busy,
    }
