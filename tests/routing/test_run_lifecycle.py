"""A judge run always ends or can be resumed: a dead worker's run is taken over (by its lock on
PostgreSQL, by its heartbeat elsewhere), and a live worker's run is left to it."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from routing.judges import runner, services
from routing.judges.models import JudgeRun

from .conftest import make_items

pytestmark = pytest.mark.django_db(transaction=True)


def _running(run, *, heartbeat_age: float | None) -> None:
    beat = None if heartbeat_age is None else timezone.now() - timedelta(seconds=heartbeat_age)
    JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.RUNNING, heartbeat_at=beat)


@pytest.fixture
def run(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 4)
    judge = make_judge("openai", max_concurrency=2)
    return services.judge_run_create(project=pairwise_project, judge=judge, enqueue=False)


def test_the_heartbeat_claims_an_abandoned_run_and_only_one(run, settings):
    settings.TANDEM_JOB_STALE_SECONDS = 60
    _running(run, heartbeat_age=5)  # a live worker beat 5 s ago
    assert runner.judge_run_has_heartbeat(run_id=run.pk)
    assert not runner.judge_run_claim(run_id=run.pk)
    _running(run, heartbeat_age=120)  # its worker died two minutes ago
    assert not runner.judge_run_has_heartbeat(run_id=run.pk)
    assert runner.judge_run_claim(run_id=run.pk)
    assert not runner.judge_run_claim(run_id=run.pk)  # the claim beat for us: a second loses
    _running(run, heartbeat_age=None)  # left by a version without heartbeats
    assert runner.judge_run_claim(run_id=run.pk)


def test_a_run_with_a_stale_heartbeat_can_be_resumed(run, settings):
    settings.TANDEM_JOB_STALE_SECONDS = 60
    _running(run, heartbeat_age=120)
    if connection.vendor == "postgresql":
        assert not runner.judge_run_is_executing(run_id=run.pk)  # nobody holds its lock
    resumed = services.judge_run_resume(run=run, enqueue=False)
    assert resumed.status == JudgeRun.Status.PENDING
    done = runner.judge_run_execute(run_id=run.pk)
    assert done.status == JudgeRun.Status.COMPLETED and done.heartbeat_at is not None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_resume_waits_for_the_lock_of_a_worker_that_just_died(run, settings, monkeypatch):
    """The dead worker's session still holds the run's lock for a moment: the new executor waits
    for it instead of returning with the run still 'running'."""
    monkeypatch.setattr(runner, "LOCK_WAIT_SECONDS", 10.0)
    _running(run, heartbeat_age=120)
    held, release = threading.Event(), threading.Event()

    def dead_worker() -> None:
        with connections["default"].cursor() as cursor:  # a session of its own (new thread)
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", (runner.LOCK_NAMESPACE, run.pk))
            held.set()
            release.wait(10)
            time.sleep(1.0)
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (runner.LOCK_NAMESPACE, run.pk))
        connections["default"].close()

    thread = threading.Thread(target=dead_worker)
    thread.start()
    held.wait(5)
    release.set()
    started = time.monotonic()
    done = runner.judge_run_execute(run_id=run.pk)
    thread.join()
    assert done.status == JudgeRun.Status.COMPLETED, done.stop_reason
    assert time.monotonic() - started >= 0.8  # it waited for the lock


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_a_live_workers_run_is_left_to_it(run, monkeypatch):
    """A duplicate delivery while the executor lives: its heartbeat moves, so the newcomer
    stops waiting for the lock and leaves the run to it."""
    monkeypatch.setattr(runner, "LOCK_WAIT_SECONDS", 10.0)
    _running(run, heartbeat_age=1)
    held, release = threading.Event(), threading.Event()

    def live_worker() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", (runner.LOCK_NAMESPACE, run.pk))
            held.set()
            while not release.wait(0.3):  # beating, as a live executor does
                JudgeRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (runner.LOCK_NAMESPACE, run.pk))
        connections["default"].close()

    thread = threading.Thread(target=live_worker)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    left = runner.judge_run_execute(run_id=run.pk)
    release.set()
    thread.join()
    assert left.status == JudgeRun.Status.RUNNING
    assert time.monotonic() - started < 5


def test_a_task_that_fails_ends_its_run_incomplete_with_the_reason(run, monkeypatch, settings):
    """An unexpected error in the task (a bug, the database gone) never leaves 'running'."""
    from routing.judges import tasks

    def boom(**_):
        JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.RUNNING)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tasks, "judge_run_execute_service", boom)
    settings.CELERY_TASK_EAGER_PROPAGATES = False
    result = tasks.judge_run_execute.apply(args=[run.pk])
    assert result.failed()
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.INCOMPLETE
    assert run.stop_reason == "worker error: RuntimeError: disk on fire"
    assert services.judge_run_resume(run=run, enqueue=False).status == JudgeRun.Status.PENDING


def test_every_status_change_goes_through_the_one_transition(run):
    """The lifecycle table refuses what must never happen and announces every end once."""
    from routing.judges import lifecycle
    from routing.judges.signals import run_finished
    from tandem.errors import Conflict

    ends: list[str] = []

    def listen(**kwargs):
        ends.append(kwargs["status"])

    run_finished.connect(listen, weak=False)
    try:
        done = runner.judge_run_execute(run_id=run.pk)
        assert done.status == JudgeRun.Status.COMPLETED and done.finished_at is not None
        assert ends == [JudgeRun.Status.COMPLETED]  # the executor's end, announced once
        with pytest.raises(Conflict):  # a completed run is final: resuming would pay again
            lifecycle.judge_run_transition(done, JudgeRun.Status.PENDING)
        with pytest.raises(Conflict):
            services.judge_run_resume(run=done, enqueue=False)
        JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.INCOMPLETE)
        stopped = JudgeRun.objects.select_related("judge").get(pk=run.pk)
        reopened = lifecycle.judge_run_transition(stopped, JudgeRun.Status.PENDING)
        assert reopened.finished_at is None and reopened.stop_reason == ""
        assert JudgeRun.objects.get(pk=run.pk).finished_at is None
        cancelled = services.judge_run_cancel(run=reopened)
        assert cancelled.status == JudgeRun.Status.CANCELLED and cancelled.cancel_requested
        assert ends == [JudgeRun.Status.COMPLETED, JudgeRun.Status.CANCELLED]
    finally:
        run_finished.disconnect(listen)


def test_no_module_but_the_lifecycle_writes_a_run_status():
    """Runner and services once each wrote statuses their own way (and one forgot to announce the
    end): the status column is written in lifecycle.py only."""
    import pathlib
    import re

    pattern = re.compile(
        r"\.status\s*=\s*JudgeRun\.|\.update\(.*\bstatus=|update_fields=.*\"status\""
    )
    root = pathlib.Path(__file__).resolve().parents[2] / "routing" / "judges"
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py")
        if path.name != "lifecycle.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
