"""The one interface every export format implements, and what formats are given.

A format turns one ``ExportItem`` (an item, its candidates, its preference and, for the raw
format, its labels) into zero or more rows: plain dicts whose keys are the format's columns, in
``schema`` order. Writers (``exports/writers.py``) turn rows into JSONL, Parquet, CSV or a
Hugging Face folder; a format never knows which.

Every row carries where its label came from and how much to trust it: ``provenance``,
``agreement``, ``method``, and the item's ``external_id``, ``source_dataset``, ``license`` and
``metadata`` (``COMMON_FIELDS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from annotation.schema import TaskType

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
JSON = pa.string()  # JSON text outside JSONL (a nested object in JSONL)

COMMON_FIELDS: list[tuple[str, pa.DataType]] = [
    ("external_id", pa.string()),
    ("provenance", pa.string()),
    ("agreement", pa.float64()),
    ("method", pa.string()),
    ("source_dataset", pa.string()),
    ("license", pa.string()),
    ("metadata", JSON),
]
COMMON_JSON = frozenset({"metadata"})


@dataclass(frozen=True)
class FormatOptions:
    """How a format shapes its rows.

    ``conversational``: prompts and completions as lists of ``{role, content}`` messages (TRL's
    conversational format) instead of text. ``pairs``: listwise to pairs, ``all`` (every pair of
    candidates in different tiers) or ``best`` (the best candidate against each of the rest).
    """

    conversational: bool = False
    pairs: str = "all"


@dataclass
class ExportItem:
    """What a format sees of one item. Letters name candidates in the item's own order."""

    id: int
    external_id: str
    prompt: str
    messages: list[dict[str, str]] | None
    metadata: dict[str, Any]
    gold: Any
    candidates: list[dict[str, Any]]  # {text, model, metadata}
    preference: dict[str, Any] | None  # the Preference's fields; None: never computed
    labels: list[dict[str, Any]] = field(default_factory=list)  # raw format only

    @property
    def choice(self) -> Any:
        return self.preference["choice"] if self.preference else None

    def candidate(self, letter: str) -> dict[str, Any]:
        return self.candidates[ord(letter) - ord("A")]


class ExportFormat:
    """One export format. Subclasses set ``name``, ``task_types`` and implement ``fields`` and
    ``rows``; ``json_columns`` names the columns holding nested JSON (text outside JSONL)."""

    name: ClassVar[str]
    title: ClassVar[str]
    task_types: ClassVar[tuple[str, ...]] = tuple(TaskType.values)
    needs_labels: ClassVar[bool] = False
    json_columns: ClassVar[frozenset[str]] = COMMON_JSON

    def fields(self, options: FormatOptions) -> list[tuple[str, pa.DataType]]:
        raise NotImplementedError

    def rows(self, item: ExportItem, options: FormatOptions) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def schema(self, options: FormatOptions) -> pa.Schema:
        return pa.schema(self.fields(options))

    def rows_per_item(self, choice: Any, n_candidates: int, options: FormatOptions) -> int:
        """How many rows an item with this final choice gives (the live preview's count)."""
        raise NotImplementedError


def common(item: ExportItem) -> dict[str, Any]:
    """The columns every row ends with."""
    pref = item.preference or {}
    metadata = item.metadata or {}
    return {
        "external_id": item.external_id,
        "provenance": pref.get("provenance") or None,
        "agreement": pref.get("agreement"),
        "method": pref.get("method"),
        "source_dataset": _text(metadata.get("dataset", metadata.get("source"))),
        "license": _text(metadata.get("license")),
        "metadata": metadata,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def prompt_text(item: ExportItem) -> str:
    """The prompt as text; a conversation as its turns' contents, one paragraph each."""
    if item.messages:
        return "\n\n".join(m["content"] for m in item.messages)
    return item.prompt


def prompt_messages(item: ExportItem) -> list[dict[str, str]]:
    if item.messages:
        return [{"role": m["role"], "content": m["content"]} for m in item.messages]
    return [{"role": "user", "content": item.prompt}]


def completion_messages(candidate: dict[str, Any]) -> list[dict[str, str]]:
    """A candidate as the assistant turn(s) that answer the prompt."""
    turns = (candidate.get("metadata") or {}).get("messages")
    if isinstance(turns, list) and turns:
        return [{"role": t["role"], "content": t["content"]} for t in turns]
    return [{"role": "assistant", "content": candidate["text"]}]


def prompt_value(item: ExportItem, options: FormatOptions) -> Any:
    return prompt_messages(item) if options.conversational else prompt_text(item)


def completion_value(candidate: dict[str, Any], options: FormatOptions) -> Any:
    return completion_messages(candidate) if options.conversational else candidate["text"]


def text_type(options: FormatOptions) -> pa.DataType:
    return MESSAGES if options.conversational else pa.string()
