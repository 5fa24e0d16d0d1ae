"""Receivers of annotation's signals: new labels -> recompute the items' preferences.

Connected in ``ExportsConfig.ready``; annotation never imports exports (DESIGN.md). The signal
is sent after the labels commit, so the task sees them.
"""

import logging
from typing import Any

from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)


def on_labels_added(sender: Any, *, project_id: int, item_ids: list[int] | None, **_: Any) -> None:
    from .tasks import preferences_recompute_task

    try:
        preferences_recompute_task.delay(project_id, item_ids)
    except BrokerError as exc:
        # The labels are committed; only the derived preferences wait. They are recomputed by
        # the next labels of the project or by `preferences_recompute`.
        logger.error(
            "could not enqueue the preference recompute of project %s: %s", project_id, exc
        )


def on_snapshot_deleted(sender: Any, instance: Any, **_: Any) -> None:
    """A deleted snapshot (by the API, the admin or its project's deletion) takes its files."""
    from .snapshots import snapshot_files_remove

    snapshot_files_remove(instance)
