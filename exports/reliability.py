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

import pandas as pd

from . import aggregators

VOTE_COLUMNS = ["item", "worker", "source", "label", "strength"]


def _decided_by(votes: pd.DataFrame) -> pd.Series:
    """Per item: which kinds of labeller the counted votes came from."""
    return votes.groupby("item")["source"].agg(lambda s: "+".join(sorted(set(s))))


def _counted(votes: pd.DataFrame, judges: bool) -> pd.DataFrame:
    if not judges:
        votes = votes[votes["source"] != "judge"]
    return votes[votes["label"].notna()]


def _rows(
    result: aggregators.Aggregate, votes: pd.DataFrame, *, judges: bool, scale: int
) -> dict[int, dict[str, Any]]:
    counted = _counted(votes, judges)
    items = result.items
    if items.empty:
        return {}
    decided = _decided_by(counted)
    label_of = items["label"]
    # mean strength of the counted votes that gave the item's label
    if counted["label"].map(lambda v: isinstance(v, str)).all():
        winners = counted["item"].map(label_of)
        behind = counted[(counted["label"] == winners) & counted["strength"].notna()]
        strength = behind.groupby("item")["strength"].mean()
    else:
        strength = pd.Series(dtype=float)
    out: dict[int, dict[str, Any]] = {}
    has_margins = "margins" in items.columns
    for item, row in items.iterrows():
        choice = row["label"]
        if choice is None or (isinstance(choice, float) and pd.isna(choice)):
            continue
        agreement = float(row["agreement"])
        mean_strength = strength.get(item)
        mean_strength = None if mean_strength is None or pd.isna(mean_strength) else mean_strength
        margin = agreement
        if scale and mean_strength is not None and choice in ("A", "B"):
            margin = agreement * min(float(mean_strength) / scale, 1.0)
        out[int(item)] = {
            "choice": choice,
            "confidence": float(row["confidence"]),
            "agreement": agreement,
            "strength": float(mean_strength) if mean_strength is not None else None,
            "margin": margin,
            "margins": row["margins"] if has_margins else None,
            "decided_by": decided.get(item, ""),
        }
    return out


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
