"""A project's aggregation method and its recomputes: choose, schedule, run, report progress.

The choice is an ``exports.Aggregation`` row keyed by project (``annotation`` knows nothing of
it; no row: ``majority`` with judges). ``aggregation_set`` validates and stores it;
``aggregation_recompute`` stores it and queues a whole-project recompute at once;
``preferences_schedule`` is what new labels call.

Race model and coalescing. Every recompute request bumps ``generation`` under the row's lock
and sets ``queued``; a task is enqueued only when the row was not already ``queued`` (a queued
task reads the labels when it starts, so it covers labels that arrive before then). New labels
on a project with a project-level method (Dawid-Skene, gold-weighted, Bradley-Terry) wait
``DEBOUNCE_S`` before the task runs, so a burst of labels triggers one or two full recomputes,
not one per label. A task that starts takes the row (``queued`` -> ``running``, remembering the
generation) or, finding it taken, does nothing; it ends the row ``done``/``failed`` only if no
newer request arrived meanwhile (that request left it ``queued`` with its own task). The
preferences themselves are written under ``preferences_recompute``'s advisory lock.

Progress (items written / items) lives in the cache, written between the recompute's chunks:
the recompute's own transaction cannot show it to others.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from tandem.errors import Conflict, InvalidInput

from .models import Aggregation
from .preferences import (
    INCLUDE_JUDGES_DEFAULT,
    PROJECT_METHODS,
    RecomputeResult,
    method_names,
    preferences_recompute,
)

logger = logging.getLogger(__name__)

DEBOUNCE_S = 30  # new labels -> a project-level recompute this much later, coalesced
STALE_QUEUED = timedelta(minutes=10)  # a queued request older than this is enqueued again

Status = Aggregation.Status
EDGES = {
    Status.IDLE: {Status.QUEUED},
    Status.QUEUED: {Status.QUEUED, Status.RUNNING},
    Status.RUNNING: {Status.QUEUED, Status.DONE, Status.FAILED},
    Status.DONE: {Status.QUEUED},
    Status.FAILED: {Status.QUEUED},
}


def _progress_key(project_id: int) -> str:
    return f"tandem:aggregation:{project_id}:progress"


def aggregation_get(*, project: Project) -> Aggregation:
    """The project's row (unsaved defaults when it has none)."""
    return Aggregation.objects.filter(project=project).first() or Aggregation(project=project)


def aggregation_validate(
    *, project: Project, method: Any, include_judges: Any = None
) -> tuple[str, bool | None]:
    valid = method_names(task_type=project.task_type)
    if not isinstance(method, str) or method not in valid:
        raise InvalidInput(
            f"method must be one of {', '.join(valid)}",
            details={"method": method, "valid": valid},
        )
    if include_judges is not None and not isinstance(include_judges, bool):
        raise InvalidInput(
            "include_judges must be true, false or null", details={"include_judges": include_judges}
        )
    return method, include_judges


def _locked(project: Project) -> Aggregation:
    Aggregation.objects.get_or_create(project=project)
    return Aggregation.objects.select_for_update().get(project=project)


def aggregation_transition(row: Aggregation, to: str, **fields: Any) -> None:
    """Move a row locked by the caller to ``to`` if the lifecycle allows; else Conflict."""
    if to not in EDGES[row.status]:
        raise Conflict(f"An aggregation {row.status} cannot become {to}.")
    row.status = to
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=["status", *fields])


def _request(project: Project, *, countdown: int, force: bool, **settings: Any) -> Aggregation:
    """Under the row's lock: store ``settings``, ask for a recompute, enqueue its task after
    commit unless one is already queued (and recent) and ``force`` is off."""
    from .tasks import preferences_aggregate_task

    now = timezone.now()
    with transaction.atomic():
        row = _locked(project)
        pending = (
            row.status == Status.QUEUED
            and row.requested_at is not None
            and now - row.requested_at < STALE_QUEUED
        )
        for name, value in settings.items():
            setattr(row, name, value)
        if pending and not force:
            if settings:
                row.save(update_fields=list(settings))
            return row
        aggregation_transition(
            row, Status.QUEUED, generation=row.generation + 1, requested_at=now, error="",
            **settings,
        )  # fmt: skip
        project_id = project.pk
        transaction.on_commit(
            lambda: preferences_aggregate_task.apply_async((project_id,), countdown=countdown)
        )
    cache.set(_progress_key(project.pk), {"done": 0, "total": None}, timeout=24 * 3600)
    return row


