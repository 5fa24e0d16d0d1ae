"""Celery tasks of the annotation app: thin, they load by id and call a service."""

from celery import shared_task

from tandem.task_failures import RecordedFailure

from .import_jobs import import_job_execute, import_job_fail


class ImportJobTask(RecordedFailure):
    """Any exception ends the job ``failed`` with its reason, and its upload is removed."""

    failure_argument = "job_id"
    failure_subject = "import job"

    def record_failure(self, row_id: int, reason: str) -> None:
        import_job_fail(job_id=row_id, reason=f"unexpected error: {reason}")


@shared_task(base=ImportJobTask, acks_late=True)
def import_job_run(job_id: int) -> str:
    return import_job_execute(job_id=job_id).status
