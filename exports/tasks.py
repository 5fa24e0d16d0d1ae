"""Celery tasks of the exports app: thin, by id, idempotent."""

from celery import shared_task
from django.db import OperationalError

from annotation.models import Project
from tandem.task_failures import RecordedFailure

from .preferences import preferences_recompute


class _LoggedFailure(RecordedFailure):
    """A task that says why it gave up: the reason goes to the log with its arguments (a
    recompute is derived data, so the next labels_added or a manual recompute repairs it)."""

    abstract = True


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


class _AggregationTask(RecordedFailure):
    """A recompute that fails for good leaves the project's aggregation failed, with why."""

    abstract = True
    failure_argument = "project_id"
    failure_subject = "aggregation of project"

    def record_failure(self, row_id: int, reason: str) -> None:
        from .aggregation import aggregation_fail

        aggregation_fail(project_id=row_id, reason=reason)


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


class _SnapshotTask(RecordedFailure):
    """A snapshot build that fails for good ends the snapshot failed, with the reason."""

    abstract = True
    failure_argument = "snapshot_id"
    failure_subject = "snapshot"

    def record_failure(self, row_id: int, reason: str) -> None:
        from .snapshots import snapshot_fail

        snapshot_fail(snapshot_id=row_id, reason=reason)


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
