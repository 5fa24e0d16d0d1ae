"""File formats of an export: JSONL, Parquet, CSV and a Hugging Face ``datasets`` folder.

Writers take rows (dicts in the schema's column order) a batch at a time and hold at most one
batch in memory. They write nothing that changes from run to run (no timestamps, no random
ids), so the same rows give byte-identical files.

- JSONL: one object per line, nested fields as JSON.
- Parquet: Arrow types (conversations as ``list<struct<role, content>>``), the format's
  ``json_columns`` as JSON text; row groups of ``ROW_GROUP`` rows.
- CSV: a header, then every non-scalar value as JSON text.
- ``hf``: the splits as one ``DatasetDict`` saved with ``save_to_disk`` (``datasets`` must be
  installed: ``pip install 'tandem[hf]'``); each split is first streamed to an Arrow IPC file,
  which ``datasets`` memory-maps, so memory stays flat here too.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tandem.errors import InvalidInput

FILE_FORMATS = ("jsonl", "parquet", "csv", "hf")
ROW_GROUP = 20_000


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class SplitWriter:
    """Rows of one split into one file."""

    def __init__(self, path: Path, schema: pa.Schema, json_columns: frozenset[str]) -> None:
        self.path = path
        self.schema = schema
        self.json_columns = json_columns
        self.rows = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class JsonlWriter(SplitWriter):
    def __init__(self, path: Path, schema: pa.Schema, json_columns: frozenset[str]) -> None:
        super().__init__(path, schema, json_columns)
        self.handle = open(path, "wb")  # noqa: SIM115 (closed in close())

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.handle.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        self.rows += len(rows)

    def close(self) -> None:
        self.handle.close()


class _ArrowBatches(SplitWriter):
    """Rows -> Arrow record batches of the schema (JSON columns as text)."""

    def batch(self, rows: list[dict[str, Any]]) -> pa.RecordBatch:
        if self.json_columns:
            rows = [
                {k: _json(v) if k in self.json_columns else v for k, v in row.items()}
                for row in rows
            ]
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)


class ParquetWriter(_ArrowBatches):
    def __init__(self, path: Path, schema: pa.Schema, json_columns: frozenset[str]) -> None:
        super().__init__(path, schema, json_columns)
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.pending: list[dict[str, Any]] = []

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.pending.extend(rows)
        self.rows += len(rows)
        if len(self.pending) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_batch(self.batch(self.pending), row_group_size=ROW_GROUP)
            self.pending = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


class ArrowStreamWriter(_ArrowBatches):
    """An Arrow IPC stream file (what ``datasets`` memory-maps)."""

    def __init__(self, path: Path, schema: pa.Schema, json_columns: frozenset[str]) -> None:
        super().__init__(path, schema, json_columns)
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.writer.write_batch(self.batch(rows))
            self.rows += len(rows)

    def close(self) -> None:
        self.writer.close()
        self.sink.close()


class CsvWriter(SplitWriter):
    def __init__(self, path: Path, schema: pa.Schema, json_columns: frozenset[str]) -> None:
        super().__init__(path, schema, json_columns)
        self.handle = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.writer(self.handle, lineterminator="\n")
        self.writer.writerow(schema.names)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.writerows([[_csv_value(v) for v in row.values()] for row in rows])
        self.rows += len(rows)

    def close(self) -> None:
        self.handle.close()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    return orjson.dumps(value).decode()


_WRITERS: dict[str, tuple[type[SplitWriter], str]] = {
    "jsonl": (JsonlWriter, "jsonl"),
    "parquet": (ParquetWriter, "parquet"),
    "csv": (CsvWriter, "csv"),
    "hf": (ArrowStreamWriter, "arrow"),
}


def check_file_format(file_format: str) -> None:
    if file_format not in FILE_FORMATS:
        raise InvalidInput(
            f"unknown file format {file_format!r}; choose one of {', '.join(FILE_FORMATS)}",
            details={"file_format": file_format},
        )
    if file_format == "hf":
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise InvalidInput(
                "the hf file format needs the datasets package: pip install 'tandem[hf]'",
                details={"file_format": file_format},
            ) from None


class ExportWriter:
    """One writer per split into ``folder``; ``close`` returns the files written."""

    def __init__(
        self,
        folder: Path,
        file_format: str,
        splits: Iterable[str],
        schema: pa.Schema,
        json_columns: frozenset[str],
    ) -> None:
        check_file_format(file_format)
        self.folder = folder
        self.file_format = file_format
        self.schema = schema
        cls, ext = _WRITERS[file_format]
        staging = folder / ".staging" if file_format == "hf" else folder
        staging.mkdir(parents=True, exist_ok=True)
        self.writers: dict[str, SplitWriter] = {
            split: cls(staging / f"{split}.{ext}", schema, json_columns) for split in splits
        }

    def write(self, split: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.writers[split].write(rows)

    def rows(self) -> dict[str, int]:
        return {split: writer.rows for split, writer in self.writers.items()}

    def close(self) -> list[Path]:
        for writer in self.writers.values():
            writer.close()
        if self.file_format != "hf":
            return [writer.path for writer in self.writers.values()]
        return self._save_hf()

    def _save_hf(self) -> list[Path]:
        from datasets import Dataset, DatasetDict

        splits = {}
        for split, writer in self.writers.items():
            dataset = Dataset.from_file(str(writer.path))
            # The fingerprint goes into state.json: make it the data's, not a random one.
            dataset._fingerprint = file_sha256(writer.path)[:16]
            splits[split] = dataset
        DatasetDict(splits).save_to_disk(str(self.folder))
        del splits
        shutil.rmtree(self.folder / ".staging")
        return sorted(
            p for p in self.folder.rglob("*") if p.is_file() and p.name != "manifest.json"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
