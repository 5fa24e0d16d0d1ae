"""What each feature group adds to the learned policy: drop one group at a time.

For PandaLM (identical items kept once; gpt-3.5-turbo labels, pandalm-7b advises) and LLMBar
(gpt-3.5-turbo labels, gpt-4 advises), the learned policy is cross-fitted (5 folds grouped by
prompt, seed 0) with one model forced (``models``: logistic, then boosting) and all features, then
without each group (``drop``); judge_uncertainty is the reference. The LLM tag group is absent
from both files (no tags) and left out.

    .venv/bin/python bench/routing_ablation.py

prints JSON and writes bench/results/routing_ablation.json.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")

import django  # noqa: E402

django.setup()

from routing.router.policies.learned import FEATURE_GROUPS  # noqa: E402
from routing.router.simulation import rows_read, simulation_run  # noqa: E402

BUDGETS = [0.1, 0.2, 0.3, 0.5]
DATASETS = {
    "pandalm_dedup": (ROOT / "data/pandalm/pandalm.jsonl", ["gpt-3.5-turbo", "pandalm-7b"]),
    "llmbar": (ROOT / "bench/data/llmbar.jsonl", ["gpt-3.5-turbo", "gpt-4"]),
}


def agreements(run: dict) -> list[float]:
    return [r["agreement"] for r in run["results"]]


def main() -> None:
    out: dict = {"budgets": BUDGETS}
    for name, (path, judges) in DATASETS.items():
        rows = rows_read(path)
        common = {"budgets": BUDGETS, "judges": judges, "embeddings": False, "dedupe": True}
        reference = simulation_run(rows, policy="judge_uncertainty", **common)
        selected = simulation_run(rows, policy="learned", **common)
        entry: dict = {
            "judge_uncertainty": agreements(reference),
            "learned_selected": {
                "agreement": agreements(selected),
                "model": selected["model"]["model"],
                "selection": selected["model"]["selection"],
            },
        }
        for model in ("logistic", "boosting"):
            rows_out = {}
            for drop in [None, *[g for g in FEATURE_GROUPS if g != "tags"]]:
                params = {"models": [model], **({"drop": [drop]} if drop else {})}
                run = simulation_run(rows, policy="learned", params=params, **common)
                rows_out[drop or "all features"] = {
                    "agreement": agreements(run),
                    "oof_auc": round(run["model"]["oof_auc"], 3),
                }
                print(name, model, drop, rows_out[drop or "all features"], file=sys.stderr)
            entry[model] = rows_out
        out[name] = entry
    text = json.dumps(out, indent=2)
    (ROOT / "bench" / "results" / "routing_ablation.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
