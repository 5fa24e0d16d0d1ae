"""Runs spread over forked network shards (routing/judges/network.py): same guarantees as one."""

import asyncio
import os
import queue
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from annotation.models import Annotation
from routing.judges import services
from routing.judges.models import JudgeRun
from routing.judges.network import (
    Call,
    Finished,
    Limits,
    ProcessDispatcher,
    Result,
    shards_for,
)
from routing.judges.providers import JudgeRequest, JudgeResponse
from routing.judges.runner import judge_run_execute
from tests.routing.conftest import make_items
from tests.routing.test_crash import WORKER, database_url

pytestmark = pytest.mark.django_db


def run_sharded(project, judge, shards=2, **options):
    run = services.judge_run_create(project=project, judge=judge, enqueue=False, **options)
    return judge_run_execute(run_id=run.pk, shards=shards)


def limits(**fields):
    defaults = dict(
        max_concurrency=4,
        requests_per_minute=0,
        tokens_per_minute=0,
        max_attempts=1,
        backoff_base=0.01,
        backoff_max=0.01,
        price_input_per_mtok=0,
        price_output_per_mtok=0,
        cost_cap=None,
    )
    return Limits(**(defaults | fields))


class PidClient:
    """Answers with the process it runs in."""

    async def complete(self, request):
        await asyncio.sleep(0.01)
        return JudgeResponse(text=str(os.getpid()))

    async def aclose(self):
        pass


def test_shards_run_in_their_own_processes_and_every_call_comes_back_once():
    dispatcher = ProcessDispatcher(
        make_client=PidClient, limits=limits(), cost_so_far=0.0, shards=2, name="t"
    )
    dispatcher.start()
    request = JudgeRequest(system="s", user="u", output_mode="text", json_schema={})
    dispatcher.feed([Call(seq, request, 1) for seq in range(40)])
    dispatcher.close()
    results, finished = [], []
    deadline = time.monotonic() + 30
    while len(finished) < 2 and time.monotonic() < deadline:
        try:
            message = dispatcher.results.get(timeout=1)
        except queue.Empty:
            continue
        (finished if isinstance(message, Finished) else results).append(message)
    dispatcher.join()
    assert sorted(r.seq for r in results) == list(range(40))
    assert all(isinstance(r, Result) and r.response is not None for r in results)
    pids = {r.response.text for r in results}
    assert len(pids) == 2 and str(os.getpid()) not in pids
    assert finished == [Finished(capped=False, stopped=False)] * 2


def test_limits_are_shared_out_exactly():
    whole = limits(max_concurrency=129, requests_per_minute=600, tokens_per_minute=90_000)
    parts = [whole.share(i, 4) for i in range(4)]
    assert sum(p.max_concurrency for p in parts) == 129
    assert sum(p.requests_per_minute for p in parts) == 600
    assert sum(p.tokens_per_minute for p in parts) == 90_000
    assert shards_for(8) == 1 and shards_for(63) == 1
    assert shards_for(128) == min(os.cpu_count() or 1, 2)


def test_a_sharded_run_stores_each_call_once_within_the_concurrency_limit(
    make_judge, pairwise_project, llm
):
    llm.latency = 0.05
    items = make_items(pairwise_project, 15)
    run = run_sharded(pairwise_project, make_judge("openai", max_concurrency=4))
    assert run.status == JudgeRun.Status.COMPLETED, run.stop_reason
    calls = Counter(Annotation.objects.filter(judge_run_id=run.pk).values_list("item_id", "order"))
    assert set(calls) == {(i.pk, o) for i in items for o in ("AB", "BA")}
    assert set(calls.values()) == {1}
    assert (run.done, run.total) == (30, 30)
    assert len(llm.requests) == 30
    assert llm.max_in_flight <= 4


def test_the_cost_cap_stops_every_shard(make_judge, pairwise_project, llm):
    llm.latency = 0.05
    make_items(pairwise_project, 10)
    judge = make_judge("openai", max_concurrency=2)
    probe = run_sharded(
        pairwise_project,
        judge,
        shards=1,
        scope="selection",
        item_ids=[pairwise_project.items.first().pk],
        use_cache=False,
    )
    per_call = probe.cost / 2
    llm.requests.clear()

    cap = (per_call * Decimal("4.5")).quantize(Decimal("0.000001"))
    run = run_sharded(pairwise_project, judge, cost_cap=cap, use_cache=False)
    assert run.status == JudgeRun.Status.CAPPED, run.stop_reason
    assert run.cost >= cap
    # at most one more call per shard than the cap allows was already in flight
    assert 5 <= run.done <= 7 and len(llm.requests) == run.done


def test_cancelling_stops_every_shard_and_resume_finishes(make_judge, pairwise_project, llm):
    llm.latency = 0.1
    make_items(pairwise_project, 20)
    judge = make_judge("openai", max_concurrency=2)
    run = services.judge_run_create(project=pairwise_project, judge=judge, enqueue=False)

    def cancel_midway(progress_run):
        if progress_run.done >= 4:
            JudgeRun.objects.filter(pk=progress_run.pk).update(cancel_requested=True)

    run = judge_run_execute(run_id=run.pk, on_progress=cancel_midway, shards=2)
    assert run.status == JudgeRun.Status.CANCELLED
    assert 4 <= run.done < 40
    services.judge_run_resume(run=run, enqueue=False)
    run = judge_run_execute(run_id=run.pk, shards=2)
    assert run.status == JudgeRun.Status.COMPLETED and run.done == 40
    assert Annotation.objects.filter(judge_run_id=run.pk).count() == 40


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigkill_of_a_sharded_run_stops_its_shards_and_resume_gives_exactly_once(
    make_judge, pairwise_project, llm
):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database that a second process can share")
    llm.latency = 0.3
    items = make_items(pairwise_project, 100)
    judge = make_judge("openai", max_concurrency=16)
    run = services.judge_run_create(project=pairwise_project, judge=judge, enqueue=False)

    env = os.environ | {"DATABASE_URL": database_url()}
    worker = subprocess.Popen([sys.executable, str(WORKER), str(run.pk), "2"], env=env)
    stored = Annotation.objects.filter(judge_run_id=run.pk)
    deadline = time.monotonic() + 60
    while stored.count() < 30 and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    killed_at = stored.count()
    assert 30 <= killed_at < 200, "the worker should die mid-run"

    # Orphaned shards notice within about a second and stop calling the provider.
    time.sleep(1.5)
    asked = len(llm.requests)
    time.sleep(1.0)
    assert len(llm.requests) == asked and llm.in_flight == 0

    run = judge_run_execute(run_id=run.pk, shards=2)
    assert run.status == JudgeRun.Status.COMPLETED, run.stop_reason
    calls = Counter(stored.values_list("item_id", "order"))
    assert set(calls) == {(i.pk, o) for i in items for o in ("AB", "BA")}
    assert set(calls.values()) == {1}
    assert (run.done, run.total, run.attempts) == (200, 200, 2)
