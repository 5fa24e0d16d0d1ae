"""A slice of the live replay (bench/live_replay.py): 60 PandaLM rows through the running system
(Celery worker on Redis, gunicorn, the replaying judge server, annotators over the REST API).

It runs the bench as a subprocess, with its own database (``tandem_<db>_replay``, dropped and
recreated) and the Redis db of ``REPLAY_BROKER`` (default 6), so it never touches the test
database. About a minute on the development machine, hence ``slow``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the bench needs PostgreSQL")
@pytest.mark.skipif(
    not (ROOT / "data" / "pandalm" / "pandalm.jsonl").exists(), reason="no PandaLM file"
)
def test_live_replay_slice(tmp_path):
    out = tmp_path / "replay.json"
    name = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "JUDGE_ALLOW_PRIVATE_URLS": "1",  # the judges' server is on loopback
        "REPLAY_BROKER": os.environ.get("REPLAY_BROKER", "redis://127.0.0.1:6379/6"),
    }
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "live_replay.py"), "--rows", "60",
            "--database", f"{name.removeprefix('test_')}_replay", "--timeout", "240",
            "--json", str(out),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == []
    # Nobody pressed anything: routed, judged by one automatic run per judge, re-routed.
    assert result["automatic_runs"] == 2 and result["judge_calls"] == 60 * 2 * 2
    # The budget holds: 30% of 60 items to people, three labels each, never more.
    assert result["human_items"] == result["budget_limit"] == 18
    assert result["human_labels"] <= result["human_labels_allowed"] == 54
    # Every item resolved; the live figure is the simulation's.
    assert sum(result["resolved"].values()) - result["resolved"]["unresolved"] == 60
    # On 60 items one item moves agreement by 1/60 > 0.015: the slice allows one item's
    # difference (the figures are rounded to 4 places); the full replay (bench/live_replay.py,
    # 999 items) is held to 0.015.
    assert abs(result["difference"]) <= round(1 / 60, 4), result
