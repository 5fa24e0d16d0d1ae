"""Readers for item files: JSONL, CSV and Parquet, each yielding ``(line, row)`` pairs.

``line`` is what a person sees when they open the file: the 1-based line of a JSONL or CSV
record (its first line, for a CSV record that spans several), the 1-based row of a Parquet file.
A row that cannot even be decoded is yielded as a ``RowDecodeError`` so that the importer reports
it with its line and goes on with the rest.
"""

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

FORMATS = ("jsonl", "csv", "parquet")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class UnreadableFile(ValueError):
    """The file as a whole cannot be read (a corrupt Parquet file); the message says why."""


@dataclass(frozen=True)
class RowDecodeError:
    message: str


Row = dict[str, Any] | RowDecodeError


def detect_format(name: str) -> str:
    suffix = Path(name).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise ValueError(
            f"cannot tell the format of {name!r} from its extension; "
            f"use one of {', '.join(sorted(_EXTENSIONS))} or name the format"
        ) from None


def count_rows(path: Path, fmt: str) -> int | None:
    """A cheap row count for progress bars (lines for text formats, metadata for Parquet)."""
    if fmt == "parquet":
        return _parquet_file(path).metadata.num_rows
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return max(lines - 1, 0) if fmt == "csv" else lines


def read_rows(source: Path | IO[bytes], fmt: str) -> Iterator[tuple[int, Row]]:
    if fmt == "jsonl":
        yield from _read_jsonl(source)
    elif fmt == "csv":
        yield from _read_csv(source)
    elif fmt == "parquet":
        yield from _read_parquet(source)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _open_binary(source: Path | IO[bytes]) -> IO[bytes]:
    return open(source, "rb") if isinstance(source, str | Path) else source


def _read_jsonl(source: Path | IO[bytes]) -> Iterator[tuple[int, Row]]:
    handle = _open_binary(source)
    try:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield line_no, RowDecodeError(f"not valid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield line_no, RowDecodeError("each line must be a JSON object")
                continue
            yield line_no, value
    finally:
        if handle is not source:
            handle.close()


def _read_csv(source: Path | IO[bytes]) -> Iterator[tuple[int, Row]]:
    handle = _open_binary(source)
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    try:
        reader = csv.DictReader(text)
        start = 2  # line 1 is the header
        try:
            for record in reader:
                row = {k: v for k, v in record.items() if k is not None and v not in ("", None)}
                if None in record:
                    yield start, RowDecodeError("more fields than the header names")
                else:
                    yield start, row
                start = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            yield start, RowDecodeError(f"unreadable CSV: {exc}")
    finally:
        text.detach()
        if handle is not source:
            handle.close()


def _parquet_file(source: Path | IO[bytes]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFile(f"not a readable Parquet file ({exc})") from None


def _read_parquet(source: Path | IO[bytes]) -> Iterator[tuple[int, Row]]:
    import pyarrow as pa

    row_no = 0
    batches = _parquet_file(source).iter_batches(batch_size=5000)
    while True:
        try:
            batch = next(batches, None)
            rows = batch.to_pylist() if batch is not None else None
        except (pa.ArrowException, OSError, ValueError) as exc:
            # A damaged page or text that is not UTF-8, past the rows read so far.
            raise UnreadableFile(
                f"not a readable Parquet file after row {row_no} ({exc})"
            ) from None
        if rows is None:
            return
        for row in rows:
            row_no += 1
            yield row_no, {k: v for k, v in row.items() if v is not None}
