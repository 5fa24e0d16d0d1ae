"""The routing figures on PandaLM: identical items kept once, in file order and reversed.

Runs ``simulate_routing data/pandalm/pandalm.jsonl --dedupe --policy
all_judge,random,judge_uncertainty,learned --judge gpt-3.5-turbo --judge pandalm-7b --seed 0``
on the file and on a reversed copy, checks that the two agree, and writes
bench/results/routing_pandalm.{json,png} (file order) and routing_pandalm_reversed.json.

    .venv/bin/python bench/routing_pandalm.py
"""

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

PANDALM = ROOT / "data" / "pandalm" / "pandalm.jsonl"
RESULTS = ROOT / "bench" / "results"
POLICIES = "all_judge,random,judge_uncertainty,learned"


def simulate(path: Path, out: Path, plot: Path | None = None) -> list[dict]:
    call_command(
        "simulate_routing",
        str(path),
        "--dedupe",
        "--policy",
        POLICIES,
        "--judge",
        "gpt-3.5-turbo",
        "--judge",
        "pandalm-7b",
        "--seed",
        "0",
        "--no-embeddings",
        "--json",
        str(out),
        *(["--plot", str(plot)] if plot else []),
    )
    return json.loads(out.read_text())


def main() -> None:
    forward = simulate(PANDALM, RESULTS / "routing_pandalm.json", RESULTS / "routing_pandalm.png")
    with tempfile.TemporaryDirectory() as tmp:
        reversed_file = Path(tmp) / "pandalm_reversed.jsonl"
        lines = [line for line in PANDALM.read_text().splitlines() if line.strip()]
        reversed_file.write_text("\n".join(reversed(lines)) + "\n")
        backward = simulate(reversed_file, RESULTS / "routing_pandalm_reversed.json")
    table = []
    for i, budget in enumerate(r["budget"] for r in forward[0]["results"]):
        row = {"budget": budget}
        for run in forward:
            row[run["policy"]] = run["results"][i]["agreement"]
        row["oracle"] = forward[0]["results"][i]["oracle"]
        row["random_expected"] = forward[0]["results"][i]["random"]
        table.append(row)
    summary = {
        "n_scored": forward[0]["n_scored"],
        "n_duplicates_removed": forward[0]["n_duplicates_removed"],
        "same_reversed": [run["results"] for run in forward]
        == [run["results"] for run in backward],
        "learned_model": {
            k: forward[-1]["model"][k] for k in ("model", "selection", "oof_auc", "n_groups")
        },
        "table": table,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
