"""Every item to the judge; no human label is bought."""

import pandas as pd

from routing.router.policies.base import Policy


class AllJudgePolicy(Policy):
    name = "all_judge"
    score_meaning = "all-judge"

    def scores(self, table: pd.DataFrame) -> pd.Series:
        return pd.Series(0.0, index=table.index)

    def wants_human(self, scores: pd.Series) -> pd.Series:
        return pd.Series(False, index=scores.index)
