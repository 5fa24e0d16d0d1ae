"""Project-level aggregation methods: all of a project's labels at once -> one answer per item.

Majority (``exports.preferences``) decides each item from its own labels. The methods here
cannot: Dawid-Skene estimates every annotator's reliability from all their labels, gold-weighted
weighs each by their accuracy on the project's gold items, so each runs once over the whole
project (``exports.aggregators`` does the statistics) and answers every item together.
Bradley-Terry is per item but runs the same way, over one frame of the project's rankings.

Input: ``votes``, a DataFrame with one row per current label: ``item``, ``worker`` (a stable
name: ``user:<id>``, the imported annotator's name, or the judge's name), ``source``, ``label``
(pairwise/thumbs: the answer, listwise: the ranking as a list; None when unparsed) and
``strength`` (NaN when absent).

Output per item: ``choice``, ``confidence`` (the method's own belief: Dawid-Skene's posterior, the
weighted vote share, Bradley-Terry's P(top beats second)), ``agreement`` (the plain share of the
counted votes giving the choice), ``strength`` (mean strength of the counted votes giving the
choice), ``margin`` and, for rankings, ``margins`` (P(x beats y) for each pair ranked x above y).

The margin combines agreement and strength::

    margin = agreement * (mean strength behind the choice / top of the project's scale)

for a pairwise ``A``/``B`` choice when the project has a strength scale and the votes behind the
choice gave strengths (a unanimous "much better" on a 2-step scale is 1.0, a unanimous "better"
0.5, two of three saying "much better" 0.67); otherwise (ties, both-bad, thumbs, no strengths)
``margin = agreement``. Listwise: ``margin = agreement`` (the share of rankings whose top is the
aggregate's top); the pair strengths are in ``margins``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from . import aggregators

VOTE_COLUMNS = ["item", "worker", "source", "label", "strength"]
# Figures are rounded: the labels arrive in no fixed order, and EM's sums in another order differ
# in the last bits; rounded, a recompute over unchanged labels writes no row (idempotent).
DIGITS = 9


def _decided_by(votes: pd.DataFrame) -> pd.Series:
    """Per item: which kinds of labeller the counted votes came from."""
    human = (votes["source"] == "human").groupby(votes["item"]).any()
    judge = (votes["source"] == "judge").groupby(votes["item"]).any()
    names = np.select([human & judge, human, judge], ["human+judge", "human", "judge"], "")
    return pd.Series(names, index=human.index)


def _counted(votes: pd.DataFrame, judges: bool) -> pd.DataFrame:
    if not judges:
        votes = votes[votes["source"] != "judge"]
    return votes[votes["label"].notna()]


def _rows(
    result: aggregators.Aggregate, votes: pd.DataFrame, *, judges: bool, scale: int
) -> dict[int, dict[str, Any]]:
    """The aggregate's resolved items as Preference values (column-wise; one dict per item)."""
    items = result.items
    if items.empty:
        return {}
    items = items[items["label"].notna()]
    counted = _counted(votes, judges)
    pairwise = items["label"].map(lambda v: v in ("A", "B")).astype(bool)
    strength = pd.Series(np.nan, index=items.index)
    if scale and pairwise.any() and counted["strength"].notna().any():
        winners = counted["item"].map(items["label"].where(pairwise))
        behind = counted[(counted["label"] == winners) & counted["strength"].notna()]
        strength = behind.groupby("item")["strength"].mean().reindex(items.index)
    agreement = items["agreement"].astype(float)
    ratio = (strength / scale).clip(upper=1.0) if scale else strength
    margin = agreement.where(~(pairwise & strength.notna()), agreement * ratio)
    decided = _decided_by(counted).reindex(items.index).fillna("")
    margins = items["margins"] if "margins" in items.columns else [None] * len(items)
    return {
        int(item): {
            "choice": choice,
            "confidence": round(float(confidence), DIGITS),
            "agreement": round(float(agree), DIGITS),
            "strength": None if pd.isna(mean) else round(float(mean), DIGITS),
            "margin": round(float(m), DIGITS),
            "margins": pair_margins if isinstance(pair_margins, dict) else None,
            "decided_by": by,
        }
        for item, choice, confidence, agree, mean, m, pair_margins, by in zip(
            items.index,
            items["label"],
            items["confidence"],
            agreement,
            strength,
            margin,
            margins,
            decided,
            strict=True,
        )
    }


def dawid_skene(
    votes: pd.DataFrame, *, judges: bool, scale: int, gold: Mapping[int, Any] | None = None
) -> dict[int, dict[str, Any]]:
    """Reliability-weighted vote: Dawid-Skene (crowd-kit) over every counted label."""
    result = aggregators.dawid_skene(votes, judges=judges)
    return _rows(result, votes, judges=judges, scale=scale)


def gold_weighted(
    votes: pd.DataFrame, *, judges: bool, scale: int, gold: Mapping[int, Any] | None = None
) -> dict[int, dict[str, Any]]:
    """A vote weighted by each labeller's smoothed accuracy on gold items."""
    result = aggregators.gold_weighted(votes, gold or {}, judges=judges)
    return _rows(result, votes, judges=judges, scale=scale)


def bradley_terry(
    votes: pd.DataFrame, *, judges: bool, scale: int, gold: Mapping[int, Any] | None = None
) -> dict[int, dict[str, Any]]:
    """Listwise: a Bradley-Terry ranking per item (choix) and P(x beats y) per pair."""
    result = aggregators.bradley_terry(votes, judges=judges)
    return _rows(result, votes, judges=judges, scale=0)
