"""Does the learned routing policy carry over? A check within PandaLM, made before a second
dataset was available; the cross-dataset check (PandaLM <-> LLMBar) is
bench/routing_transfer_llmbar.py (docs/routing.md, "Carry-over to LLMBar").

PandaLM's items are split by the app their task comes from (half of the 50 apps each, by a hash of
the app's name), so the two halves hold different kinds of tasks. The policy is fitted on the
first half with gpt-3.5-turbo as the judge that labels and pandalm-7b as the second opinion, then
applied to the other half with the roles swapped: pandalm-7b labels, gpt-3.5-turbo advises. Items,
task kinds and the labelling judge all differ between fitting and use.

    .venv/bin/python bench/routing_transfer.py [PANDALM_JSONL]

prints the JSON it writes to bench/results/routing_pandalm_transfer.json.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
os.environ.setdefault("SECRET_KEY", "tandem-bench-only-" + "x" * 40)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

SOURCE = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "data/pandalm/pandalm.jsonl"
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results"


def half(app: str) -> int:
    return hashlib.sha256(app.encode()).digest()[0] % 2


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    train, test = OUT / "pandalm_apps_a.jsonl", OUT / "pandalm_apps_b.jsonl"
    with SOURCE.open() as src, train.open("w") as a, test.open("w") as b:
        for line in src:
            row = json.loads(line)
            (a if half(str(row["metadata"].get("app"))) == 0 else b).write(line)
    runs = {}
    for name, policy, extra in (
        ("learned_transfer", "learned", ["--train", str(train)]),
        ("judge_uncertainty", "judge_uncertainty", []),
    ):
        out = OUT / f"transfer_{name}.json"
        call_command(
            "simulate_routing",
            str(test),
            "--policy",
            policy,
            "--judge",
            "pandalm-7b",
            "--judge",
            "gpt-3.5-turbo",
            *(["--train-judge", "gpt-3.5-turbo", "--train-judge", "pandalm-7b"] if extra else []),
            *extra,
            "--json",
            str(out),
        )
        runs[name] = json.loads(out.read_text())
    summary = {
        "check": "fit on PandaLM apps half A (gpt-3.5-turbo labels, pandalm-7b advises); apply "
        "to apps half B with the roles swapped (pandalm-7b labels, gpt-3.5-turbo advises)",
        "n_train_rows": sum(1 for _ in train.open()),
        "runs": runs,
        "beats_random_at_every_budget": all(
            r["agreement"] > r["random"] for r in runs["learned_transfer"]["results"]
        ),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / "routing_pandalm_transfer.json"
    target.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
