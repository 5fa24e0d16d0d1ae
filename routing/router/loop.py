"""The hybrid loop: items route, get judged, re-route to people, without anyone pressing a button.

What starts work (``routing.router.receivers``): items arriving
(``annotation.signals.items_added``), a policy set (``route.routing_policy_set``) and a judge run
ending (``routing.judges.signals.run_finished``). Each only *requests* the project's routing work
(``routing_work_request``); one Celery task (``project_route_task``) then advances the project:

1. route the unrouted items (``route.project_route``);
2. re-route the judge-first items whose verdicts are all in (``items_reroute_ready``): every
   item parked with the judges whose primary judge has answered and that no open run of the
   policy's judges still holds. They are ranked together in one ``items_reroute``, so the items
   of a run (or of several runs that end together) compete for the budget as the simulation's
   items do; the budget's row lock keeps concurrent routers within it;
3. ask each policy judge for an automatic run over its backlog
   (``routing.judges.services.judge_run_automatic_request``: one open run per (project, judge)).

Race model: ``RoutingWork`` (one row per project) is locked while its status changes, and its
status changes only in ``_work_enter``. A request while the task is queued is coalesced (a burst
of imports enqueues one task); a request while it runs sets ``again`` and the same task goes
round once more; the routing itself is serialised by the budget's row lock, so even two tasks at
once (a redelivered message) route each item once. A task that fails records why (``failed``):
the project does not look busy forever, and the next request starts afresh.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from annotation.models import Annotation, Item, Project
from routing.judges.models import Judge, JudgeRun
from routing.judges.services import judge_run_automatic_request
from routing.router import route
from routing.router.models import RoutingDecision, RoutingPolicy, RoutingWork

logger = logging.getLogger(__name__)

# A task queued or running for longer than this is taken for lost (its message or worker gone
# without a failure to report): the next request enqueues a new one.
STALE_AFTER = timedelta(minutes=15)

_ALLOWED = {
    RoutingWork.Status.IDLE: {RoutingWork.Status.QUEUED},
    RoutingWork.Status.FAILED: {RoutingWork.Status.QUEUED},
    RoutingWork.Status.QUEUED: {
        RoutingWork.Status.QUEUED,
        RoutingWork.Status.RUNNING,
        RoutingWork.Status.FAILED,
        RoutingWork.Status.IDLE,
    },
    RoutingWork.Status.RUNNING: {
        RoutingWork.Status.QUEUED,
        RoutingWork.Status.RUNNING,
        RoutingWork.Status.IDLE,
        RoutingWork.Status.FAILED,
    },
}


def _work_locked(project_id: int) -> RoutingWork:
    RoutingWork.objects.get_or_create(project_id=project_id)
    return RoutingWork.objects.select_for_update().get(project_id=project_id)


def _work_enter(work: RoutingWork, status: str, **changes: Any) -> RoutingWork:
    """The one transition of ``RoutingWork`` (the row is locked by the caller)."""
    if status not in _ALLOWED[work.status]:
        raise RuntimeError(f"routing work of {work.project_id}: {work.status} -> {status}")
    now = timezone.now()
    work.status = status
    if status == RoutingWork.Status.QUEUED:
        work.requested_at = now
        work.error = ""
    elif status == RoutingWork.Status.RUNNING and not changes.get("again"):
        work.started_at = now
    elif status in (RoutingWork.Status.IDLE, RoutingWork.Status.FAILED):
        work.finished_at = now
    for name, value in changes.items():
        setattr(work, name, value)
    work.save()
    return work


def _stale(work: RoutingWork) -> bool:
    since = work.started_at if work.status == RoutingWork.Status.RUNNING else work.requested_at
    return since is None or timezone.now() - since > STALE_AFTER


def routing_work_request(*, project_id: int, reason: str) -> bool:
    """Ask for the project's routing work; True when a task was enqueued (else coalesced)."""
    with transaction.atomic():
        work = _work_locked(project_id)
        if work.status in RoutingWork.BUSY and not _stale(work):
            if work.status == RoutingWork.Status.RUNNING and not work.again:
                _work_enter(work, RoutingWork.Status.RUNNING, again=True)
            return False
        _work_enter(work, RoutingWork.Status.QUEUED, reason=reason[:200], again=False)
        transaction.on_commit(lambda: _enqueue(project_id))
    return True


def _enqueue(project_id: int) -> None:
    from routing.router.tasks import project_route_task

    try:
        project_route_task.delay(project_id)
    except BrokerError as exc:
        logger.error("could not enqueue the routing of project %s: %s", project_id, exc)
        routing_work_fail(project_id=project_id, error=f"could not enqueue the task: {exc}")


