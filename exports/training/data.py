"""A snapshot folder as the trainers read it: ``manifest.json`` and one data file per split.

The folder may come from a snapshot (``EXPORTS_ROOT/<snapshot.folder>``) or from
``manage.py export --out DIR``: both are written by ``exports.builder``. Rows are read as they
were exported (JSONL, Parquet, CSV or a Hugging Face ``save_to_disk`` folder); only the columns a
trainer needs are kept, and nothing is reshaped: TRL's trainers take ``prompt``/``chosen``/
``rejected`` (reward, DPO) and ``prompt``/``completion``/``label`` (KTO) as written.

Needs ``datasets`` (the ``train`` extra); imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from datasets import Dataset

MANIFEST = "manifest.json"

# The snapshot formats each kind of job trains on, and the columns it reads from them.
KIND_FORMATS: dict[str, tuple[str, ...]] = {
    "reward": ("reward", "preference", "listwise-pairs"),
    "dpo": ("preference", "reward", "listwise-pairs"),
    "kto": ("kto",),
}
PAIR_COLUMNS = ("prompt", "chosen", "rejected")
KTO_COLUMNS = ("prompt", "completion", "label")
OPTIONAL_COLUMNS = ("margin", "provenance")
TRAIN, TEST = "train", "test"


class SnapshotError(ValueError):
    """The folder cannot be trained on as asked; the message says why, for people."""


@dataclass
class SnapshotData:
    manifest: dict[str, Any]
    splits: dict[str, Dataset] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return str(self.manifest.get("format", ""))


def manifest_read(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"no {MANIFEST} in {folder}: not a snapshot folder")
    try:
        manifest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not manifest.get("format"):
        raise SnapshotError(f"{MANIFEST} names no format")
    return manifest


def columns_for(kind: str) -> tuple[str, ...]:
    return KTO_COLUMNS if kind == "kto" else PAIR_COLUMNS


def snapshot_check(manifest: dict[str, Any], kind: str) -> None:
    """The snapshot's format must be one the kind trains on."""
    fmt = manifest.get("format")
    allowed = KIND_FORMATS[kind]
    if fmt not in allowed:
        raise SnapshotError(
            f"a {kind} job trains on a {' or '.join(allowed)} snapshot; this one is {fmt}"
        )


def snapshot_read(folder: Path, kind: str) -> SnapshotData:
    """Check the folder against the kind and load its splits (train required and non-empty)."""
    folder = Path(folder)
    manifest = manifest_read(folder)
    snapshot_check(manifest, kind)
    wanted = [*columns_for(kind), *OPTIONAL_COLUMNS]
    # An empty split (a file with no rows) is as good as none.
    splits = {n: d for n, d in _load_splits(folder, manifest, wanted).items() if len(d)}
    for name, dataset in splits.items():
        missing = [c for c in columns_for(kind) if c not in dataset.column_names]
        if missing:
            raise SnapshotError(f"the {name} split has no {', '.join(missing)} column")
    if TRAIN not in splits or len(splits[TRAIN]) == 0:
        raise SnapshotError(
            "the snapshot's train split is empty: nothing to train on "
            f"(rows per split: {manifest.get('rows') or {}})"
        )
    return SnapshotData(manifest=manifest, splits=splits)


def _load_splits(folder: Path, manifest: dict[str, Any], wanted: list[str]) -> dict[str, Dataset]:
    file_format = manifest.get("file_format") or _guess_file_format(folder)
    names = list(manifest.get("splits") or manifest.get("rows") or [TRAIN, TEST])
    if file_format == "hf":
        return {n: d for n in names if (d := _read_hf_split(folder / n, wanted)) is not None}
    readers = {"jsonl": _read_jsonl, "parquet": _read_parquet, "csv": _read_csv}
    if file_format not in readers:
        raise SnapshotError(f"unknown file format {file_format!r}")
    out = {}
    for name in names:
        path = folder / f"{name}.{file_format}"
        if path.is_file():
            out[name] = readers[file_format](path, wanted)
    return out


def _read_hf_split(path: Path, wanted: list[str]) -> Dataset | None:
    """One split of a ``save_to_disk`` folder. Read split by split: ``datasets`` cannot load a
    split saved with no rows (0 shards), which is as good as no split here."""
    from datasets import Dataset

    if not (path / "state.json").is_file():
        return None
    try:
        dataset = Dataset.load_from_disk(str(path))
    except IndexError:  # an empty split: no shards to concatenate
        return None
    except (FileNotFoundError, ValueError) as exc:
        raise SnapshotError(f"cannot read the Hugging Face folder {path.name}: {exc}") from None
    return dataset.select_columns([c for c in wanted if c in dataset.column_names])


def _guess_file_format(folder: Path) -> str:
    if (folder / "dataset_dict.json").is_file():
        return "hf"
    for ext in ("parquet", "jsonl", "csv"):
        if any(folder.glob(f"*.{ext}")):
            return ext
    raise SnapshotError(f"no data files in {folder}")


def _dataset(rows: dict[str, list[Any]]) -> Dataset:
    from datasets import Dataset

    return Dataset.from_dict(rows)


def _read_jsonl(path: Path, wanted: list[str]) -> Dataset:
    columns: dict[str, list[Any]] = {}
    present: list[str] | None = None
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = orjson.loads(line)
            if present is None:
                present = [c for c in wanted if c in row]
                columns = {c: [] for c in present}
            for c in present:
                columns[c].append(row.get(c))
    return _dataset(columns)


def _read_parquet(path: Path, wanted: list[str]) -> Dataset:
    import pyarrow.parquet as pq
    from datasets import Dataset

    names = pq.read_schema(path).names
    return Dataset(pq.read_table(path, columns=[c for c in wanted if c in names]))


def _read_csv(path: Path, wanted: list[str]) -> Dataset:
    """CSV holds non-scalar values (conversations) as JSON text, booleans as true/false."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        present = [c for c in wanted if c in (reader.fieldnames or [])]
        columns: dict[str, list[Any]] = {c: [] for c in present}
        for row in reader:
            for c in present:
                columns[c].append(_csv_value(c, row[c]))
    return _dataset(columns)


def _csv_value(column: str, text: str) -> Any:
    if column == "label":
        return text == "true"
    if column == "margin":
        return float(text) if text else 0.0
    if text.startswith("[") and column in ("prompt", "chosen", "rejected", "completion"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    return text or None
