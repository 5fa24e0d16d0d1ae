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

The weights are a prior, not a law: when one judge is much stronger than the others, "the other
judges disagree" can mark the items where the *primary* judge is right. Where labelled data exists
(the learned policy's fit, a transferred model's calibration slice), ``signal_directions`` tests
each signal's direction and ``checked_weights`` reverses the ones shown to point the wrong way.
This policy itself uses no labels and keeps the prior weights.
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


# The signals of the module docstring, heaviest first, and their weights in the score.
WEIGHTS: dict[str, float] = {
    "inconclusive": INCONCLUSIVE,
    "disagree": DISAGREE,
    "low_confidence": CONFIDENCE,
    "position": POSITION,
}
SIGNAL_WORDS = {
    "inconclusive": "no usable verdict",
    "disagree": "other judges disagree",
    "low_confidence": "low confidence",
    "position": "position risk",
}
# Family-wise error rate of the direction check (Holm over the signals tested).
ALPHA = 0.05


def uncertainty_signals(
    table: pd.DataFrame, *, low_confidence: float | None = None
) -> pd.DataFrame:
    """Per row of a feature table, each signal of the module docstring in [0, 1] (columns named
    as ``WEIGHTS``); the score is their weighted sum."""
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
    return pd.DataFrame(
        {
            "inconclusive": inconclusive,
            "disagree": 1.0 - agree,
            "low_confidence": low.fillna(0.0),
            "position": col("primary_first_shown"),
        },
        index=table.index,
    )


def judge_uncertainty_scores(
    table: pd.DataFrame,
    *,
    low_confidence: float | None = None,
    weights: dict[str, float] | None = None,
) -> pd.Series:
    """The uncertainty score of the module docstring, per row of a feature table. ``weights``
    (default ``WEIGHTS``) may come from ``checked_weights``: a signal that labelled data showed
    to point the wrong way counts negatively."""
    signals = uncertainty_signals(table, low_confidence=low_confidence)
    weights = WEIGHTS if weights is None else weights
    score = sum(weights[name] * signals[name] for name in WEIGHTS)
    return pd.Series(score, index=table.index, dtype=float).rename("score")


def signal_directions(
    signals: pd.DataFrame, judge_wrong: np.ndarray, *, alpha: float = ALPHA
) -> list[dict[str, Any]]:
    """Does each signal flag the judge's errors, on labelled items (``judge_wrong`` 0/1)?

    The score's weights are a prior from the judge-evaluation literature: a signal keeps its
    direction unless the data shows it points the wrong way. Each signal is tested where it can
    change the ranking: on the items that no heavier signal flags (the score is ordered by weight,
    so there it decides). One-sided Fisher exact test: are the judge's errors *rarer* among the
    items it flags than among the others? Holm's correction over the signals tested keeps the
    chance of reversing any right-way signal under ``alpha``. A signal that fires on no item, or on
    every item of its stratum, cannot be tested and keeps its weight (it does not separate those
    items; they are ordered by the rest of the score, then the seeded hash: at random)."""
    from scipy.stats import fisher_exact

    y = np.asarray(judge_wrong, dtype=float)
    heavier = np.zeros(len(y), dtype=bool)
    checks: list[dict[str, Any]] = []
    for weight in sorted(set(WEIGHTS.values()), reverse=True):
        level = [name for name, w in WEIGHTS.items() if w == weight]
        flags = {name: signals[name].to_numpy(dtype=float) > 0 for name in level}
        for name in level:  # equal weights share a stratum
            on = flags[name]
            flagged, rest = y[~heavier & on], y[~heavier & ~on]
            check: dict[str, Any] = {
                "signal": name,
                "n_flagged": len(flagged),
                "errors_flagged": int(flagged.sum()),
                "n_rest": len(rest),
                "errors_rest": int(rest.sum()),
                "p_wrong_way": None,
                "reversed": False,
            }
            if len(flagged) and len(rest):
                counts = [
                    [flagged.sum(), len(flagged) - flagged.sum()],
                    [rest.sum(), len(rest) - rest.sum()],
                ]
                check["p_wrong_way"] = float(fisher_exact(counts, alternative="less")[1])
            checks.append(check)
        for on in flags.values():
            heavier |= on
    tested = sorted(
        (c for c in checks if c["p_wrong_way"] is not None), key=lambda c: c["p_wrong_way"]
    )
    for i, check in enumerate(tested):  # Holm: step down while the smallest p-values pass
        if check["p_wrong_way"] > alpha / (len(tested) - i):
            break
        check["reversed"] = True
    return checks


def checked_weights(checks: list[dict[str, Any]]) -> dict[str, float]:
    """``WEIGHTS`` with the signals ``signal_directions`` found pointing the wrong way reversed:
    the items they flag rank below the items they do not, by the same weight."""
    reversed_ = {c["signal"] for c in checks if c["reversed"]}
    return {name: -w if name in reversed_ else w for name, w in WEIGHTS.items()}


def signals_checked(
    table: pd.DataFrame, judge_wrong: np.ndarray
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """``signal_directions`` of a feature table's signals on its labelled rows, and the
    ``checked_weights`` they give."""
    checks = signal_directions(uncertainty_signals(table), judge_wrong)
    return checks, checked_weights(checks)


def reversed_in_words(checks: list[dict[str, Any]]) -> str:
    """The reversed signals with their evidence, for decision reasons ("" when none)."""
    parts = [
        f"'{SIGNAL_WORDS[c['signal']]}' reversed (judge wrong on {c['errors_flagged']} of "
        f"{c['n_flagged']} items it flags vs {c['errors_rest']} of {c['n_rest']} others, "
        f"p={c['p_wrong_way']:.2g})"
        for c in checks
        if c["reversed"]
    ]
    return "; ".join(parts)
