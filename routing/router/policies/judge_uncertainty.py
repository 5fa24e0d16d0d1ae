"""Judge first; people get the items where the judge is least sure, most uncertain first.

Uncertainty adds up, in this order of weight:

- the primary judge gave no usable preference: unparseable, a tie, or its two presentation orders
  disagree (3);
- the other judges disagree with it: 1 times the share of them whose verdict differs;
- its confidence is below ``low_confidence``: up to 1 (how far below);
- position risk: a verdict from one presentation order that picked the candidate shown first,
  the judge bias that swapping the order would have exposed (0.5).

With ``only_uncertain`` the policy sends nothing with zero uncertainty to people, even when the
budget would allow it; by default the rest of the budget goes to the next highest scores.
"""

from typing import Any

import numpy as np
import pandas as pd

from routing.router.policies.base import Policy
from tandem.errors import InvalidInput

INCONCLUSIVE, DISAGREE, CONFIDENCE, POSITION = 3.0, 1.0, 1.0, 0.5


class JudgeUncertaintyPolicy(Policy):
    name = "judge_uncertainty"
    version = "1"
    score_meaning = "judge uncertainty"

    def __init__(
        self, *, low_confidence: float | None = None, only_uncertain: bool = False, **extra: Any
    ) -> None:
        super().__init__(**extra)
        if low_confidence is None:
            from routing.router.config import RouterSettings

            low_confidence = RouterSettings.load().low_confidence
        if isinstance(low_confidence, bool) or not isinstance(low_confidence, int | float):
            raise InvalidInput("judge_uncertainty: low_confidence must be a number")
        if not 0.0 <= low_confidence <= 1.0:
            raise InvalidInput("judge_uncertainty: low_confidence must be between 0 and 1")
        if not isinstance(only_uncertain, bool):
            raise InvalidInput("judge_uncertainty: only_uncertain must be true or false")
        self.low_confidence = float(low_confidence)
        self.only_uncertain = only_uncertain
        self.params = {"low_confidence": self.low_confidence, "only_uncertain": only_uncertain}

    def scores(self, table: pd.DataFrame) -> pd.Series:
        return judge_uncertainty_scores(table, low_confidence=self.low_confidence)

    def secondary(self, table: pd.DataFrame) -> list[pd.Series]:
        # Among equal uncertainty, the less confident verdict first (then the item hash).
        if "primary_confidence" not in table:
            return []
        return [-table["primary_confidence"].astype(float)]

    def wants_human(self, scores: pd.Series) -> pd.Series:
        if self.only_uncertain:
            return scores > POSITION
        return pd.Series(True, index=scores.index)


def judge_uncertainty_scores(
    table: pd.DataFrame, *, low_confidence: float | None = None
) -> pd.Series:
    """The uncertainty score of the module docstring, per row of a feature table."""
    if low_confidence is None:
        from routing.router.config import RouterSettings

        low_confidence = RouterSettings.load().low_confidence

    def col(name: str) -> pd.Series:
        if name not in table:
            return pd.Series(0.0, index=table.index)
        return table[name].astype(float).fillna(0.0)

    inconclusive = (
        (col("primary_missing") + col("primary_tie") + col("primary_unparsed"))
        + col("primary_order_disagree")
    ).clip(upper=1.0)
    conf = (
        table["primary_confidence"].astype(float)
        if "primary_confidence" in table
        else pd.Series(np.nan, index=table.index)
    )
    low = ((low_confidence - conf) / max(low_confidence, 1e-9)).clip(lower=0.0)
    agree = (
        table["others_agree"].astype(float).fillna(1.0)
        if "others_agree" in table
        else pd.Series(1.0, index=table.index)
    )
    score = (
        INCONCLUSIVE * inconclusive
        + DISAGREE * (1.0 - agree)
        + CONFIDENCE * low.fillna(0.0)
        + POSITION * col("primary_first_shown")
    )
    return score.rename("score")