def aggregation_recompute(
    *, project: Project, method: Any, include_judges: Any = None
) -> Aggregation:
    """Set the project's method (validated) and recompute every preference with it, now."""
    method, include_judges = aggregation_validate(
        project=project, method=method, include_judges=include_judges
    )
    return _request(project, countdown=0, force=True, method=method, include_judges=include_judges)


def preferences_schedule(*, project_id: int, item_ids: list[int] | None) -> None:
    """New labels: recompute what they change with the project's method. Item-level methods
    (majority) recompute the named items at once; project-level ones the whole project,
    debounced and coalesced (see the module)."""
    from .tasks import preferences_recompute_task

    method = (
        Aggregation.objects.filter(project_id=project_id).values_list("method", flat=True).first()
    )
    if method not in PROJECT_METHODS:
        preferences_recompute_task.delay(project_id, item_ids)
        return
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        _request(project, countdown=DEBOUNCE_S, force=False)


def aggregation_run(*, project_id: int) -> RecomputeResult | None:
    """The task's body: take the queued request, recompute with the project's method, finish.
    Nothing to do (None) when the project is gone or another task took the request."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    with transaction.atomic():
        row = _locked(project)
        if row.status != Status.QUEUED:
            return None  # a duplicate of a request another task took
        generation = row.generation
        aggregation_transition(
            row, Status.RUNNING, run_generation=generation, started_at=timezone.now(),
            finished_at=None, error="",
        )  # fmt: skip

    def progress(done: int, total: int) -> None:
        cache.set(_progress_key(project_id), {"done": done, "total": total}, timeout=24 * 3600)

    result = preferences_recompute(project=project, progress=progress)
    _finish(project_id, generation, Status.DONE, result=result.to_dict())
    return result


def aggregation_fail(*, project_id: int, reason: str) -> None:
    """A run gave up: the row says why (unless a newer request already queued another)."""
    with transaction.atomic():
        row = Aggregation.objects.select_for_update().filter(project_id=project_id).first()
        if row is None or row.status != Status.RUNNING:
            return
        _finish(project_id, row.run_generation, Status.FAILED, error=reason[:2000])


def _finish(project_id: int, generation: int, to: str, **fields: Any) -> None:
    with transaction.atomic():
        row = Aggregation.objects.select_for_update().filter(project_id=project_id).first()
        if row is None or row.status != Status.RUNNING or row.generation != generation:
            return  # a newer request is queued; its run reports
        aggregation_transition(row, to, finished_at=timezone.now(), **fields)


def aggregation_state(*, project: Project) -> dict[str, Any]:
    """What the API and the page show: the method, the options and the latest run."""
    row = aggregation_get(project=project)
    include = row.include_judges
    progress = cache.get(_progress_key(project.pk)) if row.status == Status.RUNNING else None
    done, total = (progress or {}).get("done"), (progress or {}).get("total")
    if row.status == Status.DONE and row.result:
        done = total = row.result.get("items")
    return {
        "method": row.method,
        "include_judges": (
            INCLUDE_JUDGES_DEFAULT.get(row.method, True) if include is None else include
        ),
        "include_judges_default": include is None,
        "methods": method_names(task_type=project.task_type),
        "status": row.status,
        "items_done": done,
        "items_total": total,
        "fraction": round(done / total, 3) if done is not None and total else None,
        "result": row.result,
        "error": row.error,
        "requested_at": row.requested_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "running": row.status in (Status.QUEUED, Status.RUNNING),
    }
