"""Celery tasks of the judges' room: thin, by id, idempotent. They keep their historical names
(``routing.tasks.judge_*``): the settings route ``judge_*`` tasks to the ``judge`` queue, and
messages already queued under those names still find them."""

from typing import Any

from celery import Task, shared_task
from celery.signals import worker_init

from routing.judges.providers import preload_sdks
from routing.judges.runner import judge_run_execute as judge_run_execute_service
from routing.judges.runner import judge_run_fail


@worker_init.connect
def _preload_judge_sdks(**_: Any) -> None:
    """Workers load the LLM SDKs once, before forking, instead of in their first judge call."""
    preload_sdks()


class JudgeRunTask(Task):
    """A run whose task failed with an unexpected error is marked incomplete with the reason
    (``judge_run_fail``), so it never looks busy forever; resume retries it."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        run_id = args[0] if args else kwargs.get("run_id")
        if run_id is not None:
            judge_run_fail(run_id=run_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(name="routing.tasks.judge_run_execute", base=JudgeRunTask, acks_late=True)
def judge_run_execute(run_id: int) -> str:
    """Run or resume a judge run. Idempotent: stored verdicts are skipped, finished runs kept.

    With ``acks_late`` and ``reject_on_worker_lost`` (settings), a worker killed mid-run leaves
    the message to be delivered again, and the next worker resumes the run.
    """
    return judge_run_execute_service(run_id=run_id).status
