"""TRL preference: ``prompt`` / ``chosen`` / ``rejected`` (DPO, ORPO, reward modelling).

Standard (text) or conversational (lists of messages). One row per pairwise item whose final
label is ``A`` or ``B``; ties, "both bad" and unresolved items give no pair.
"""

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from annotation.schema import TaskType

from .base import (
    COMMON_FIELDS,
    ExportFormat,
    ExportItem,
    FormatOptions,
    common,
    completion_value,
    prompt_value,
    text_type,
)

DECISIVE = {"A": "B", "B": "A"}


class PreferenceFormat(ExportFormat):
    name = "preference"
    title = "TRL preference (prompt / chosen / rejected)"
    task_types = (TaskType.PAIRWISE,)

    def fields(self, options: FormatOptions) -> list[tuple[str, pa.DataType]]:
        kind = text_type(options)
        return [("prompt", kind), ("chosen", kind), ("rejected", kind), *COMMON_FIELDS]

    def rows(self, item: ExportItem, options: FormatOptions) -> Iterator[dict[str, Any]]:
        choice = item.choice
        if choice not in DECISIVE:
            return
        yield {
            "prompt": prompt_value(item, options),
            "chosen": completion_value(item.candidate(choice), options),
            "rejected": completion_value(item.candidate(DECISIVE[choice]), options),
            **common(item),
        }

    def rows_per_item(self, choice: Any, n_candidates: int, options: FormatOptions) -> int:
        return int(choice in DECISIVE)
