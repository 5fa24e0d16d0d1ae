"""PandaLM routing with and without the reward model's margin as a feature.

Runs, on de-duplicated PandaLM, ``simulate_routing data/pandalm/pandalm.jsonl --dedupe --policy
judge_uncertainty,learned --judge gpt-3.5-turbo --judge pandalm-7b --seed 0 --no-embeddings``
twice: as it is, and with ``--rm-scores bench/results/pandalm_rm_scores.jsonl`` (out-of-fold
margins of a MiniLM reward model: ``bench/rm_scores_pandalm.py``); also the rule
``rm_margin < T -> human`` alone, T the margin's quantile at each budget. Writes
bench/results/routing_pandalm_rm.json and prints a summary (JSON) with CPU and wall time.

    python bench/routing_rm_pandalm.py [--scores FILE]
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
os.environ.setdefault("SECRET_KEY", "tandem-bench-only-" + "x" * 40)

import django  # noqa: E402

django.setup()

from routing.router.simulation import (  # noqa: E402
    items_deduplicated,
    rm_scores_read,
    rows_read,
    sim_items,
    simulation_run,
)

PANDALM = ROOT / "data" / "pandalm" / "pandalm.jsonl"
RESULTS = ROOT / "bench" / "results"
JUDGES = ["gpt-3.5-turbo", "pandalm-7b"]
BUDGETS = [0.1, 0.2, 0.3, 0.5]


def rm_alone(rows, margins) -> list[dict]:
    """The rule ``rm_margin < T -> human`` with T the budget's quantile of the scored items'
    margins: the reward model's doubt alone, no judge signal."""
    deduped, _ = items_deduplicated(rows)
    scored = [it for it in sim_items(deduped, JUDGES) if it.reference in ("A", "B")]
    sizes = sorted(float(abs(margins.get(it.view.key, float("inf")))) for it in scored)
    out = []
    for budget in BUDGETS:
        k = round(budget * len(scored))
        threshold = sizes[k] if k < len(sizes) else float("inf")
        run = simulation_run(
            rows,
            policy="rules",
            budgets=[budget],
            judges=JUDGES,
            params={"rules": [f"rm_margin < {threshold!r} -> human"]},
            seed=0,
            embeddings=False,
            dedupe=True,
            rm_margins=margins,
        )
        out.append({**run["results"][0], "threshold": round(threshold, 6)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, default=RESULTS / "pandalm_rm_scores.jsonl")
    parser.add_argument("--out", type=Path, default=RESULTS / "routing_pandalm_rm.json")
    args = parser.parse_args()
    started = time.monotonic()
    rows = rows_read(PANDALM)
    margins = rm_scores_read(args.scores, rows)
    runs: dict[str, dict] = {}
    for policy in ("judge_uncertainty", "learned"):
        for name, rm in ((policy, None), (f"{policy}+rm", margins)):
            runs[name] = simulation_run(
                rows,
                policy=policy,
                budgets=BUDGETS,
                judges=JUDGES,
                seed=0,
                embeddings=False,
                dedupe=True,
                rm_margins=rm,
            )
    alone = rm_alone(rows, margins)
    first = runs["judge_uncertainty"]
    table = []
    for i, budget in enumerate(BUDGETS):
        row = {"budget": budget, "all_judge": first["results"][i]["all_judge"]}
        row["random"] = first["results"][i]["random"]
        for name, run in runs.items():
            row[name] = run["results"][i]["agreement"]
        row["rm_margin_rule"] = alone[i]["agreement"]
        row["oracle"] = first["results"][i]["oracle"]
        table.append(row)
    models = {
        name: {k: run["model"].get(k) for k in ("model", "selection", "oof_auc", "features")}
        for name, run in runs.items()
        if "model" in run
    }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = {
        "bench": "routing_rm_pandalm",
        "scores": str(args.scores.relative_to(ROOT) if args.scores.is_absolute() else args.scores),
        "n_scored": first["n_scored"],
        "table": table,
        "learned_models": models,
        "wall_seconds": round(time.monotonic() - started, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "runs": runs, "rm_rule": alone}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
