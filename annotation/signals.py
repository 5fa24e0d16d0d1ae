"""What annotation tells the apps above it, so that they react without annotation importing them.

DESIGN.md's dependencies point one way (``exports`` -> ``routing`` -> ``annotation``): the router
must route items as they arrive and exports must recompute preferences as labels arrive, yet the
code that writes items and labels lives here. These signals are the seam. Each is sent once the
writing transaction has committed (``transaction.on_commit``), so a receiver sees the rows and may
enqueue Celery work safely; a rolled-back write sends nothing.

Receivers must be cheap (enqueue a task, mark something stale): they run in the writer's request.
"""

from collections.abc import Iterable

from django.db import transaction
from django.dispatch import Signal

# New items were written to a project. kwargs: ``project_id`` (int), ``count`` (int).
items_added = Signal()

# Labels (annotations) were written to a project. kwargs: ``project_id`` (int), ``source``
# ("human" | "judge" | "import": labels that came with imported items), ``item_ids`` (a list of
# item ids, or None when too many to name: the receiver then treats every item of the project
# as touched).
labels_added = Signal()

# Asked, not announced (``unrouted_items_held``): may people be given the project's unrouted
# items? kwargs: ``project_id``. A receiver answers True when they must wait for routing (the
# router: the project has an active routing policy, so its budget decides who labels them).
# Without any receiver saying so, unrouted items go to people (projects without a policy).
unrouted_held = Signal()

# Above this many items a labels_added names no ids (None): a whole-project recompute is cheaper
# than a list of a million ids in memory.
MAX_NAMED_ITEMS = 10_000


def send_items_added(*, project_id: int, count: int) -> None:
    """Send ``items_added`` after the current transaction commits (at once outside one)."""
    if count <= 0:
        return
    transaction.on_commit(
        lambda: items_added.send(sender="annotation", project_id=project_id, count=count)
    )


def send_labels_added(*, project_id: int, source: str, item_ids: Iterable[int] | None) -> None:
    """Send ``labels_added`` after the current transaction commits (at once outside one)."""
    ids = None if item_ids is None else sorted(set(item_ids))
    if ids is not None and not ids:
        return
    if ids is not None and len(ids) > MAX_NAMED_ITEMS:
        ids = None
    transaction.on_commit(
        lambda: labels_added.send(
            sender="annotation", project_id=project_id, source=source, item_ids=ids
        )
    )


def unrouted_items_held(*, project_id: int) -> bool:
    """Whether the project's unrouted items wait for routing instead of going to people."""
    responses = unrouted_held.send(sender="annotation", project_id=project_id)
    return any(answer is True for _, answer in responses)
