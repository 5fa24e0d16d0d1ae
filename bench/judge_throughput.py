"""Judge throughput: calls per second at 1, 8, 32 and 128 requests in flight against the fake
LLM server (tests/llm_server.py, in its own process) answering after 200 ms, as a fraction of the
ideal (in flight / latency), with the worker's peak memory. Prints JSON.

    DATABASE_URL=postgres://... python bench/judge_throughput.py [--levels 1,8,32,128]

The whole run is measured: planning (prompt rendering), the calls through the real OpenAI SDK
client, parsing, and the batched writes of every verdict to the database. It uses a throwaway
database (``bench_judge_<pid>``) that it drops at the end.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This checkout's code wins over any editable install of another checkout in the environment.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
os.environ.setdefault("SECRET_KEY", "tandem-bench-only-" + "x" * 40)


def start_server(latency: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.llm_server", "--latency", str(latency)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--levels", default="1,8,32,128")
    # 50 rounds of calls: 10 s at the ideal rate, long enough that a run's fixed costs (start-up,
    # the last round's stragglers) do not stand in for its throughput.
    parser.add_argument("--calls-per-slot", type=int, default=50)
    parser.add_argument(
        "--no-logprobs", action="store_true", help="judges do not ask for log-probabilities"
    )
    args = parser.parse_args()

    import django
    from django.conf import settings

    settings.DATABASES["default"]["TEST"] = {"NAME": f"bench_judge_{os.getpid()}"}
    django.setup()
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server, port = start_server(args.latency)
    try:
        results = run_levels(args, port)
    finally:
        server.kill()
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(
        json.dumps(
            {
                "bench": "judge_throughput",
                "latency_s": args.latency,
                "logprobs": not args.no_logprobs,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "database": connection.vendor,
                },
                "levels": results,
            },
            indent=2,
        )
    )


def _cpu_seconds() -> float:
    """This process and its ended children (the forked network shards of a run)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_levels(args, port: int) -> list[dict]:
    from annotation.models import Candidate, Item, Project
    from routing.judges import services
    from routing.judges.network import shards_for
    from routing.judges.providers import preload_sdks
    from routing.judges.runner import judge_run_execute

    preload_sdks()  # as a judge worker does at start-up (routing/tasks.py)
    results = []
    for level in [int(x) for x in args.levels.split(",")]:
        calls = max(20, level * args.calls_per_slot)
        project = Project.objects.create(
            name=f"bench {level}", slug=f"bench-{level}", task_type="pairwise", label_schema={}
        )
        items = Item.objects.bulk_create(
            Item(
                project=project,
                external_id=f"i{i}",
                prompt=f"Question {i}?",
                content_hash=f"{i:064x}",
                route="judge",
            )
            for i in range(calls // 2)
        )
        Candidate.objects.bulk_create(
            Candidate(item=item, position=p, text=f"Answer {p} to {item.external_id}. " * (p + 1))
            for item in items
            for p in (0, 1)
        )
        judge = services.judge_create(
            name=f"bench-{level}",
            provider="openai_compatible",
            model="fake",
            base_url=f"http://127.0.0.1:{port}/v1",
            max_concurrency=level,
            timeout_seconds=30,
            logprobs=not args.no_logprobs,
        )
        run = services.judge_run_create(
            project=project, judge=judge, use_cache=False, enqueue=False
        )
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        run = judge_run_execute(run_id=run.pk)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
        throughput = run.done / elapsed
        ideal = level / args.latency
        results.append(
            {
                "in_flight": level,
                "shards": shards_for(level),
                "calls": run.total,
                "done": run.done,
                "status": run.status,
                "seconds": round(elapsed, 3),
                "calls_per_s": round(throughput, 1),
                "ideal_calls_per_s": round(ideal, 1),
                "fraction_of_ideal": round(throughput / ideal, 3),
                # The worker's CPU (all its threads and shard processes) per stored verdict: less
                # sensitive than the rate to other load on a shared machine.
                "worker_cpu_ms_per_call": round(cpu * 1000 / max(1, run.done), 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    return results


if __name__ == "__main__":
    main()