def routing_work_fail(*, project_id: int, error: str) -> None:
    """Record why the routing task failed (its ``on_failure``): the project is no longer busy."""
    with transaction.atomic():
        work = _work_locked(project_id)
        if work.status in RoutingWork.BUSY:
            _work_enter(work, RoutingWork.Status.FAILED, error=error[:2000], again=False)


@dataclass
class Advance:
    """What one pass of the loop did."""

    routed: dict[str, int] = field(default_factory=dict)
    rerouted: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int | None] = field(default_factory=dict)  # judge -> open automatic run
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "routed": self.routed,
            "rerouted": self.rerouted,
            "runs": self.runs,
            "notes": self.notes,
        }


def routing_work_execute(*, project_id: int) -> dict[str, Any]:
    """The task's body: advance the project, again while more requests came in meanwhile."""
    with transaction.atomic():
        work = _work_locked(project_id)
        if work.status != RoutingWork.Status.RUNNING:
            if work.status not in RoutingWork.BUSY:  # a duplicate delivery: work anyway
                _work_enter(work, RoutingWork.Status.QUEUED, reason="redelivered")
            _work_enter(work, RoutingWork.Status.RUNNING, runs=work.runs + 1)
    out: list[dict[str, Any]] = []
    while True:
        project = Project.objects.filter(pk=project_id).first()
        if project is not None:
            try:
                out.append(project_advance(project=project).as_dict())
            except Exception as exc:
                # Recorded here as well as by the task's on_failure, so that a project run by
                # an eager Celery (the embedded shape, tests) never stays "running" either.
                routing_work_fail(project_id=project_id, error=f"{type(exc).__name__}: {exc}")
                raise
        with transaction.atomic():
            work = _work_locked(project_id)
            if work.again:
                _work_enter(work, RoutingWork.Status.RUNNING, again=False, runs=work.runs + 1)
                continue
            _work_enter(work, RoutingWork.Status.IDLE)
            break
    return {"passes": out}


def project_advance(*, project: Project) -> Advance:
    """One pass of the loop (module docstring): route, re-route what is ready, judge."""
    done = Advance()
    config = route.routing_policy_get(project=project)
    if config is None:
        return done
    if Item.objects.filter(project=project, route=Item.Route.UNROUTED).exists():
        done.routed = route.project_route(project=project).counts()
    done.rerouted = items_reroute_ready(project=project, config=config)
    judges = {j.name: j for j in Judge.objects.filter(name__in=config.judges or [])}
    for name in config.judges or []:
        judge = judges.get(name)
        if judge is None:
            done.notes.append(f"no judge named {name!r}")
            continue
        if not judge.active:
            done.notes.append(f"judge {name!r} is inactive")
        run = judge_run_automatic_request(
            project=project, judge=judge, cost_cap=config.judge_cost_cap
        )
        done.runs[name] = run.pk if run else None
    return done


def project_route_now(*, project: Project) -> route.RouteResult:
    """ "Route now" (a manager's button): route the unrouted items in the request, then let the
    loop take it from there (automatic judge runs for what went to the judges)."""
    result = route.project_route(project=project)
    if result.n_routed:
        routing_work_request(project_id=project.pk, reason="routed now")
    return result


def open_runs(*, project: Project, judges: list[str]):
    return JudgeRun.objects.filter(
        project=project, judge__name__in=judges, status__in=JudgeRun.OPEN
    )


def items_ready(*, project: Project, config: RoutingPolicy) -> list[int]:
    """Items parked with the judges whose verdicts are all in (module docstring, step 2)."""
    judges = list(config.judges or [])
    if not judges:
        return []
    held: set[int] = set()
    for scope, ids in open_runs(project=project, judges=judges).values_list("scope", "item_ids"):
        if scope != JudgeRun.Scope.SELECTION:
            return []  # a run over every routed item holds them all
        held.update(ids or [])
    answered = Annotation.objects.filter(
        item=OuterRef("item_id"), source=Annotation.Source.JUDGE, judge=judges[0]
    )
    parked = (
        RoutingDecision.objects.filter(
            project=project, superseded_by__isnull=True, waiting=True, target=Item.Route.JUDGE
        )
        .filter(Exists(answered))
        .order_by("item_id")
        .values_list("item_id", flat=True)
    )
    return [item_id for item_id in parked if item_id not in held]


def items_reroute_ready(*, project: Project, config: RoutingPolicy) -> dict[str, int]:
    ready = items_ready(project=project, config=config)
    if not ready:
        return {}
    return route.items_reroute(
        project=project, item_ids=ready, reason="once the judges' verdicts were in"
    ).counts()
