"""Does the learned routing policy carry over to another dataset? PandaLM <-> LLMBar.

The learned policy is fitted on one dataset only and applied to the other, a dataset of a
different kind (PandaLM: ordinary instruction-following pairs, judges gpt-3.5-turbo and
pandalm-7b; LLMBar: natural and adversarial instruction-following pairs, judges gpt-3.5-turbo and
gpt-4). Judge features are named by role, so the model moves between the two judge sets: the
primary judge (the first ``--judge``, gpt-3.5-turbo on both sides) labels, the other judge advises.
Also the within-LLMBar cross-fitted figures, a harder variant with gpt-4 labelling LLMBar (where
the other judge's disagreement points the wrong way; also cross-fitted within LLMBar, and on a
reversed copy of LLMBar, which must give the same figures), and judge_uncertainty (no fitting) on
each target.

    .venv/bin/python bench/routing_transfer_llmbar.py [PANDALM_JSONL [LLMBAR_JSONL]]

writes bench/results/routing_transfer_pandalm_to_llmbar.{json,png},
routing_transfer_llmbar_to_pandalm.{json,png}, routing_llmbar.{json,png},
routing_transfer_pandalm_to_llmbar_gpt4.{json,png}, routing_llmbar_gpt4.{json,png} and the summary
routing_transfer_llmbar.json, and prints the summary. bench/data/llmbar.jsonl is made by
bench/convert_llmbar.py (see bench/data/README.md).
"""

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
os.environ.setdefault("SECRET_KEY", "tandem-bench-only-" + "x" * 40)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

PANDALM = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "data/pandalm/pandalm.jsonl"
LLMBAR = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "bench/data/llmbar.jsonl"
RESULTS = ROOT / "bench" / "results"
BUDGETS = "0.1,0.2,0.3,0.5"
PANDALM_JUDGES = ["gpt-3.5-turbo", "pandalm-7b"]
LLMBAR_JUDGES = ["gpt-3.5-turbo", "gpt-4"]


def judge_args(flag: str, judges: list[str]) -> list[str]:
    return [arg for judge in judges for arg in (flag, judge)]


def simulate(
    name: str, target: Path, judges: list[str], train=None, *, plot: bool = True
) -> list[dict]:
    out = RESULTS / f"{name}.json"
    extra = []
    if train is not None:
        extra = ["--train", str(train[0]), *judge_args("--train-judge", train[1])]
    call_command(
        "simulate_routing",
        str(target),
        "--policy",
        "learned,judge_uncertainty",
        *judge_args("--judge", judges),
        *extra,
        "--budgets",
        BUDGETS,
        "--no-embeddings",
        "--dedupe",
        "--seed",
        "0",
        "--json",
        str(out),
        *(["--plot", str(RESULTS / f"{name}.png")] if plot else []),
    )
    return json.loads(out.read_text())


def table(runs: list[dict]) -> list[dict]:
    by_policy = {run["policy"]: run["results"] for run in runs}
    rows = []
    for learned, uncertainty in zip(
        by_policy["learned"], by_policy["judge_uncertainty"], strict=True
    ):
        rows.append(
            {
                "budget": learned["budget"],
                "all_judge": learned["all_judge"],
                "random": learned["random"],
                "learned": learned["agreement"],
                "judge_uncertainty": uncertainty["agreement"],
                "oracle": learned["oracle"],
            }
        )
    return rows


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    checks = {
        "pandalm_to_llmbar": simulate(
            "routing_transfer_pandalm_to_llmbar",
            LLMBAR,
            LLMBAR_JUDGES,
            train=(PANDALM, PANDALM_JUDGES),
        ),
        "llmbar_to_pandalm": simulate(
            "routing_transfer_llmbar_to_pandalm",
            PANDALM,
            PANDALM_JUDGES,
            train=(LLMBAR, LLMBAR_JUDGES),
        ),
        "llmbar_cross_fitted": simulate("routing_llmbar", LLMBAR, LLMBAR_JUDGES),
        # A harder variant: gpt-4 labels LLMBar and gpt-3.5-turbo advises (the model is still
        # fitted on PandaLM with gpt-3.5-turbo labelling).
        "pandalm_to_llmbar_gpt4_primary": simulate(
            "routing_transfer_pandalm_to_llmbar_gpt4",
            LLMBAR,
            LLMBAR_JUDGES[::-1],
            train=(PANDALM, PANDALM_JUDGES),
        ),
        "llmbar_gpt4_cross_fitted": simulate("routing_llmbar_gpt4", LLMBAR, LLMBAR_JUDGES[::-1]),
    }
    # The gpt-4 transfer on a reversed copy of LLMBar: row order must not change any figure.
    with tempfile.TemporaryDirectory() as tmp:
        reversed_copy = Path(tmp) / "llmbar_reversed.jsonl"
        lines = LLMBAR.read_text().splitlines()
        reversed_copy.write_text("\n".join(lines[::-1]) + "\n")
        backwards = simulate(
            "routing_transfer_pandalm_to_llmbar_gpt4_reversed",
            reversed_copy,
            LLMBAR_JUDGES[::-1],
            train=(PANDALM, PANDALM_JUDGES),
            plot=False,
        )
    same_reversed = [run["results"] for run in backwards] == [
        run["results"] for run in checks["pandalm_to_llmbar_gpt4_primary"]
    ]
    summary: dict = {}
    for name, runs in checks.items():
        rows = table(runs)
        learned = next(run for run in runs if run["policy"] == "learned")
        summary[name] = {
            "model": {
                key: learned["model"].get(key)
                for key in (
                    "trained_on",
                    "n_train",
                    "oof_auc",
                    "model",
                    "selection",
                    "train_judges",
                    "calibration",
                )
            },
            "n_scored": learned["n_scored"],
            "table": rows,
            "learned_beats_random_at_every_budget": all(r["learned"] > r["random"] for r in rows),
            "learned_within_0.005_of_judge_uncertainty": all(
                r["learned"] >= r["judge_uncertainty"] - 0.005 for r in rows
            ),
        }
    summary["pandalm_to_llmbar_gpt4_primary"]["same_reversed"] = same_reversed
    target = RESULTS / "routing_transfer_llmbar.json"
    target.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
