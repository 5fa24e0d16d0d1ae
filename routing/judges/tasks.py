"""Celery tasks of the judges' room: thin, by id, idempotent. They keep their historical names
(``routing.tasks.judge_*``): the settings route ``judge_*`` tasks to the ``judge`` queue, and
messages already queued under those names still find them."""

from typing import Any

from celery import shared_task
from celery.signals import worker_init

from routing.judges.providers import preload_sdks
from routing.judges.runner import judge_run_execute as judge_run_execute_service
from routing.judges.runner import judge_run_fail
from tandem.task_failures import RecordedFailure


@worker_init.connect
def _preload_judge_sdks(**_: Any) -> None:
    """Workers load the LLM SDKs once, before forking, instead of in their first judge call."""
    preload_sdks()


class JudgeRunTask(RecordedFailure):
    """A failed execution never leaves its run 'running': it ends incomplete with the reason."""

    failure_argument = "run_id"
    failure_subject = "judge run"

    def record_failure(self, row_id: int, reason: str) -> None:
        judge_run_fail(run_id=row_id, reason=reason)


@shared_task(name="routing.tasks.judge_run_execute", acks_late=True, base=JudgeRunTask)
def judge_run_execute(run_id: int) -> str:
    """Run or resume a judge run. Idempotent: stored verdicts are skipped, finished runs kept.

    With ``acks_late`` and ``reject_on_worker_lost`` (settings), a worker killed mid-run leaves
    the message to be delivered again, and the next worker resumes the run.
    """
    return judge_run_execute_service(run_id=run_id).status
