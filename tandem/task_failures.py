"""Celery tasks that say why they gave up, on the row they worked on.

A task that fails for good (its retries spent, or an error it does not retry) must not leave its
job looking busy forever: an import stays "running", a judge run "running", a snapshot
"building". Every such task has the same failure path: take the row's id from the task's
arguments, log the reason, and hand ``"Type: message"`` to the owning app's ``*_fail`` service,
which ends the row with it. ``RecordedFailure`` is that path, once; each app's task base names the
argument and the service.
"""

import logging
from typing import Any, ClassVar

from celery import Task

logger = logging.getLogger(__name__)


class RecordedFailure(Task):
    """A task base whose ``on_failure`` logs the reason and calls ``record_failure`` with the id
    in argument ``failure_argument`` (by keyword, else the first positional argument). With no
    ``failure_argument`` the reason is only logged (derived data that the next run repairs)."""

    abstract = True
    failure_argument: ClassVar[str | None] = None
    # What the log line calls the row ("import job", "snapshot", ...).
    failure_subject: ClassVar[str] = "task"

    def record_failure(self, row_id: Any, reason: str) -> None:
        """End row ``row_id`` failed with ``reason``: the owning app's ``*_fail`` service."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.failure_argument is None:
            logger.error(
                "%s failed for %s %s: %s",
                self.name,
                args,
                kwargs,
                reason,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            return
        row_id = kwargs.get(self.failure_argument, args[0] if args else None)
        logger.error("%s %s failed: %s", self.failure_subject, row_id, reason)
        if row_id is not None:
            self.record_failure(row_id, reason)
