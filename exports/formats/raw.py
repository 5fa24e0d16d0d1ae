"""Raw multi-annotator rows in Tandem's row format (DESIGN.md), re-importable as they are.

One row per item: ``external_id``, ``prompt`` (or ``messages``), ``candidates`` (text, model,
metadata), ``metadata``, ``gold`` and ``labels``: every current label (a label that a correction
superseded is replaced by the correction) with its source, annotator or judge, the order shown,
the answer (choice + strength, ranking or thumb), aspects, rationale, time spent, confidence, the
judge's raw output and the label's own metadata (as extra keys, which the importer keeps as the
label's metadata). ``preference`` holds the item's final label, provenance, agreement and
method (one key, not flat columns: the importer keeps unknown keys as item metadata, so a
re-import adds only ``metadata.preference``). The item's source data set and license are in its
``metadata`` as the import gave them.

Outside JSONL the nested fields are JSON text, as the importer reads them; ``gold`` is text for
pairwise and thumbs items and JSON text for rankings.
"""

from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa

from .base import JSON, ExportFormat, ExportItem, FormatOptions

PREFERENCE_KEYS = (
    "choice",
    "provenance",
    "agreement",
    "method",
    "margin",
    "strength",
    "n_human",
    "n_judge",
    "decided_by",
)


class RawFormat(ExportFormat):
    name = "raw"
    title = "Raw multi-annotator rows (Tandem's row format, re-importable)"
    needs_labels = True
    json_columns = frozenset({"messages", "candidates", "metadata", "labels", "preference"})

    def fields(self, options: FormatOptions) -> list[tuple[str, pa.DataType]]:
        return [
            ("external_id", pa.string()),
            ("prompt", pa.string()),
            ("messages", JSON),
            ("candidates", JSON),
            ("metadata", JSON),
            ("gold", pa.string()),
            ("labels", JSON),
            ("preference", JSON),
        ]

    def rows(self, item: ExportItem, options: FormatOptions) -> Iterator[dict[str, Any]]:
        pref = item.preference or {}
        metadata = item.metadata or {}
        gold = item.gold
        if gold is not None and not isinstance(gold, str):
            gold = orjson.dumps(gold).decode()
        yield {
            "external_id": item.external_id,
            "prompt": None if item.messages else item.prompt,
            "messages": item.messages or None,
            "candidates": item.candidates,
            "metadata": metadata,
            "gold": gold,
            "labels": item.labels,
            "preference": {k: pref.get(k) for k in PREFERENCE_KEYS} if pref else None,
        }

    def rows_per_item(self, choice: Any, n_candidates: int, options: FormatOptions) -> int:
        return 1
