"""Label-quality figures: the quality page, its API and a Dawid-Skene run over a big project.

Builds N pairwise items (default 100,000) with 3 human labels each (30 annotators: one answers at
random, one picks whatever is shown first) and one judge's verdicts in both presentation orders
(it favours the first shown and the longer candidate; 2% of its answers unparsed), 2% gold items,
in a fresh PostgreSQL database through ``manage.py import_items`` (COPY). Then, in a fresh
process, times the labels read, every figure (``quality_report``), the whole page and the API
over HTTP (Django's test client), and Dawid-Skene / majority over all labels; then, each in its
own process, a recompute of every Preference with ``majority`` and with ``dawid_skene`` (wall
time, peak RSS, accuracy on the gold items). Prints JSON.

    python bench/quality.py [--items 100000] [--reuse] [--database NAME] [--build-only]
                            [--repeat 5] [--page-only]

Each timing is one warm-up call, then ``--repeat`` calls: the median and fastest wall time, the
median CPU time of the measuring process (Python) and of its PostgreSQL backend (read from
/proc; the database must run on the same machine). ``--reuse`` measures again on the database an
earlier run built; ``--page-only`` skips Dawid-Skene and the recomputes. The load average
(1, 5, 15 min) is recorded before and after: on a shared machine, wall time is mostly waiting.
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, fresh_database, machine, manage  # bench/ is on sys.path

SLUG = "bench-quality"
ANNOTATORS = [f"annotator{i:02d}" for i in range(1, 31)]
CARELESS, FIRST_PICKER = "annotator07", "annotator13"


def words(rng: random.Random, n: int) -> str:
    vocabulary = [
        "the",
        "a",
        "model",
        "answer",
        "is",
        "good",
        "better",
        "because",
        "data",
        "step",
        "result",
        "first",
        "then",
    ]
    return " ".join(rng.choice(vocabulary) for _ in range(n))


def write_file(path: Path, n: int, seed: int = 5) -> int:
    rng = random.Random(seed)
    texts = [words(rng, rng.randint(10, 250)) for _ in range(3000)]
    labels = 0
    with open(path, "w") as out:
        for i in range(n):
            a, b = rng.choice(texts), rng.choice(texts)
            truth = rng.choices(["A", "B", "tie"], weights=[45, 45, 10])[0]
            row = {
                "external_id": f"q-{i}",
                "prompt": f"Question {i}?",
                "candidates": [{"text": a}, {"text": b}],
                "labels": [],
            }
            if rng.random() < 0.02:
                row["gold"] = truth
            for name in rng.sample(ANNOTATORS, 3):
                order = rng.choice(["AB", "BA"])
                if name == CARELESS:
                    choice = rng.choice(["A", "B", "tie"])
                elif name == FIRST_PICKER and rng.random() < 0.6:
                    choice = order[0]
                else:
                    choice = truth if rng.random() < 0.8 else rng.choice(["A", "B", "tie"])
                row["labels"].append(
                    {
                        "source": "human",
                        "annotator": name,
                        "choice": choice,
                        "order": order,
                        "time_spent_ms": int(rng.lognormvariate(9.5, 0.5)),
                    }
                )
            longer = "A" if len(a) > len(b) else "B"
            for order in ("AB", "BA"):
                roll = rng.random()
                if roll < 0.02:
                    choice = None
                elif roll < 0.22:
                    choice = order[0]
                elif roll < 0.32:
                    choice = longer
                else:
                    choice = truth if rng.random() < 0.85 else rng.choice(["A", "B", "tie"])
                row["labels"].append(
                    {"source": "judge", "judge": "judge-a", "order": order, "choice": choice}
                )
            labels += len(row["labels"])
            out.write(json.dumps(row) + "\n")
    return labels


def measure() -> dict:
    """In a fresh process with DATABASE_URL set: time the figures, the page and Dawid-Skene."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.test import Client

    from accounts.models import Role, User
    from annotation import quality
    from annotation.models import Membership, Project
    from exports import aggregators

    project = Project.objects.get(slug=SLUG)
    manager, _ = User.objects.get_or_create(username="bench-manager", role=Role.MANAGER)
    Membership.objects.get_or_create(
        project=project, user=manager, defaults={"role": Membership.Role.MANAGER}
    )

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def timed(function, repeat=REPEAT):
        """One warm-up call, then ``repeat`` timed calls: wall time, this process's CPU time and
        the PostgreSQL backend's CPU time (read from /proc: the server runs on this machine;
        parallel workers' CPU is not in it)."""
        value = function()
        runs, cpu, db_cpu = [], [], []
        for _ in range(repeat):
            start, start_cpu, start_db = time.perf_counter(), time.process_time(), cpu_of(backend)
            value = function()
            runs.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            end_db = cpu_of(backend)
            db_cpu.append(None if end_db is None else end_db - start_db)
        return value, {
            "min_s": round(min(runs), 3),
            "median_s": round(statistics.median(runs), 3),
            "runs_s": runs,
            "python_cpu_median_s": round(statistics.median(cpu), 3),
            "db_backend_cpu_median_s": None
            if None in db_cpu
            else round(statistics.median(db_cpu), 3),
        }

    labels, read = timed(lambda: quality.quality_labels(project=project))
    report, figures = timed(lambda: quality.quality_report(project=project))
    client = Client()
    client.force_login(manager)
    page, page_time = timed(lambda: client.get(f"/projects/{project.pk}/quality/"))
    assert page.status_code == 200, page.status_code
    api, api_time = timed(lambda: client.get(f"/api/v1/projects/{project.pk}/quality/"))
    assert api.status_code == 200, api.status_code
    votes = labels[["item", "worker", "label", "source"]]
    ds, ds_time = timed(lambda: aggregators.dawid_skene(votes), repeat=1) if FULL else (None, None)
    _, majority_time = timed(lambda: aggregators.majority(votes))
    people = {r.annotator: r for r in report.annotators}
    judge = report.judges[0]
    for timing in (read, figures, page_time, api_time, ds_time, majority_time):
        if timing is not None:
            timing["runs_s"] = [round(r, 3) for r in timing["runs_s"]]
    return {
        "labels": len(labels),
        "human_labels": report.human_labels,
        "judge_labels": report.judge_labels,
        "read_labels": read,
        "quality_report": figures,
        "quality_page_http": page_time,
        "quality_api_http": api_time,
        "page_bytes": len(page.content),
        "dawid_skene_all_labels": ds_time,
        "majority_all_labels": majority_time,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "found": {
            "alpha": report.agreement.krippendorff_alpha.value,
            "fleiss_kappa": report.agreement.fleiss_kappa.value,
            "careless_peer_agreement": people[CARELESS].peer_agreement.value,
            "careless_flags": people[CARELESS].flags,
            "first_picker_first_wins": people[FIRST_PICKER].position_bias.first_wins.value,
            "first_picker_flags": people[FIRST_PICKER].flags,
            "judge_first_wins": judge.position_bias.first_wins.value,
            "judge_longer_wins": judge.length_bias.value,
            "human_majority_longer_wins": report.length_bias_reference.value,
            "judge_flags": judge.flags,
            **(
                {
                    "ds_weight_careless": round(float(ds.workers[CARELESS]), 3),
                    "ds_weight_median_other": round(float(ds.workers.drop(CARELESS).median()), 3),
                }
                if ds is not None
                else {}
            ),
        },
    }


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None where /proc does not show it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Set by main() from the flags, read by measure() in the child process (through the env).
REPEAT = int(os.environ.get("BENCH_QUALITY_REPEAT", "5"))
FULL = os.environ.get("BENCH_QUALITY_PAGE_ONLY", "") != "1"


