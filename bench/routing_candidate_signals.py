"""Signals the data has that the learned policy's features do not carry yet: are they worth adding?

The judge-evaluation literature reads uncertainty from the judge's own explanation as well as from
its verdict: hedging ("both", "while", "slightly", "however"), reasons that are about length or
detail (verbosity bias: "concise", "detailed", "comprehensive") rather than about correctness
("correct", "inaccurate"), and how long the explanation is. PandaLM keeps every judge's
rationale (LLMBar has none), so this bench measures such a group on de-duplicated PandaLM, in the
same cross-fit as ``bench/routing_ablation.py`` (5 folds grouped by prompt, seed 0): for each
model (``logistic``, ``boosting``, and the normal selection among all candidates) the agreement at
10 / 20 / 30 / 50% and the out-of-fold AUC, with and without the rationale group. The features are
added here only (patched into the simulation's feature table), not to ``routing.router.features``:
a group that does not help is not kept (docs/routing.md, *What each feature group adds*).

    .venv/bin/python bench/routing_candidate_signals.py

prints JSON and writes bench/results/routing_candidate_signals.json.
"""

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import routing.router.policies.learned as learned  # noqa: E402
import routing.router.simulation as simulation  # noqa: E402

PANDALM = ROOT / "data/pandalm/pandalm.jsonl"
JUDGES = ["gpt-3.5-turbo", "pandalm-7b"]
BUDGETS = [0.1, 0.2, 0.3, 0.5]
# Word lists fixed before measuring (from the literature's bias categories, not from the labels).
LENGTH = re.compile(
    r"\b(concise|brief|short|shorter|longer|lengthy|detailed|details?|comprehensive|"
    r"more information|elaborat\w*|thorough|succinct|verbose|wordy)\b"
)
CORRECTNESS = re.compile(
    r"\b(correct|incorrect|accurate|inaccurate|wrong|error|mistakes?|factual\w*|true|false)\b"
)
HEDGE = re.compile(
    r"\b(both|but|while|however|although|though|same|similar|equally|slightly|somewhat|whereas)\b"
)
RATIONALE = (
    "rationale_words",
    "rationale_length",
    "rationale_correctness",
    "rationale_hedges",
    "others_rationale_length",
)


def rationale_table(views, judges, by_item: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Per item: the primary judge's rationale's length in words, whether it argues from length
    or from correctness, its hedge words; whether another judge argues from length."""
    rows = []
    for view in views:
        texts = by_item.get(view.key, {})
        primary = (texts.get(judges[0]) or "").lower()
        others = [(texts.get(j) or "").lower() for j in judges[1:]]
        rows.append(
            {
                "rationale_words": len(primary.split()) if primary else np.nan,
                "rationale_length": float(bool(LENGTH.search(primary))) if primary else np.nan,
                "rationale_correctness": (
                    float(bool(CORRECTNESS.search(primary))) if primary else np.nan
                ),
                "rationale_hedges": len(HEDGE.findall(primary)) if primary else np.nan,
                "others_rationale_length": (
                    float(any(LENGTH.search(t) for t in others)) if any(others) else np.nan
                ),
            }
        )
    return pd.DataFrame(rows, index=[view.key for view in views])


def main() -> None:
    rows = simulation.rows_read(PANDALM)
    by_item = {
        row.external_id: {
            label.judge: label.payload.get("rationale") or ""
            for label in row.labels
            if label.source == "judge"
        }
        for row in rows
    }
    plain = simulation.features_table

    def with_rationale(views, judges, **kwargs):
        views = list(views)
        return plain(views, judges, **kwargs).join(rationale_table(views, judges, by_item))

    simulation.features_table = with_rationale
    learned.LEARNED_FEATURES = (*learned.LEARNED_FEATURES, *RATIONALE)
    learned.FEATURE_GROUPS["rationale"] = RATIONALE
    common = {"budgets": BUDGETS, "judges": JUDGES, "embeddings": False, "dedupe": True}
    out: dict = {
        "budgets": BUDGETS,
        "judge_uncertainty": [
            r["agreement"]
            for r in simulation.simulation_run(rows, policy="judge_uncertainty", **common)[
                "results"
            ]
        ],
    }
    for label, models in (
        ("selected", None),
        ("logistic", ["logistic"]),
        ("boosting", ["boosting"]),
    ):
        for with_group in (False, True):
            params = {} if models is None else {"models": models}
            if not with_group:
                params["drop"] = ["rationale"]
            run = simulation.simulation_run(rows, policy="learned", params=params, **common)
            key = f"{label}, {'with' if with_group else 'without'} rationale"
            out[key] = {
                "agreement": [r["agreement"] for r in run["results"]],
                "oof_auc": round(run["model"]["oof_auc"], 3),
                "model": run["model"]["model"],
                "selection": run["model"]["selection"],
            }
            print(key, out[key], file=sys.stderr)
    text = json.dumps(out, indent=2)
    (ROOT / "bench" / "results" / "routing_candidate_signals.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
