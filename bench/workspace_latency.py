#!/usr/bin/env python
"""Next-task and submit over real HTTP: gunicorn + PostgreSQL on loopback. Prints JSON.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem python bench/workspace_latency.py

DATABASE_URL names the PostgreSQL server; the bench drops and recreates its own database there
(``--database``, default ``tandem_bench4``) and migrates it.

For each project size: one annotator's next-task and submit latency (p50, p99, over
``--single`` tasks), then ``--annotators`` concurrent annotators (one thread and one keep-alive
connection each) labelling for ``--seconds``: tasks per second and p50/p99 of each call. Also the
plan of the next-task query (it must read the ``item_human_pool`` index, not scan the project).
Only loopback traffic; every loop is bounded.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
os.environ.setdefault("SECRET_KEY", "tandem-bench-only-" + "x" * 40)

from common import fresh_database, machine  # noqa: E402  (bench/ is the script's directory)

os.environ.setdefault("LOG_LEVEL", "WARNING")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 2)


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 0.5),
        "p99_ms": percentile(values, 0.99),
        "mean_ms": round(statistics.fmean(values), 2) if values else None,
    }


class Client:
    """One annotator: a keep-alive HTTP connection and a token."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict | None = None) -> tuple[int, dict | None, float]:
        start = time.perf_counter()
        self.conn.request("POST", path, body=json.dumps(body or {}), headers=self.headers)
        response = self.conn.getresponse()
        raw = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        return response.status, (json.loads(raw) if raw else None), elapsed

    def task(self, project_id: int, times: dict[str, list[float]]) -> bool:
        status, lease, ms = self.post(f"/api/v1/projects/{project_id}/next/")
        if status == 204:
            return False
        if status != 200:
            raise RuntimeError(f"next: {status} {lease}")
        times["next"].append(ms)
        choice = lease["candidates"][0]["letter"]
        body = {"idempotency_key": uuid.uuid4().hex, "choice": choice, "strength": 1}
        status, data, ms = self.post(f"/api/v1/assignments/{lease['assignment']}/submit/", body)
        if status != 201:
            raise RuntimeError(f"submit: {status} {data}")
        times["submit"].append(ms)
        return True


def setup_project(n_items: int, n_annotators: int, overlap: int):
    from accounts.models import Role
    from accounts.services import user_create, user_token
    from annotation.importer import items_import
    from annotation.models import Membership
    from annotation.services import membership_set, project_create

    slug = f"bench-{n_items}-{uuid.uuid4().hex[:6]}"
    project = project_create(slug=slug, task_type="pairwise", overlap=overlap, lease_seconds=600)
    text = "A response of a few sentences, with **markdown** and some `code`. " * 4
    rows = (
        (i, {"external_id": f"b{i}", "prompt": f"Question {i}?",
             "candidates": [{"text": f"{text} A{i}"}, {"text": f"{text} B{i}"}]})
        for i in range(1, n_items + 1)
    )  # fmt: skip
    started = time.perf_counter()
    result = items_import(project=project, rows=rows)
    import_s = time.perf_counter() - started
    tokens = []
    for i in range(n_annotators + 1):
        user = user_create(username=f"{slug}-u{i}", role=Role.ANNOTATOR)
        membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
        tokens.append(user_token(user=user))
    return project, tokens, {"items": result.created, "import_s": round(import_s, 2)}


def next_task_plan(project, user_token_key: str) -> list[str]:
    from django.db import connection, transaction
    from rest_framework.authtoken.models import Token

    from annotation.assignment import _pick

    user = Token.objects.get(key=user_token_key).user
    with transaction.atomic():
        queries = []

        def capture(execute, sql, params, many, context):
            queries.append((sql, params))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(capture):
            _pick(project, user, gold=False)
        sql, params = queries[-1]
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            plan = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return plan


