"""Reward-model pairs: ``prompt`` / ``chosen`` / ``rejected`` with a ``margin`` column.

``margin`` is the preference's vote margin ((votes for the choice - votes for the runner-up) /
labels counted, 0..1), what TRL's ``RewardTrainer`` subtracts inside its loss when the column is
there; ``strength`` is the mean strength the labellers gave (the project's scale; null if none).
"""

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from .base import COMMON_FIELDS, ExportItem, FormatOptions, text_type
from .preference import DECISIVE, PreferenceFormat


class RewardFormat(PreferenceFormat):
    name = "reward"
    title = "Reward-model pairs with a margin"

    def fields(self, options: FormatOptions) -> list[tuple[str, pa.DataType]]:
        kind = text_type(options)
        return [
            ("prompt", kind),
            ("chosen", kind),
            ("rejected", kind),
            ("margin", pa.float64()),
            ("strength", pa.float64()),
            *COMMON_FIELDS,
        ]

    def rows(self, item: ExportItem, options: FormatOptions) -> Iterator[dict[str, Any]]:
        for row in super().rows(item, options):
            pref = item.preference or {}
            margin = pref.get("margin")
            yield {
                "prompt": row["prompt"],
                "chosen": row["chosen"],
                "rejected": row["rejected"],
                "margin": 0.0 if margin is None else float(margin),
                "strength": pref.get("strength"),
                **{k: row[k] for k, _ in COMMON_FIELDS},
            }

    def rows_per_item(self, choice: Any, n_candidates: int, options: FormatOptions) -> int:
        return int(choice in DECISIVE)
