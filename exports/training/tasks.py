"""Celery tasks of training jobs: thin, by id, idempotent.

``exports.tasks.training_job_run`` goes to the ``gpu`` queue (``CELERY_TASK_ROUTES`` sends
``exports.tasks.training_*`` there); ``exports.tasks.stale_training_jobs_fail`` runs on the
default queue from Celery beat, so that a dead GPU worker's jobs still end.
"""

from celery import shared_task

from tandem.task_failures import RecordedFailure

from .jobs import training_job_execute, training_job_fail, training_jobs_fail_stale


class _TrainingTask(RecordedFailure):
    """A training task that fails ends its job failed, with the reason."""

    abstract = True
    failure_argument = "job_id"
    failure_subject = "training job"

    def record_failure(self, row_id: int, reason: str) -> None:
        training_job_fail(job_id=row_id, reason=reason)


@shared_task(bind=True, base=_TrainingTask, name="exports.tasks.training_job_run", acks_late=True)
def training_job_run(self, job_id: int) -> str | None:
    """Run a training job. A finished job is left as it is; a redelivered one whose worker
    died is failed ("worker lost"), never started twice."""
    job = training_job_execute(job_id=job_id)
    return job.status if job else None


@shared_task(name="exports.tasks.stale_training_jobs_fail")
def stale_training_jobs_fail() -> int:
    """Fail running jobs whose worker stopped beating (TRAINING_HEARTBEAT_TIMEOUT)."""
    return training_jobs_fail_stale()


@shared_task(name="exports.tasks.training_reward_margins", acks_late=True)
def training_reward_margins(feature_id: int) -> str | None:
    """Score a project's items with its registered reward model (``routing_scores``), on the
    ``gpu`` queue with the model. Redelivered after a worker died, it resumes: items that have
    a margin are not scored again."""
    from .routing_scores import reward_margins_compute

    return reward_margins_compute(feature_id=feature_id)
