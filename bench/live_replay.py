#!/usr/bin/env python
"""The hybrid loop, live: PandaLM replayed through the running system. Prints JSON.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem python bench/live_replay.py \
        [--rows 999] [--budget 0.3] [--broker redis://127.0.0.1:6379/6] [--json OUT]

What runs, all on loopback:

- a fresh PostgreSQL database (``--database``, dropped and recreated, migrated);
- a local OpenAI-compatible server (``tests/llm_server.py --replay``) that answers each (item,
  order) with the verdict the recorded judge (``gpt-3.5-turbo``, ``pandalm-7b``) gave, in the
  letters of the order shown;
- a real Celery worker (queues ``default`` and ``judge``, Redis broker) and the web app under
  gunicorn;
- a project with overlap 3, a ``judge_uncertainty`` policy at ``--budget`` of the items for
  people (no calibration slice, as in the simulation) and the two judges;
- the rows imported through the REST API **without** their labels; then three simulated
  annotators (threads, one keep-alive connection each) that ask for work (``next``) and answer
  each item with their recorded label (``annotator1..3``) through ``submit``.

Nobody presses anything: the items are routed on arrival, judged by automatic runs, re-routed
when the verdicts are in, labelled by the annotators and resolved into preferences. When the
project is idle and the people's queue is empty, the agreement of the resolved preferences with
the reference (``routing.router.simulation``: gold, else the human majority; items without one
left out; unresolved counts as wrong) is compared with ``simulate_routing``'s judge_uncertainty
figure at the same budget for the same judges; ``ok`` says whether they are within ``--tolerance``
and no more human labels were asked than the budget allows (limit x overlap).
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from common import fresh_database, machine  # noqa: E402

DATA = ROOT / "data" / "pandalm" / "pandalm.jsonl"
JUDGES = (("gpt-35-turbo", "gpt-3.5-turbo"), ("pandalm-7b", "pandalm-7b"))  # (name, model)
ANNOTATORS = ("annotator1", "annotator2", "annotator3")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")


class Http:
    """One keep-alive connection with a token."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.auth = {"Authorization": f"Token {token}"}

    def call(self, method: str, path: str, body: bytes | None = None, headers=None):
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post_json(self, path: str, data: dict | None = None):
        body = json.dumps(data or {}).encode()
        return self.call("POST", path, body, {"Content-Type": "application/json"})

    def upload(self, path: str, name: str, content: bytes):
        boundary = uuid.uuid4().hex
        body = (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.call(
            "POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )


def annotate(port, token, project_id, answers, stop, counts, errors) -> None:
    """One simulated annotator: asks for work until told to stop, answers as recorded."""
    client = Http(port, token)
    try:
        while not stop.is_set():
            status, lease = client.post_json(f"/api/v1/projects/{project_id}/next/")
            if status == 204:
                stop.wait(0.3)
                continue
            if status != 200:
                raise RuntimeError(f"next: {status} {lease}")
            choice = answers.get(lease["item"]["external_id"])
            body = {"idempotency_key": uuid.uuid4().hex, "choice": choice or "tie"}
            status, data = client.post_json(
                f"/api/v1/assignments/{lease['assignment']}/submit/", body
            )
            if status not in (200, 201):
                raise RuntimeError(f"submit: {status} {data}")
            counts[0] += 1
    except Exception as exc:  # reported in the JSON
        errors.append(repr(exc))


def replay(
    *,
    rows: int = 999,
    budget: float = 0.3,
    overlap: int = 3,
    database: str = "tandem_live_replay",
    broker: str = "redis://127.0.0.1:6379/6",
    concurrency: int = 4,
    timeout: float = 1800.0,
    tolerance: float = 0.015,
) -> dict:
    started = time.perf_counter()
    lines = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:rows]
    url = fresh_database(database)
    os.environ["DATABASE_URL"] = url
    os.environ["CELERY_BROKER_URL"] = broker
    os.environ["JUDGE_ALLOW_PRIVATE_URLS"] = "1"  # the judges' server is on loopback
    import redis

    redis.Redis.from_url(broker).flushdb()  # no messages left from an earlier run

    import django

    django.setup()
    from accounts.models import Role
    from accounts.services import user_create, user_token
    from annotation.models import Annotation, Membership
    from annotation.services import membership_set, project_create
    from exports.models import Preference
    from exports.preferences import preferences_recompute
    from routing.judges.models import JudgeRun
    from routing.judges.services import judge_create
    from routing.router.route import routing_policy_set
    from routing.router.simulation import reference_of, rows_read, simulation_run

    workdir = Path(tempfile.mkdtemp(prefix="live-replay-"))
    slice_path = workdir / "rows.jsonl"
    slice_path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    unlabelled = "".join(
        json.dumps({k: v for k, v in r.items() if k not in ("labels", "gold")}) + "\n"
        for r in lines
    ).encode()

    processes: list[subprocess.Popen] = []
    logs = {name: (workdir / f"{name}.log").open("w") for name in ("worker", "web")}
    env = {**os.environ, "DEBUG": "0", "DB_CONN_MAX_AGE": "600"}
    try:
        llm = subprocess.Popen(
            [sys.executable, "-m", "tests.llm_server", "--replay", str(slice_path)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        processes.append(llm)
        llm_port = int(llm.stdout.readline().split()[1])
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"), "-A", "tandem", "worker",
                "-Q", "default,judge", "-c", str(concurrency), "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "-n", f"replay-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=ROOT, env=env, stdout=logs["worker"], stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(worker)
        port = free_port()
        web = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"), "tandem.wsgi",
                "-b", f"127.0.0.1:{port}", "-w", "2", "-k", "gthread", "--threads", "4",
                "--log-level", "warning",
            ],
            cwd=ROOT, env=env, stdout=logs["web"], stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(web)

        slug = f"replay-{uuid.uuid4().hex[:6]}"
        project = project_create(slug=slug, task_type="pairwise", overlap=overlap)
        manager = user_create(username=f"{slug}-manager", role=Role.MANAGER)
        membership_set(project=project, user=manager, role=Membership.Role.MANAGER)
        tokens = {}
        for name in ANNOTATORS:
            user = user_create(username=f"{slug}-{name}", role=Role.ANNOTATOR)
            membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
            tokens[name] = user_token(user=user)
        for name, model in JUDGES:
            judge_create(
                name=name,
                provider="openai_compatible",
                model=model,
                base_url=f"http://127.0.0.1:{llm_port}/v1",
                logprobs=False,  # the recorded verdicts have no confidence
                max_concurrency=16,
                timeout_seconds=60,
            )
        routing_policy_set(
            project=project,
            name="judge_uncertainty",
            judges=[name for name, _ in JUDGES],
            budget_fraction=budget,
            calibration_share=0.0,
        )
        wait_port(port, web, "gunicorn")
        boss = Http(port, user_token(user=manager))

        t0 = time.perf_counter()
        status, result = boss.upload(
            f"/api/v1/projects/{project.pk}/items/import/", "pandalm.jsonl", unlabelled
        )
        if status not in (200, 201):
            raise RuntimeError(f"import: {status} {result}")
        import_s = time.perf_counter() - t0

        def pipeline() -> dict:
            status, state = boss.call("GET", f"/api/v1/projects/{project.pk}/pipeline/")
            if status != 200:
                raise RuntimeError(f"pipeline: {status} {state}")
            return state

        # The annotators start at once: on a project with a policy nobody is given an item
        # before it is routed (annotation.routes.people_routes).
        deadline = time.monotonic() + timeout
        answers = {
            name: {
                r["external_id"]: next(
                    (x["choice"] for x in r["labels"] if x.get("annotator") == name), None
                )
                for r in lines
            }
            for name in ANNOTATORS
        }
        stop = threading.Event()
        counts = [0]
        errors: list[str] = []
        threads = [
            threading.Thread(
                target=annotate,
                args=(port, tokens[name], project.pk, answers[name], stop, counts, errors),
            )
            for name in ANNOTATORS
        ]
        for thread in threads:
            thread.start()
        polls = 0
        while time.monotonic() < deadline:
            state = pipeline()
            polls += 1
            done = (
                state["idle"]
                and state["unrouted"] == 0
                and state["people"]["waiting"] == 0
                and state["judge_runs"]["automatic"] > 0
            )
            if done or errors:
                break
            time.sleep(0.5)
        else:
            state = pipeline()
            errors.append("timed out before the project was idle")
        stop.set()
        for thread in threads:
            thread.join(60)
        loop_s = time.perf_counter() - t0

        # Preferences: the worker recomputes them as labels arrive; recompute once more here
        # so the figure does not depend on the last task's timing.
        preferences_recompute(project=project)
        final = pipeline()
        by_external = {
            ext: choice
            for ext, choice in Preference.objects.filter(project=project).values_list(
                "item__external_id", "choice"
            )
        }
        parsed = rows_read(slice_path)
        scored = ok = 0
        for row in parsed:
            reference, _ = reference_of(row)
            if reference not in ("A", "B"):
                continue
            scored += 1
            ok += by_external.get(row.external_id) == reference
        live = ok / scored if scored else float("nan")
        sim = simulation_run(
            parsed,
            policy="judge_uncertainty",
            budgets=[budget],
            judges=[model for _, model in JUDGES],
            embeddings=False,
        )["results"][0]
        human_labels = Annotation.objects.filter(item__project=project, source="human").count()
        limit = final["budget"]["limit"]
        runs = JudgeRun.objects.filter(project=project)
        calls = sum(r.done - r.cached for r in runs)
        out = {
            "rows": len(lines),
            "scored": scored,
            "budget": budget,
            "overlap": overlap,
            "live_agreement": round(live, 4),
            "simulated_agreement": sim["agreement"],
            "difference": round(live - sim["agreement"], 4),
            "tolerance": tolerance,
            "human_items": final["people"]["done"] + final["people"]["waiting"],
            "simulated_human_items": sim["human_items"],
            "budget_limit": limit,
            "human_labels": human_labels,
            "human_labels_allowed": None if limit is None else limit * overlap,
            "judge_calls": calls,
            "judge_runs": runs.count(),
            "automatic_runs": runs.filter(automatic=True).count(),
            "resolved": final["resolved"],
            "routing_passes": final["routing"]["runs"],
            "import_s": round(import_s, 2),
            "loop_s": round(loop_s, 1),
            "wall_s": round(time.perf_counter() - started, 1),
            "errors": errors,
            "machine": machine(),
        }
        out["ok"] = (
            not errors
            and abs(out["difference"]) <= tolerance
            and (limit is None or human_labels <= limit * overlap)
        )
        return out
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        for handle in logs.values():
            handle.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=999)
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--database", default="tandem_live_replay")
    parser.add_argument(
        "--broker", default=os.environ.get("REPLAY_BROKER", "redis://127.0.0.1:6379/6")
    )
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker processes")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--tolerance", type=float, default=0.015)
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args()
    out = replay(
        rows=args.rows,
        budget=args.budget,
        overlap=args.overlap,
        database=args.database,
        broker=args.broker,
        concurrency=args.concurrency,
        timeout=args.timeout,
        tolerance=args.tolerance,
    )
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
