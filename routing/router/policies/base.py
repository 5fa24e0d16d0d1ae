"""The interface every routing policy shares.

A policy sees a feature table (one row per item, see ``router.features``) and a human budget (how
many items may still go to people) and returns a ``RoutePlan``: per item a target (``human``,
``judge`` or ``both``), a score (higher = a human label is worth more) and a reason in plain words.
The simulation and the online router call the same ``route``.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from annotation.routes import TARGETS, Route
from tandem.errors import InvalidInput

# The names are annotation's routes (annotation.routes), as plain strings for the frames.
HUMAN, JUDGE, BOTH = Route.HUMAN.value, Route.JUDGE.value, Route.BOTH.value


@dataclass
class RoutePlan:
    """``frame`` has columns target, score, reason, indexed like the feature table."""

    frame: pd.DataFrame

    @property
    def human_keys(self) -> list[Any]:
        return list(self.frame.index[self.frame["target"].isin((HUMAN, BOTH))])

    def counts(self) -> dict[str, int]:
        counts = self.frame["target"].value_counts()
        return {target: int(counts.get(target, 0)) for target in TARGETS}


class Policy:
    """Subclasses set ``name`` and ``version``, validate their params in ``__init__`` and
    implement ``scores``; ``route`` sends the highest scores to people within the budget."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    # Plain-words description of a high score, used in decision reasons.
    score_meaning: ClassVar[str] = "score"

    def __init__(self, **params: Any) -> None:
        if params:
            raise InvalidInput(
                f"policy {self.name!r} takes no parameters; got {', '.join(sorted(params))}"
            )
        self.params: dict[str, Any] = {}

    def scores(self, table: pd.DataFrame) -> pd.Series:
        raise NotImplementedError

    def wants_human(self, scores: pd.Series) -> pd.Series:
        """Which items this policy would send to people if the budget allowed (default: all)."""
        return pd.Series(True, index=scores.index)

    def route(self, table: pd.DataFrame, budget: int, *, metadata: pd.DataFrame | None = None):
        scores = self.scores(table) if metadata is None else self._scores_with(table, metadata)
        return rank_within_budget(scores, self.wants_human(scores), budget, self.score_meaning)

    def _scores_with(self, table: pd.DataFrame, metadata: pd.DataFrame) -> pd.Series:
        return self.scores(table)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "params": self.params}


def rank_within_budget(
    scores: pd.Series, wanted: pd.Series, budget: int, meaning: str
) -> RoutePlan:
    """Highest scores first (ties keep the table's order) to people, at most ``budget`` of them."""
    budget = max(int(budget), 0)
    order = np.argsort(-scores.to_numpy(dtype=float), kind="stable")
    ranked = scores.index[order]
    chosen: set[Any] = set()
    for key in ranked:
        if len(chosen) >= budget:
            break
        if wanted[key]:
            chosen.add(key)
    targets, reasons = [], []
    rank = {key: i + 1 for i, key in enumerate(ranked)}
    for key in scores.index:
        score = float(scores[key])
        if key in chosen:
            targets.append(HUMAN)
            reasons.append(
                f"{meaning} {score:.3g} ranks {rank[key]} of {len(scores)}; within budget"
            )
        elif not wanted[key]:
            targets.append(JUDGE)
            reasons.append(f"{meaning} {score:.3g}: the judge's label is trusted")
        else:
            targets.append(JUDGE)
            reasons.append(f"{meaning} {score:.3g} ranks {rank[key]}; the human budget is spent")
    frame = pd.DataFrame(
        {"target": targets, "score": scores.astype(float), "reason": reasons}, index=scores.index
    )
    return RoutePlan(frame)
