"""The interface every routing policy shares.

A policy sees a feature table (one row per item, see ``router.features``) and a human budget (how
many items may still go to people) and returns a ``RoutePlan``: per item a target (``human``,
``judge`` or ``both``), a score (higher = a human label is worth more) and a reason in plain words.
The simulation and the online router call the same ``route``.
"""

from collections.abc import Sequence
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


def stable_hash(keys: Any, seed: int = 0) -> np.ndarray:
    """A 64-bit hash per item key, the same in every run and every row order; ``seed`` gives
    another, equally stable, order. The last tie-breaker of every ranking."""
    texts = pd.Series(pd.Index(keys).astype(str), dtype=object)
    key = f"{seed % 10**16:016d}"  # the seed as hash_pandas_object's 16-character key
    return pd.util.hash_pandas_object(texts, index=False, hash_key=key).to_numpy()


def ranked_order(
    scores: pd.Series, secondary: Sequence[pd.Series] = (), *, seed: int = 0
) -> np.ndarray:
    """Positions of ``scores`` from the highest score down: ties go to the higher secondary
    signals in turn, then to a stable hash of the item key with ``seed``; never table position."""
    keys: list[np.ndarray] = [stable_hash(scores.index, seed)]
    for signal in reversed(list(secondary)):
        values = signal.reindex(scores.index).to_numpy(dtype=float)
        keys.append(-np.nan_to_num(values, nan=-np.inf))
    keys.append(-np.nan_to_num(scores.to_numpy(dtype=float), nan=-np.inf))
    return np.lexsort(keys)


class Policy:
    """Subclasses set ``name`` and ``version``, validate their params in ``__init__`` and
    implement ``scores``; ``route`` sends the highest scores to people within the budget."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    # Plain-words description of a high score, used in decision reasons.
    score_meaning: ClassVar[str] = "score"
    # The seed of the last tie-breaker (a hash of the item); policies with a seed param set it.
    seed: int = 0

    def __init__(self, **params: Any) -> None:
        if params:
            raise InvalidInput(
                f"policy {self.name!r} takes no parameters; got {', '.join(sorted(params))}"
            )
        self.params: dict[str, Any] = {}

    def scores(self, table: pd.DataFrame) -> pd.Series:
        raise NotImplementedError

    def secondary(self, table: pd.DataFrame) -> list[pd.Series]:
        """Signals that break ties of the score, strongest first (default: judge uncertainty)."""
        from routing.router.policies.judge_uncertainty import judge_uncertainty_scores

        return [judge_uncertainty_scores(table)]

    def wants_human(self, scores: pd.Series) -> pd.Series:
        """Which items this policy would send to people if the budget allowed (default: all)."""
        return pd.Series(True, index=scores.index)

    def route(self, table: pd.DataFrame, budget: int, *, metadata: pd.DataFrame | None = None):
        scores = self.scores(table) if metadata is None else self._scores_with(table, metadata)
        return rank_within_budget(
            scores,
            self.wants_human(scores),
            budget,
            self.meaning(),
            secondary=self.secondary(table),
            seed=self.seed,
        )

    def meaning(self) -> str:
        return self.score_meaning

    def _scores_with(self, table: pd.DataFrame, metadata: pd.DataFrame) -> pd.Series:
        return self.scores(table)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "params": self.params}


def rank_within_budget(
    scores: pd.Series,
    wanted: pd.Series,
    budget: int,
    meaning: str,
    *,
    secondary: Sequence[pd.Series] = (),
    seed: int = 0,
) -> RoutePlan:
    """Highest scores first (ties: ``secondary``, then a stable hash; see ``ranked_order``) to
    people, at most ``budget`` of them."""
    budget = max(int(budget), 0)
    n = len(scores)
    order = ranked_order(scores, secondary, seed=seed)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    want = wanted.reindex(scores.index).fillna(False).to_numpy(dtype=bool)
    wanted_in_order = order[want[order]]
    human = np.zeros(n, dtype=bool)
    human[wanted_in_order[:budget]] = True
    values = scores.to_numpy(dtype=float)
    targets = np.where(human, HUMAN, JUDGE)
    reasons = [
        f"{meaning} {v:.3g} ranks {r} of {n}; within budget"
        if h
        else (
            f"{meaning} {v:.3g} ranks {r}; the human budget is spent"
            if w
            else f"{meaning} {v:.3g}: the judge's label is trusted"
        )
        for v, r, h, w in zip(values, rank.tolist(), human.tolist(), want.tolist(), strict=True)
    ]
    frame = pd.DataFrame(
        {"target": targets, "score": values, "reason": reasons}, index=scores.index
    )
    return RoutePlan(frame)
