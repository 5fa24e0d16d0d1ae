"""A random ``fraction`` of the items to people (seeded, so a run can be repeated).

The draw is a stable hash of each item's key with ``seed``: the same items are drawn whatever the
order of the table, and another seed draws others."""

from typing import Any

import numpy as np
import pandas as pd

from routing.router.policies.base import Policy, ranked_order, stable_hash
from tandem.errors import InvalidInput


class RandomPolicy(Policy):
    name = "random"
    score_meaning = "random draw"

    def __init__(self, *, fraction: float = 1.0, seed: int = 0, **extra: Any) -> None:
        super().__init__(**extra)
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise InvalidInput("random: fraction must be a number between 0 and 1")
        if not 0.0 <= float(fraction) <= 1.0:
            raise InvalidInput(f"random: fraction must be between 0 and 1; got {fraction}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInput("random: seed must be a whole number")
        self.fraction, self.seed = float(fraction), seed
        self.params = {"fraction": self.fraction, "seed": seed}

    def scores(self, table: pd.DataFrame) -> pd.Series:
        # A uniform draw in [0, 1) from the item's hash (53 bits, as a float holds them).
        draws = (stable_hash(table.index, self.seed) >> np.uint64(11)).astype(float) / 2.0**53
        return pd.Series(draws, index=table.index)

    def secondary(self, table: pd.DataFrame) -> list[pd.Series]:
        return []

    def wants_human(self, scores: pd.Series) -> pd.Series:
        # The fraction is of all items; the budget may cut it further.
        n = round(self.fraction * len(scores))
        top = ranked_order(scores, seed=self.seed)[:n]
        wanted = np.zeros(len(scores), dtype=bool)
        wanted[top] = True
        return pd.Series(wanted, index=scores.index)
