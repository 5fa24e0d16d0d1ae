"""A judge run's lifecycle: the one place where its status changes.

The executor (runner), the worker's failure hook and the manager's cancel / resume all move a
run; doing it through one function keeps the rules in one table (a completed run is never
re-opened, a finished run always has ``finished_at`` and a reason, an opened one has neither)
and makes every move to a finished state announce ``run_finished`` exactly once, which the
router's re-routing depends on.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from routing.judges.models import JudgeRun
from routing.judges.signals import send_run_finished
from tandem.errors import Conflict

Status = JudgeRun.Status

#: Which status may follow which. RUNNING -> RUNNING is a redelivered task taking over a run
#: whose worker died; RUNNING -> PENDING is a resume of such an orphan (the caller checks that
#: no worker executes it). COMPLETED is final: resuming it would pay for calls again.
EDGES: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset(
        {Status.PENDING, Status.RUNNING, Status.CANCELLED, Status.INCOMPLETE}
    ),
    Status.RUNNING: frozenset(
        {
            Status.RUNNING,
            Status.PENDING,
            Status.COMPLETED,
            Status.INCOMPLETE,
            Status.CANCELLED,
            Status.CAPPED,
        }
    ),
    Status.INCOMPLETE: frozenset({Status.PENDING}),
    Status.CANCELLED: frozenset({Status.PENDING}),
    Status.CAPPED: frozenset({Status.PENDING}),
    Status.COMPLETED: frozenset(),
}


def judge_run_transition(run: JudgeRun, to: str, *, reason: str = "", **fields: Any) -> JudgeRun:
    """Move ``run`` to ``to``, writing ``fields`` in the same UPDATE; Conflict if not allowed.

    The caller owns the run at this moment (holds its row lock, or is its executor under the
    advisory lock), so the status read on ``run`` is current. A move to a finished state sets
    ``finished_at`` and ``stop_reason`` and announces the end after commit; a move to an open
    state clears them.
    """
    if to not in EDGES[run.status]:
        raise Conflict(f"A {run.status} judge run cannot become {to}.")
    values: dict[str, Any] = {"status": to, "stop_reason": reason[:1000], **fields}
    if to in JudgeRun.TERMINAL:
        values.setdefault("finished_at", timezone.now())
    else:
        values["finished_at"] = None
    JudgeRun.objects.filter(pk=run.pk).update(**values)
    for name, value in values.items():
        setattr(run, name, value)
    if to in JudgeRun.TERMINAL:
        send_run_finished(
            run_id=run.pk,
            project_id=run.project_id,
            judge=run.judge.name,
            status=run.status,
            automatic=run.automatic,
        )
    return run
