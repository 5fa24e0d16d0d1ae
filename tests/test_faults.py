"""Faults: SIGKILL the web server mid-import, the worker mid-import and the worker mid-export
(the worker mid-judge-run: tests/routing/test_crash.py). Then check that nothing was lost or
doubled, and that every job ends within a minute: completed after a resume, or failed with a
reason.

The processes killed are real: a gunicorn serving the API, and a worker process running the
same service its Celery task runs. ``TANDEM_JOB_STALE_SECONDS`` is 2 here, so a dead worker's
job shows as stuck after 2 s instead of 60.
"""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection

from accounts.services import user_token
from annotation import import_jobs
from annotation.importer import items_import
from annotation.models import Item, Membership
from exports import snapshots
from exports.models import Snapshot
from exports.preferences import preferences_recompute
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.routing.test_crash import database_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs a database other processes share"
    ),
]
ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("job_worker.py")
STALE = 2


@pytest.fixture(autouse=True)
def quick_staleness(settings, tmp_path):
    settings.TANDEM_JOB_STALE_SECONDS = STALE
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EXPORTS_ROOT = tmp_path / "exports"
    return {
        "DATABASE_URL": database_url(),
        "TANDEM_JOB_STALE_SECONDS": str(STALE),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "EXPORTS_ROOT": str(settings.EXPORTS_ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }


def rows(n: int, prefix: str = "r") -> list[dict]:
    filler = "lorem ipsum dolor sit amet " * 12
    return [
        {
            "external_id": f"{prefix}{i}",
            "prompt": f"Question {i}? {filler}",
            "candidates": [{"text": f"A{i} {filler}"}, {"text": f"B{i} {filler}"}],
            "labels": [
                {"source": "human", "annotator": f"h{k}", "choice": "AB"[(i + k) % 2]}
                for k in range(3)
            ],
        }
        for i in range(n)
    ]


def jsonl(data: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in data).encode()


def kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the process ended before it could be killed mid-job"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=os.environ | env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def others_gone(timeout: float = 30) -> None:
    """Wait until no other session of the test database is inside a transaction: a killed
    client's session may still be finishing (it commits or rolls back on its own)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state <> 'idle'"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.2)
    raise AssertionError("another session is still busy in the test database")


def no_duplicates(project) -> int:
    ids = Counter(Item.objects.filter(project=project).values_list("external_id", flat=True))
    assert not [k for k, n in ids.items() if n > 1], "an item was written twice"
    return sum(ids.values())


def test_worker_killed_mid_import_then_retried(quick_staleness, monkeypatch):
    project = ProjectFactory(task_type="pairwise")
    manager = UserFactory(role="manager")
    monkeypatch.setattr(import_jobs, "_enqueue", lambda job_id: None)  # the test is the worker
    n = 20_000
    job = import_jobs.import_job_create(
        project=project,
        user=manager,
        upload=io.BytesIO(jsonl(rows(n))),
        name="x.jsonl",
        fmt="jsonl",
    )
    worker = start([sys.executable, str(WORKER), "import", str(job.pk)], quick_staleness)

    def importing() -> bool:
        job.refresh_from_db()
        return job.status == "running" and (cache.get(import_jobs._progress_key(job.pk)) or 0) > 0

    kill_when(worker, importing)
    killed = time.monotonic()
    job.refresh_from_db()
    assert job.status == "running"
    assert Item.objects.filter(project=project).count() == 0  # its transaction died with it

    while not import_jobs.import_job_is_stale(job):  # shows as stuck once it stops beating
        assert time.monotonic() - killed < 60
        time.sleep(0.2)
    import_jobs.import_job_retry(job=job)
    done = import_jobs.import_job_execute(job_id=job.pk)  # the next worker
    assert done.status == "done", done.error
    assert time.monotonic() - killed < 60
    assert no_duplicates(project) == n
    assert done.result["labels_created"] == 3 * n


def test_web_server_killed_mid_import_writes_all_or_nothing(quick_staleness):
    project = ProjectFactory(task_type="pairwise")
    manager = UserFactory(role="manager")
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    token = user_token(user=manager)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tandem.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "--timeout",
            "120",
        ],
        quick_staleness,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    n = 10_000
    sent = threading.Event()

    def post() -> None:
        sent.set()
        request = urllib.request.Request(
            f"{base}/api/v1/projects/{project.pk}/items/import/",
            data=json.dumps({"rows": rows(n)}).encode(),
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            method="POST",
        )
        with contextlib.suppress(OSError):  # the server died under it: what we want
            urllib.request.urlopen(request, timeout=120).close()

    client = threading.Thread(target=post)
    client.start()
    sent.wait(5)
    time.sleep(1.5)  # the request is in the server, importing
    kill_when(server, lambda: True)
    client.join(30)
    others_gone()  # the killed server's database session ends (commit or roll back) first
    written = no_duplicates(project)
    assert written in (0, n), f"a killed import left {written} of {n} items"

    # The client sends the same rows again: the import completes, nothing doubles.
    result = items_import(project=project, rows=list(enumerate(rows(n), 1)))
    assert result.written and no_duplicates(project) == n


def test_worker_killed_mid_export_then_resumed(quick_staleness, monkeypatch):
    project = ProjectFactory(task_type="pairwise", overlap=3)
    n = 20_000
    items_import(project=project, rows=list(enumerate(rows(n), 1)))
    preferences_recompute(project=project)
    from exports import tasks

    monkeypatch.setattr(tasks.snapshot_build_task, "delay", lambda *a, **k: None)
    snapshot = snapshots.snapshot_create(
        project=project, user=None, format="raw", file_format="jsonl"
    )
    worker = start([sys.executable, str(WORKER), "snapshot", str(snapshot.pk)], quick_staleness)

    def exporting() -> bool:
        snapshot.refresh_from_db()
        return (
            snapshot.status == "running"
            and (cache.get(snapshots._progress_key(snapshot.pk)) or 0) > 0
        )

    kill_when(worker, exporting)
    killed = time.monotonic()
    snapshot.refresh_from_db()
    assert snapshot.status == "running" and not snapshot.folder  # no half snapshot is published

    while not snapshots.snapshot_is_stale(snapshot):
        assert time.monotonic() - killed < 60
        time.sleep(0.2)
    snapshots.snapshot_resume(snapshot=snapshot)
    done = snapshots.snapshot_build(snapshot_id=snapshot.pk)  # the next worker
    assert done.status == "done", done.error
    assert time.monotonic() - killed < 60

    clean = snapshots.snapshot_create(project=project, user=None, format="raw", file_format="jsonl")
    clean = snapshots.snapshot_build(snapshot_id=clean.pk)

    def data(s):  # the data files; the manifests name their own snapshot
        return [(f["path"], f["sha256"]) for f in s.files if f["path"] != "manifest.json"]

    assert data(done) == data(clean)
    assert sum(done.rows.values()) == n
    assert Snapshot.objects.filter(project=project, status="done").count() == 2