def recompute(method: str) -> dict:
    """In a fresh process: recompute every Preference of the project with ``method`` (the
    service the recompute task runs), its wall time and the process's peak RSS."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from annotation.models import Item, Project
    from exports.models import Preference
    from exports.preferences import preferences_recompute

    project = Project.objects.get(slug=SLUG)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, start_cpu = time.perf_counter(), time.process_time()
    result = preferences_recompute(project=project, method=method)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    gold = dict(Item.objects.filter(project=project, gold__isnull=False).values_list("pk", "gold"))
    chosen = dict(
        Preference.objects.filter(item_id__in=list(gold)).values_list("item_id", "choice")
    )
    return {
        "method": method,
        **result.to_dict(),
        "wall_s": round(wall, 2),
        "python_cpu_s": round(cpu, 2),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "gold_items": len(gold),
        "gold_accuracy": round(sum(chosen.get(i) == g for i, g in gold.items()) / len(gold), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recompute", help=argparse.SUPPRESS)
    parser.add_argument(
        "--reuse", action="store_true", help="measure again on the database a run built"
    )
    parser.add_argument("--database", default="tandem_bench_quality", help="database name")
    parser.add_argument("--build-only", action="store_true", help="build the data, measure nothing")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument(
        "--page-only",
        action="store_true",
        help="the read, the figures, the page and the API only (no Dawid-Skene, no recomputes)",
    )
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return
    if args.recompute:
        print(json.dumps(recompute(args.recompute)))
        return

    results = {"benchmark": "quality", "items": args.items, "machine": machine()}
    if args.reuse:
        url = database_url(args.database)
    else:
        url = fresh_database(args.database)
        build(url, args.items, results)
    if args.build_only:
        print(json.dumps(results, indent=2))
        return
    results["load_average_before"] = os.getloadavg()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DB_CONN_MAX_AGE": "0",
        "BENCH_QUALITY_REPEAT": str(args.repeat),
        "BENCH_QUALITY_PAGE_ONLY": "1" if args.page_only else "",
    }
    done = subprocess.run(
        [sys.executable, __file__, "--measure"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    results["load_average_after"] = os.getloadavg()
    results.update(json.loads(done.stdout.strip().splitlines()[-1]))
    if args.page_only:
        print(json.dumps(results, indent=2))
        return
    # Preference recomputes over the whole project, each in its own process (peak RSS is the
    # recompute's): majority, then Dawid-Skene (every row changes method), then majority again.
    for key, method in [
        ("preferences_recompute_majority", "majority"),
        ("preferences_recompute_dawid_skene", "dawid_skene"),
    ]:
        run = subprocess.run(
            [sys.executable, __file__, "--recompute", method],
            env={**os.environ, "DATABASE_URL": url, "DB_CONN_MAX_AGE": "0"},
            check=True,
            capture_output=True,
            text=True,
        )
        results[key] = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(results, indent=2))


def database_url(name: str) -> str:
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem")
    return base.rsplit("/", 1)[0] + f"/{name}"


def build(url: str, n_items: int, results: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.jsonl"
        results["labels_written"] = write_file(path, n_items)
        start = time.perf_counter()
        manage(url, "import_items", SLUG, str(path), "--create", "--task-type", "pairwise",
               "--no-progress")  # fmt: skip
        results["build_seconds"] = round(time.perf_counter() - start, 1)
    manage(url, "shell", "-c", "from django.db import connection; "
           "connection.cursor().execute('VACUUM ANALYZE')")  # fmt: skip


if __name__ == "__main__":
    main()
