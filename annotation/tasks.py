"""Celery tasks of the annotation app: thin, they load by id and call a service."""

from celery import Task, shared_task

from .import_jobs import import_job_execute, import_job_fail


class ImportJobTask(Task):
    """Any exception ends the job ``failed`` with its reason, and its upload is removed."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        import_job_fail(job_id=job_id, reason=f"unexpected error: {type(exc).__name__}: {exc}")


@shared_task(base=ImportJobTask, acks_late=True)
def import_job_run(job_id: int) -> str:
    return import_job_execute(job_id=job_id).status
