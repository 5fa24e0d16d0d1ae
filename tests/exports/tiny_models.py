"""A tiny randomly initialised GPT-2 and a tokenizer trained here with ``tokenizers``, saved to a
folder the training jobs load as their base model (seconds on a CPU, nothing downloaded); and
snapshot folders written the way the exports builder writes them."""

from pathlib import Path
from typing import Any

import orjson

_TEXT = (
    "the answer is good bad clear short long wrong right concise helpful rude polite yes no "
    "summarise rewrite explain list translate a an of to in on for with please thanks"
)
WORDS = _TEXT.split(" ")


def tiny_model(folder: Path) -> Path:
    """A 2-layer GPT-2 (causal LM; also loads as a sequence classifier) with its tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"])
    raw.train_from_iterator([" ".join(WORDS)] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    tokenizer.save_pretrained(folder)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    import torch

    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def pair_rows(n: int, *, provenance: str = "human") -> list[dict[str, Any]]:
    """Pairs where the chosen answer always says "good" and the rejected one "bad"."""
    rows = []
    for i in range(n):
        prov = provenance if provenance != "mixed" else ("human", "judge")[i % 2]
        rows.append(
            {
                "prompt": f"please explain {WORDS[i % len(WORDS)]} ",
                "chosen": "the answer is good and clear",
                "rejected": "the answer is bad and rude",
                "margin": 1.0,
                "strength": None,
                "external_id": f"x{i}",
                "provenance": prov,
                "agreement": 1.0,
                "method": "majority",
                "source_dataset": None,
                "license": None,
                "metadata": {"i": i},
            }
        )
    return rows


def kto_rows(n: int, *, provenance: str = "mixed") -> list[dict[str, Any]]:
    rows = []
    for pair in pair_rows(n, provenance=provenance):
        common = {k: pair[k] for k in ("external_id", "provenance", "agreement", "metadata")}
        rows.append(
            {"prompt": pair["prompt"], "completion": pair["chosen"], "label": True, **common}
        )
        rows.append(
            {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False, **common}
        )
    return rows


def snapshot_folder(
    folder: Path, fmt: str, splits: dict[str, list[dict[str, Any]]], file_format: str = "jsonl"
) -> Path:
    """``manifest.json`` and one file per split, as ``exports.builder`` lays them out."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        if file_format == "jsonl":
            (folder / f"{name}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(
                [{**r, "metadata": orjson.dumps(r.get("metadata")).decode()} for r in rows]
            )
            pq.write_table(table, folder / f"{name}.parquet")
    manifest = {
        "format": fmt,
        "file_format": file_format,
        "splits": {name: 1.0 / len(splits) for name in splits},
        "rows": {name: len(rows) for name, rows in splits.items()},
    }
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest))
    return folder
