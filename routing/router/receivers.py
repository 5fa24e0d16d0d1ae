"""The router's receivers: what makes the hybrid loop turn (``routing.router.loop``), and the
answer to annotation's question whether unrouted items wait for routing.

Connected in ``RoutingConfig.ready``. Both signals are sent after their transaction committed;
the receivers only request the project's routing work (a locked row and, at most, one message),
so importing never waits for routing and a burst of imports enqueues one task.
"""

from typing import Any

from routing.router.models import RoutingPolicy


def _has_policy(project_id: int) -> bool:
    return RoutingPolicy.objects.filter(project_id=project_id, active=True).exists()


def on_items_added(sender: Any, *, project_id: int, count: int, **_: Any) -> None:
    from routing.router.loop import routing_work_request

    if _has_policy(project_id):
        routing_work_request(project_id=project_id, reason=f"{count} items added")


def on_run_finished(sender: Any, *, project_id: int, run_id: int, status: str, **_: Any) -> None:
    from routing.router.loop import routing_work_request

    if _has_policy(project_id):
        routing_work_request(project_id=project_id, reason=f"judge run {run_id} {status}")


def on_unrouted_held(sender: Any, *, project_id: int, **_: Any) -> bool:
    """People wait for the router on a project with a policy: its budget decides who labels
    each item, so an item is not given to anyone before it is routed."""
    return _has_policy(project_id)
