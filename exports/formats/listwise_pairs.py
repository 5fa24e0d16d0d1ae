"""Listwise rankings to preference pairs: ``prompt`` / ``chosen`` / ``rejected``.

``pairs="all"``: every pair of candidates in different tiers of the final ranking (a nested
list in a ranking is a tie: no pair inside it); ``pairs="best"``: the best tier against every
candidate below it. Pairs come in ranking order, so files are stable.
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

PAIR_MODES = ("all", "best")


def tiers(ranking: Any) -> list[list[str]]:
    """A ranking as tiers of letters, best first."""
    return [list(entry) if isinstance(entry, list) else [entry] for entry in ranking or []]


def ranked_pairs(ranking: Any, mode: str) -> list[tuple[str, str, int, int]]:
    """(better, worse, better's tier, worse's tier), 1-based tiers."""
    levels = tiers(ranking)
    out = []
    for i, upper in enumerate(levels):
        if mode == "best" and i > 0:
            break
        for j in range(i + 1, len(levels)):
            for better in upper:
                for worse in levels[j]:
                    out.append((better, worse, i + 1, j + 1))
    return out


class ListwisePairsFormat(ExportFormat):
    name = "listwise-pairs"
    title = "Listwise rankings as preference pairs"
    task_types = (TaskType.LISTWISE,)

    def fields(self, options: FormatOptions) -> list[tuple[str, pa.DataType]]:
        kind = text_type(options)
        return [
            ("prompt", kind),
            ("chosen", kind),
            ("rejected", kind),
            ("chosen_rank", pa.int64()),
            ("rejected_rank", pa.int64()),
            ("chosen_candidate", pa.string()),
            ("rejected_candidate", pa.string()),
            *COMMON_FIELDS,
        ]

    def rows(self, item: ExportItem, options: FormatOptions) -> Iterator[dict[str, Any]]:
        if not isinstance(item.choice, list):
            return
        prompt = prompt_value(item, options)
        shared = common(item)
        for better, worse, better_rank, worse_rank in ranked_pairs(item.choice, options.pairs):
            yield {
                "prompt": prompt,
                "chosen": completion_value(item.candidate(better), options),
                "rejected": completion_value(item.candidate(worse), options),
                "chosen_rank": better_rank,
                "rejected_rank": worse_rank,
                "chosen_candidate": better,
                "rejected_candidate": worse,
                **shared,
            }

    def rows_per_item(self, choice: Any, n_candidates: int, options: FormatOptions) -> int:
        return len(ranked_pairs(choice, options.pairs)) if isinstance(choice, list) else 0
