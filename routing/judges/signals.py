"""What the judges' room tells the router, which it must not import (the router imports it).

``run_finished`` is sent once a judge run has ended (completed, incomplete, capped or
cancelled) and that state has committed: the router listens (``routing.router.receivers``) and
re-routes the run's items now that their verdicts are in, then plans the next automatic run.
Receivers must be cheap (enqueue a task): they run in the worker that ended the run.
"""

from django.db import transaction
from django.dispatch import Signal

# kwargs: ``run_id``, ``project_id``, ``judge`` (name), ``status``, ``automatic`` (bool).
run_finished = Signal()


def send_run_finished(
    *, run_id: int, project_id: int, judge: str, status: str, automatic: bool
) -> None:
    """Send ``run_finished`` after the current transaction commits (at once outside one)."""
    transaction.on_commit(
        lambda: run_finished.send(
            sender="routing.judges",
            run_id=run_id,
            project_id=project_id,
            judge=judge,
            status=status,
            automatic=automatic,
        )
    )
