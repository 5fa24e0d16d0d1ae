"""Celery tasks of training jobs: thin, by id, idempotent.

``exports.tasks.training_job_run`` goes to the ``gpu`` queue (``CELERY_TASK_ROUTES`` sends
``exports.tasks.training_*`` there); ``exports.tasks.stale_training_jobs_fail`` runs on the
default queue from Celery beat, so that a dead GPU worker's jobs still end.
"""

import logging

from celery import Task, shared_task

from .jobs import training_job_execute, training_job_fail, training_jobs_fail_stale

logger = logging.getLogger(__name__)


class _TrainingTask(Task):
    """A training task that fails ends its job failed, with the reason."""

    abstract = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = kwargs.get("job_id", args[0] if args else None)
        logger.error("training job %s failed: %s: %s", job_id, type(exc).__name__, exc)
        if job_id is not None:
            training_job_fail(job_id=job_id, reason=f"{type(exc).__name__}: {exc}")


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
