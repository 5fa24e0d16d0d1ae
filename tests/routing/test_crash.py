"""A worker killed with SIGKILL mid-run loses nothing and duplicates nothing on resume."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from annotation.models import Annotation
from routing.judges import services
from routing.judges.models import JudgeRun
from routing.judges.runner import judge_run_execute
from tests.routing.conftest import make_items

WORKER = Path(__file__).with_name("judge_worker.py")


def database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_run_then_resume_gives_exactly_one_verdict_per_call(
    make_judge, pairwise_project, llm
):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database that a second process can share")
    llm.latency = 0.05
    items = make_items(pairwise_project, 40)
    judge = make_judge("openai", max_concurrency=4)
    run = services.judge_run_create(project=pairwise_project, judge=judge, enqueue=False)

    env = os.environ | {"DATABASE_URL": database_url()}
    worker = subprocess.Popen([sys.executable, str(WORKER), str(run.pk)], env=env)
    stored = Annotation.objects.filter(judge_run_id=run.pk)
    deadline = time.monotonic() + 60
    while stored.count() < 12 and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    killed_at = stored.count()
    assert 12 <= killed_at < 80, "the worker should die mid-run"
    assert JudgeRun.objects.get(pk=run.pk).status == JudgeRun.Status.RUNNING
    requests_before = len(llm.requests)

    run = judge_run_execute(run_id=run.pk)  # a new worker picks the run up again

    assert run.status == JudgeRun.Status.COMPLETED, run.stop_reason
    calls = Counter(stored.values_list("item_id", "order"))
    assert len(calls) == 80 and set(calls.values()) == {1}
    assert set(calls) == {(item.pk, order) for item in items for order in ("AB", "BA")}
    assert (run.done, run.total, run.attempts) == (80, 80, 2)
    # what was stored before the kill was not asked again
    assert len(llm.requests) - requests_before <= 80 - killed_at
