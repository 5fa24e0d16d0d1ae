"""Celery tasks of the exports app: thin, by id, idempotent."""

import logging

from celery import Task, shared_task
from django.db import OperationalError

from annotation.models import Project

from .preferences import preferences_recompute

logger = logging.getLogger(__name__)


class _LoggedFailure(Task):
    """A task that says why it gave up: the reason goes to the log with its arguments (a
    recompute is derived data, so the next labels_added or a manual recompute repairs it)."""

    abstract = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        logger.error(
            "%s failed for %s %s: %s: %s",
            self.name,
            args,
            kwargs,
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )


@shared_task(
    bind=True,
    base=_LoggedFailure,
    name="exports.tasks.preferences_recompute_task",
    autoretry_for=(OperationalError,),
    max_retries=3,
    retry_backoff=True,
)
def preferences_recompute_task(
    self, project_id: int, item_ids: list[int] | None = None
) -> dict[str, int] | None:
    """Recompute the preferences of the items (None: the whole project). Idempotent; a project
    deleted meanwhile is nothing to do."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    return preferences_recompute(project=project, item_ids=item_ids).to_dict()


class _AggregationTask(Task):
    """A recompute that fails for good leaves the project's aggregation failed, with why."""

    abstract = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from .aggregation import aggregation_fail

        project_id = kwargs.get("project_id", args[0] if args else None)
        logger.error(
            "aggregation of project %s failed: %s: %s", project_id, type(exc).__name__, exc
        )
        if project_id is not None:
            aggregation_fail(project_id=project_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(
    bind=True,
    base=_AggregationTask,
    name="exports.tasks.preferences_aggregate_task",
    autoretry_for=(OperationalError,),
    max_retries=3,
    retry_backoff=True,
)
def preferences_aggregate_task(self, project_id: int) -> dict[str, int] | None:
    """Recompute every preference of the project with its method (``exports.aggregation``).
    Idempotent; a duplicate of a request another task took does nothing."""
    from .aggregation import aggregation_run

    result = aggregation_run(project_id=project_id)
    return result.to_dict() if result else None


class _SnapshotTask(Task):
    """A snapshot build that fails for good ends the snapshot failed, with the reason."""

    abstract = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from .snapshots import snapshot_fail

        snapshot_id = kwargs.get("snapshot_id", args[0] if args else None)
        logger.error("snapshot %s failed: %s: %s", snapshot_id, type(exc).__name__, exc)
        if snapshot_id is not None:
            snapshot_fail(snapshot_id=snapshot_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(
    bind=True,
    base=_SnapshotTask,
    name="exports.tasks.snapshot_build_task",
    acks_late=True,
    autoretry_for=(OperationalError,),
    max_retries=2,
    retry_backoff=True,
)
def snapshot_build_task(self, snapshot_id: int) -> str | None:
    """Build a snapshot. Idempotent: a done or failed snapshot is left as it is; a redelivered
    one (its worker died) is built again from the start."""
    from .snapshots import snapshot_build

    snapshot = snapshot_build(snapshot_id=snapshot_id)
    return snapshot.status if snapshot else None


# Training jobs' tasks live in their room; importing them here registers them with the worker.
from exports.training.tasks import (  # noqa: E402, F401
    stale_training_jobs_fail,
    training_job_run,
    training_reward_margins,
)
