"""TRL unpaired / KTO: ``prompt`` / ``completion`` / ``label`` (true: desirable).

From thumbs items: the thumb. From pairwise items: the chosen candidate true and the other false;
"both bad" gives both candidates false; ties and unresolved items give nothing.
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


def _labels(choice: Any) -> list[tuple[int, bool]]:
    """(candidate index, desirable) pairs for an item's final choice."""
    if choice in ("up", "down"):
        return [(0, choice == "up")]
    if choice == "A":
        return [(0, True), (1, False)]
    if choice == "B":
        return [(0, False), (1, True)]
    if choice == "both_bad":
        return [(0, False), (1, False)]
    return []


class KTOFormat(ExportFormat):
    name = "kto"
    title = "TRL unpaired / KTO (prompt / completion / label)"
    task_types = (TaskType.PAIRWISE, TaskType.THUMBS)

    def fields(self, options: FormatOptions) -> list[tuple[str, pa.DataType]]:
        kind = text_type(options)
        return [
            ("prompt", kind),
            ("completion", kind),
            ("label", pa.bool_()),
            ("candidate", pa.string()),
            *COMMON_FIELDS,
        ]

    def rows(self, item: ExportItem, options: FormatOptions) -> Iterator[dict[str, Any]]:
        for index, desirable in _labels(item.choice):
            yield {
                "prompt": prompt_value(item, options),
                "completion": completion_value(item.candidates[index], options),
                "label": desirable,
                "candidate": chr(ord("A") + index),
                **common(item),
            }

    def rows_per_item(self, choice: Any, n_candidates: int, options: FormatOptions) -> int:
        return len(_labels(choice))
