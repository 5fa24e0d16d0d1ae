"""``tandem.side_work``: work on side connections, or inline where they would not see the
caller's rows; no failure lost, no connection left open."""

import threading
import time

import pytest
from django.db import connection, transaction

from tandem.side_work import SideLanes, side_connections_usable


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _fail() -> None:
    raise ValueError("the background write failed")


@pytest.mark.django_db(transaction=True)
def test_side_lanes_run_on_their_own_connections_and_close_them():
    if connection.vendor != "postgresql":
        pytest.skip("side connections are used on PostgreSQL only")
    assert side_connections_usable()
    mine, before = _backend_pid(), _backends()
    order: list[int] = []
    with SideLanes(("read", "write"), enabled=True) as lanes:
        assert lanes.parallel
        read = lanes.submit("read", _backend_pid)
        writes = [lanes.submit("write", order.append, i) for i in range(20)]
        threads = lanes.submit("read", threading.get_ident)
    assert read.result() != mine  # another backend
    assert threads.result() != threading.get_ident()
    assert all(w.done() for w in writes) and order == list(range(20))  # one lane keeps order
    # The workers' connections are closed (a closed backend leaves the view within moments).
    deadline = time.monotonic() + 5
    while _backends() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends() == before


@pytest.mark.django_db
def test_inside_a_transaction_the_work_stays_on_the_callers_connection():
    assert connection.in_atomic_block and not side_connections_usable()
    with SideLanes(("read",), enabled=side_connections_usable()) as lanes:
        assert not lanes.parallel
        pid = lanes.submit("read", _backend_pid)
        thread = lanes.submit("read", threading.get_ident)
    assert pid.result() == _backend_pid() and thread.result() == threading.get_ident()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("enabled", [True, False])
def test_a_failure_nobody_collected_is_raised_on_leaving(enabled):
    with (
        pytest.raises(ValueError, match="background write failed"),
        SideLanes(("write",), enabled=enabled) as lanes,
    ):
        lanes.submit("write", _fail)
        lanes.submit("write", int)  # later work still runs
    with transaction.atomic():  # the caller's connection is still usable
        assert _backend_pid()
