"""A random ``fraction`` of the items to people (seeded, so a run can be repeated)."""

from typing import Any

import numpy as np
import pandas as pd

from routing.router.policies.base import Policy
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
        rng = np.random.default_rng(self.seed)
        return pd.Series(rng.random(len(table)), index=table.index)

    def wants_human(self, scores: pd.Series) -> pd.Series:
        # The fraction is of all items; the budget may cut it further.
        n = round(self.fraction * len(scores))
        top = scores.sort_values(ascending=False, kind="stable").index[:n]
        return pd.Series(scores.index.isin(top), index=scores.index)
