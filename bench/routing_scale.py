"""Routing at scale: ``simulate_routing --policy learned`` and the live router on 10K-100K items.

Items are synthesised from PandaLM (data/pandalm/pandalm.jsonl): rows resampled with a seed, each
with a new external_id and perturbed text (a word of each answer dropped or repeated, a case
number added to the prompt so that about four pairs share each prompt), with the row's human and
judge labels.

- simulation: the whole command as a user runs it (``manage.py simulate_routing FILE --policy
  learned --budgets 0.1,0.2,0.3,0.5 --judge gpt-3.5-turbo --judge pandalm-7b``: start-up, reading,
  features, the grouped cross-fit with model selection, routing and scoring at four budgets);
- live router (PostgreSQL, a fresh database): the items imported (not timed), the learned policy
  with a model fitted on PandaLM stored as the project's RouterModel, then ``project_route`` of
  every item timed, and apart from it the feature computation (``features_table``) over the same
  items.

    .venv/bin/python bench/routing_scale.py [--sizes 10000,30000,100000] [--no-live]
        [--no-simulation] [--database tandem_routeq_bench] [--out FILE]

prints JSON with wall and CPU seconds per size (and writes bench/results/routing_scale.json, or
``--out``). The live router's database (``--database``) is dropped and recreated for each size.
"""

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, fresh_database, machine, manage

sys.path.insert(0, str(ROOT))  # this checkout's code, not an installed copy's

PANDALM = ROOT / "data" / "pandalm" / "pandalm.jsonl"
JUDGES = ["gpt-3.5-turbo", "pandalm-7b"]
_WORD = re.compile(r"\S+")


def perturbed(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    if len(words) > 1:
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            del words[i]
        else:
            words.insert(i, words[i])
    return " ".join(words)


def synthesise(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = [json.loads(line) for line in PANDALM.read_text().splitlines() if line.strip()]
    with open(path, "w") as out:
        for i in range(n):
            row = dict(rng.choice(rows))
            row["external_id"] = f"syn-{i}"
            row["prompt"] = f"{row['prompt']}\n(case {i // 4})"
            row["candidates"] = [
                {**c, "text": perturbed(c["text"], rng)} for c in row["candidates"]
            ]
            out.write(json.dumps(row) + "\n")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_simulation(path: Path) -> dict:
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [
            PYTHON,
            str(ROOT / "manage.py"),
            "simulate_routing",
            str(path),
            "--policy",
            "learned",
            "--no-embeddings",
            *[arg for judge in JUDGES for arg in ("--judge", judge)],
            "--json",
            str(path.with_suffix(".out.json")),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    run = json.loads(path.with_suffix(".out.json").read_text())
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(_children_cpu() - cpu, 1),
        "model": run["model"]["model"],
        "agreement_30": next(r["agreement"] for r in run["results"] if r["budget"] == 0.3),
        "stdout_tail": proc.stdout.strip().splitlines()[-1],
    }


def live_route(slug: str) -> dict:
    """Runs inside Django (``--live SLUG``): store a PandaLM-fitted model, route every item."""
    import io

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
    django.setup()
    from django.conf import settings

    # As the simulation runs (--no-embeddings): the embedding extra's MiniLM, when installed,
    # costs 1-2 ms of CPU per candidate, minutes for 100,000 items on two cores.
    settings.TANDEM_ROUTER = {**getattr(settings, "TANDEM_ROUTER", {}), "embeddings": False}
    import joblib

    from annotation.models import Item, Project
    from routing.router import route
    from routing.router.features import features_table
    from routing.router.models import RouterModel
    from routing.router.simulation import file_model_rates, learned_fit, rows_read, sim_items

    project = Project.objects.get(slug=slug)
    route.routing_policy_set(
        project=project,
        name="learned",
        judges=JUDGES,
        budget_fraction=0.3,
        calibration_share=0.0,
    )
    items = [it for it in sim_items(rows_read(PANDALM), JUDGES) if it.reference in ("A", "B")]
    table = features_table([it.view for it in items], JUDGES, embeddings=False, language=False)
    policy = learned_fit(items, table, params={"repeats": 1}, rates=file_model_rates(items))
    buffer = io.BytesIO()
    joblib.dump(policy, buffer)
    RouterModel.objects.filter(project=project).delete()  # a run before this one
    RouterModel.objects.create(
        project=project,
        version=1,
        feature_version=table.attrs["feature_version"],
        judges=JUDGES,
        n_train=len(items),
        metrics=policy.metrics,
        blob=buffer.getvalue(),
    )
    ids = list(Item.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    # The features alone, as the router computes them (chunk by chunk, nothing stored).
    start, cpu = time.perf_counter(), time.process_time()
    for chunk in route._chunks(ids):
        features_table(route.item_views(chunk), JUDGES, embeddings=False)
    features_seconds = time.perf_counter() - start
    features_cpu = time.process_time() - cpu
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    result = route.project_route(project=project)
    route_seconds = time.perf_counter() - start
    route_cpu = time.process_time() - cpu
    return {
        "items": len(ids),
        "chunk": route.ROUTE_CHUNK,
        "features_seconds": round(features_seconds, 1),
        "features_cpu_seconds": round(features_cpu, 1),
        "route_seconds": round(route_seconds, 1),
        "route_cpu_seconds": round(route_cpu, 1),
        "targets": result.counts(),
        "model": policy.choice,
        "peak_rss_mb_before_route": round(rss_before / 1024),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--no-live", action="store_true")
    parser.add_argument("--no-simulation", action="store_true")
    parser.add_argument(
        "--database", default="tandem_routeq_bench", help="dropped and recreated for each size"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "routing_scale.json"))
    parser.add_argument("--live", help=argparse.SUPPRESS)  # internal: run inside Django
    args = parser.parse_args()
    if args.live:
        print(json.dumps(live_route(args.live)))
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    load = os.getloadavg()[0]
    out: dict = {
        "machine": {**machine(), "load_average_at_start": round(load, 1)},
        "simulation": {},
        "live_router": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"syn{n}.jsonl"
            synthesise(path, n)
            if not args.no_simulation:
                out["simulation"][n] = time_simulation(path)
                print(json.dumps({n: out["simulation"][n]}), file=sys.stderr)
            if args.no_live:
                continue
            url = fresh_database(args.database)
            manage(
                url,
                "import_items",
                "bench",
                str(path),
                "--create",
                "--task-type",
                "pairwise",
                "--no-progress",
            )
            proc = subprocess.run(
                [PYTHON, __file__, "--live", "bench"],
                env={**os.environ, "DATABASE_URL": url},
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                out["live_router"][n] = {"failed": proc.stderr.strip().splitlines()[-3:]}
            else:
                out["live_router"][n] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps({n: out["live_router"][n]}), file=sys.stderr)
    out["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 1)
    result = json.dumps(out, indent=2)
    Path(args.out).write_text(result + "\n")
    print(result)


if __name__ == "__main__":
    main()