class LockSampler(threading.Thread):
    """Samples pg_stat_activity: how many backends of this database wait on a lock, how many
    run. Lock waits that grow with the number of annotators would show here."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        import psycopg
        from dj_database_url import parse

        cfg = parse(os.environ["DATABASE_URL"])
        with psycopg.connect(
            host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], dbname=cfg["NAME"],
            autocommit=True,
        ) as conn:  # fmt: skip
            while not self.halt.wait(self.interval):
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), "
                    "count(*) FILTER (WHERE state = 'active') - 1 "
                    "FROM pg_stat_activity WHERE datname = current_database()"
                ).fetchone()
                self.samples.append((row[0], row[1]))

    def report(self) -> dict:
        waits = [w for w, _ in self.samples]
        active = [a for _, a in self.samples]
        return {
            "samples": len(self.samples),
            "lock_waiters_max": max(waits, default=0),
            "lock_waiters_mean": round(statistics.fmean(waits), 3) if waits else 0,
            "share_of_samples_with_a_lock_wait": round(sum(1 for w in waits if w) / len(waits), 3)
            if waits
            else 0,
            "active_queries_mean": round(statistics.fmean(active), 2) if active else 0,
        }


def cpu_busy() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(port: int, workers: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "DB_CONN_MAX_AGE": "600", "DEBUG": "0"}
    process = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"), "tandem.wsgi", "-b", f"127.0.0.1:{port}",
            "-w", str(workers), "-k", "gthread", "--threads", str(threads),
            "--log-level", "warning", "--backlog", "256",
        ],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("gunicorn did not start")


def run_size(args, n_items: int, port: int) -> dict:
    project, tokens, loaded = setup_project(n_items, args.annotators, args.overlap)
    out: dict = {"project_items": n_items, "overlap": args.overlap, **loaded}

    # Warm up every worker's connection and code paths on a few tasks, then one annotator.
    warm = Client(port, tokens[0])
    times = {"next": [], "submit": []}
    for _ in range(20):
        warm.task(project.pk, times)
    times = {"next": [], "submit": []}
    for _ in range(args.single):
        if not warm.task(project.pk, times):
            break
    out["single_annotator"] = {"next": summary(times["next"]), "submit": summary(times["submit"])}

    # Many annotators at once, for a fixed time.
    all_times = {"next": [], "submit": []}
    done = [0] * args.annotators
    errors: list[str] = []
    stop = time.monotonic() + args.seconds
    barrier = threading.Barrier(args.annotators + 1)

    def annotator(index: int) -> None:
        client = Client(port, tokens[index + 1])
        mine = {"next": [], "submit": []}
        try:
            barrier.wait()
            while time.monotonic() < stop and client.task(project.pk, mine):
                done[index] += 1
        except Exception as exc:  # reported in the JSON
            errors.append(repr(exc))
        finally:
            for key in all_times:
                all_times[key].extend(mine[key])

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(args.annotators)]
    for thread in threads:
        thread.start()
    sampler = LockSampler()
    sampler.start()
    barrier.wait()
    started = time.perf_counter()
    busy0, total0 = cpu_busy()
    for thread in threads:
        thread.join(timeout=args.seconds + 60)
    elapsed = time.perf_counter() - started
    busy1, total1 = cpu_busy()
    sampler.halt.set()
    sampler.join(timeout=5)
    out["concurrent"] = {
        "annotators": args.annotators,
        "seconds": round(elapsed, 2),
        "tasks": sum(done),
        "tasks_per_s": round(sum(done) / elapsed, 1),
        "next": summary(all_times["next"]),
        "submit": summary(all_times["submit"]),
        "errors": errors[:5],
        "cpu_busy_share": round((busy1 - busy0) / max(total1 - total0, 1), 3),
        "postgres": sampler.report(),
    }
    out["next_task_plan"] = next_task_plan(project, tokens[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[2000, 100_000])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--single", type=int, default=300, help="tasks for the one-annotator run")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database", default="tandem_bench4")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = fresh_database(args.database)
    import django

    django.setup()

    port = free_port()
    server = start_gunicorn(port, args.workers, args.threads)
    try:
        results = [run_size(args, n, port) for n in args.items]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        json.dumps(
            {
                "bench": "workspace_latency",
                "machine": machine(),
                "server": {"gunicorn_workers": args.workers, "threads": args.threads},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
