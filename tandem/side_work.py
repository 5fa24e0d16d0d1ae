"""Database work beside the caller's connection, so that PostgreSQL and Python work at once.

A bulk pass (routing 100,000 items, the quality page's two reads) alternates between Python work
(features, frames) and server work (reading texts, writing rows). On two cores or more the two
can overlap when the server work runs on a second connection in a worker thread: the worker
waits on its socket without holding the GIL while the caller computes.

That is only right where a second connection sees what the caller's sees
(``side_connections_usable``): on PostgreSQL, and with no transaction open on the caller's
connection (a second connection sees committed rows only; under a test's transaction or a
caller's atomic block it would miss the caller's own). Elsewhere ``SideLanes`` runs the same work
inline, in order, on the caller's connection, so callers have one code path.
"""

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from django.db import connection, connections


def side_connections_usable() -> bool:
    """Whether work on another thread's connection sees what this thread's connection sees."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def on_own_connection[T](fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread, whose Django connection (opened on first use)
    is closed after, so that no worker thread leaves one open."""
    try:
        return fn(*args, **kwargs)
    finally:
        connections.close_all()


class SideLanes:
    """Named queues of database work, each a worker thread with its own connection (work on one
    lane runs in the order submitted; lanes run at once), or inline when ``enabled`` is false.

    Use it as a context manager: leaving the block waits for every submitted piece of work and
    raises the first failure of any that nobody collected, so a failed background write is never
    lost."""

    def __init__(self, lanes: Iterable[str], *, enabled: bool) -> None:
        self._pools = (
            {name: ThreadPoolExecutor(1, thread_name_prefix=f"tandem-{name}") for name in lanes}
            if enabled
            else {}
        )
        self._submitted: list[Future[Any]] = []

    @property
    def parallel(self) -> bool:
        return bool(self._pools)

    def submit[T](self, lane: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        pool = self._pools.get(lane)
        if pool is not None:
            future = pool.submit(on_own_connection, fn, *args, **kwargs)
        else:
            future = Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:  # raised again by result() or on leaving the block
                future.set_exception(exc)
        self._submitted.append(future)
        return future

    def wait(self) -> None:
        """Wait for everything submitted so far; raise the first failure."""
        for future in self._submitted:
            future.result()

    def __enter__(self) -> "SideLanes":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=kind is not None)
        if kind is None:
            self.wait()
