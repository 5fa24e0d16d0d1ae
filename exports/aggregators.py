"""Aggregation of labels into one answer per item: pure functions over pandas, no models.

Input: a DataFrame with one row per label, columns ``item``, ``worker``, ``label`` (and
optionally ``source``, ``human`` or ``judge``: judges are labellers too, and ``judges=False``
leaves them out). A label is a nominal value (pairwise ``A``/``B``/``tie``/``both_bad``, thumbs
``up``/``down``): ties and both-bad are answers like any other. A null label (a judge answer that
could not be parsed) is no vote. For listwise items ``label`` is a ranking: letters best first,
a nested list for a tie (``["B", ["A", "C"]]``).

Output: an ``Aggregate``: ``items`` (index ``item``; ``label``, ``confidence``, ``agreement``,
``n_labels``) and ``workers`` (a weight per worker). ``confidence`` is the method's own belief in
the label (a weighted vote share, a posterior probability, a Bradley-Terry win probability);
``agreement`` is always the plain share of the item's votes that gave the label.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Aggregate:
    method: str
    items: pd.DataFrame
    workers: pd.Series


def _votes(labels: pd.DataFrame, *, judges: bool) -> pd.DataFrame:
    missing = {"item", "worker", "label"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels need the columns {', '.join(sorted(missing))}")
    if not judges and "source" in labels.columns:
        labels = labels[labels["source"] != "judge"]
    return labels[labels["label"].notna()][["item", "worker", "label"]]


def _finish(
    method: str, votes: pd.DataFrame, label: pd.Series, confidence: pd.Series, workers: pd.Series
) -> Aggregate:
    n_labels = votes.groupby("item").size()
    given = votes.assign(winner=label.reindex(votes["item"]).to_numpy())
    agreeing = (given["label"] == given["winner"]).groupby(given["item"]).sum()
    items = pd.DataFrame(
        {
            "label": label.reindex(n_labels.index),
            "confidence": confidence.reindex(n_labels.index).astype(float),
            "agreement": (agreeing / n_labels).where(label.reindex(n_labels.index).notna()),
            "n_labels": n_labels,
        }
    )
    items.index.name = "item"
    return Aggregate(method=method, items=items, workers=workers.rename("weight"))


def majority(
    labels: pd.DataFrame, *, weights: Mapping[str, float] | None = None, judges: bool = True
) -> Aggregate:
    """The (weighted) majority vote. An item whose top votes are tied has no label (None);
    ``confidence`` is the top value's share of the item's vote weight."""
    votes = _votes(labels, judges=judges)
    weight = votes["worker"].map(weights or {}).fillna(1.0) if weights else 1.0
    scores = votes.assign(w=weight).groupby(["item", "label"])["w"].sum().unstack(fill_value=0)
    matrix = scores.to_numpy(dtype=float)
    if matrix.size:
        top = matrix.max(axis=1)
        unique = (np.isclose(matrix, top[:, None]).sum(axis=1) == 1) & (top > 0)
        winner = np.asarray(scores.columns, dtype=object)[matrix.argmax(axis=1)]
        total = matrix.sum(axis=1)
        confidence = np.divide(top, total, out=np.zeros_like(top), where=total > 0)
    else:
        unique = winner = confidence = np.array([])
    label = pd.Series(np.where(unique, winner, None), index=scores.index, dtype=object)
    workers = pd.Series(
        {w: float((weights or {}).get(w, 1.0)) for w in sorted(votes["worker"].unique())},
        dtype=float,
    )
    return _finish(
        "weighted_majority" if weights else "majority",
        votes,
        label,
        pd.Series(confidence, index=scores.index),
        workers,
    )


def dawid_skene(
    labels: pd.DataFrame, *, judges: bool = True, n_iter: int = 100, tol: float = 1e-5
) -> Aggregate:
    """Dawid-Skene (crowd-kit): each worker's confusion matrix and each item's true label by EM.
    ``confidence`` is the posterior of the label; a worker's weight is their estimated
    probability of giving the true label, sum over values c of prior(c) * P(says c | true c)."""
    from crowdkit.aggregation import DawidSkene

    votes = _votes(labels, judges=judges)
    if votes.empty:
        return _finish("dawid_skene", votes, pd.Series(dtype=object), pd.Series(), pd.Series())
    with warnings.catch_warnings():
        # crowd-kit 1.4 still uses pandas' inplace/copy keywords, deprecated in pandas 3.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="crowdkit")
        warnings.filterwarnings("ignore", category=FutureWarning, module="crowdkit")
        model = DawidSkene(n_iter=n_iter, tol=tol).fit(
            votes.rename(columns={"item": "task"}).astype({"label": str})
        )
    probas = model.probas_
    label = model.labels_.astype(object)
    errors = model.errors_  # index (worker, observed value), columns: the true value
    priors = model.priors_
    reliability = {}
    for worker, confusion in errors.groupby(level=0):
        confusion = confusion.droplevel(0).reindex(index=priors.index, fill_value=0.0)
        correct = np.diag(confusion.reindex(columns=priors.index, fill_value=0.0).to_numpy())
        reliability[worker] = float((priors.to_numpy() * correct).sum())
    return _finish(
        "dawid_skene",
        votes,
        label,
        probas.max(axis=1),
        pd.Series(reliability, dtype=float).sort_index(),
    )


def gold_weighted(
    labels: pd.DataFrame, gold: Mapping[Any, str] | pd.Series, *, judges: bool = True
) -> Aggregate:
    """A majority vote weighted by each worker's accuracy on gold items, smoothed as
    (right + 1) / (answered + 2): a worker with no gold answers weighs 0.5, a careless one
    little, a careful one close to 1."""
    votes = _votes(labels, judges=judges)
    gold = pd.Series(gold, dtype=object)
    on_gold = votes[votes["item"].isin(gold.index)]
    right = (on_gold["label"].to_numpy() == gold.reindex(on_gold["item"]).to_numpy()).astype(int)
    scored = pd.DataFrame({"worker": on_gold["worker"].to_numpy(), "right": right})
    tally = scored.groupby("worker")["right"].agg(["sum", "size"])
    weights = {w: 0.5 for w in votes["worker"].unique()}
    weights.update(((tally["sum"] + 1) / (tally["size"] + 2)).to_dict())
    result = majority(votes, weights=weights)
    return Aggregate("gold_weighted", result.items, result.workers)


# --- listwise ----------------------------------------------------------------------------------


def _groups(ranking: Any) -> list[list[str]]:
    return [entry if isinstance(entry, list) else [entry] for entry in ranking]


def _comparisons(ranking: Any, index: Mapping[str, int]) -> list[tuple[int, int]]:
    """A ranking as (winner, loser) pairs; candidates tied in a group are not compared."""
    groups = _groups(ranking)
    return [
        (index[a], index[b])
        for i, j in combinations(range(len(groups)), 2)
        for a in groups[i]
        for b in groups[j]
    ]


def bradley_terry(
    labels: pd.DataFrame, *, judges: bool = True, alpha: float = 0.01, method: str = "bt"
) -> Aggregate:
    """Rankings aggregated per item by Bradley-Terry over the pairs each ranking orders
    (``choix.ilsr_pairwise``; ties within a ranking are no comparison), or with
    ``method="pl"`` by Plackett-Luce over whole rankings (``choix.ilsr_rankings``; rankings
    with ties are not allowed there). ``alpha`` regularises, so items with few or unanimous
    rankings still get finite strengths.

    Per item: ``label`` the aggregate ranking (letters best first), ``top`` its first,
    ``confidence`` the probability that the top beats the second, ``margins`` the probability
    ``P(x beats y)`` for every pair x ranked above y, ``agreement`` the share of rankings with
    the same top. Every worker weighs 1."""
    import choix

    if method not in ("bt", "pl"):
        raise ValueError("method is 'bt' (Bradley-Terry) or 'pl' (Plackett-Luce)")
    votes = _votes(labels, judges=judges)
    rows = {}
    for item, group in votes.groupby("item", sort=True):
        rankings = list(group["label"])
        letters = sorted({x for r in rankings for g in _groups(r) for x in g})
        index = {x: i for i, x in enumerate(letters)}
        if method == "pl":
            if any(len(g) > 1 for r in rankings for g in _groups(r)):
                raise ValueError(f"item {item}: Plackett-Luce takes no ties; use Bradley-Terry")
            data = [tuple(index[g[0]] for g in _groups(r)) for r in rankings]
            strengths = choix.ilsr_rankings(len(letters), data, alpha=alpha)
        else:
            data = [c for r in rankings for c in _comparisons(r, index)]
            strengths = choix.ilsr_pairwise(len(letters), data, alpha=alpha)
        order = sorted(range(len(letters)), key=lambda i: (-strengths[i], letters[i]))
        ranking = [letters[i] for i in order]
        margins = {
            f"{letters[a]}>{letters[b]}": round(float(choix.probabilities([a, b], strengths)[0]), 6)
            for a, b in combinations(order, 2)
        }
        tops = [_groups(r)[0] for r in rankings]
        rows[item] = {
            "label": ranking,
            "top": ranking[0],
            "confidence": margins[f"{ranking[0]}>{ranking[1]}"] if len(ranking) > 1 else 1.0,
            "agreement": sum(t == [ranking[0]] for t in tops) / len(tops),
            "n_labels": len(rankings),
            "margins": margins,
        }
    items = pd.DataFrame.from_dict(
        rows,
        orient="index",
        columns=["label", "top", "confidence", "agreement", "n_labels", "margins"],
    )
    items.index.name = "item"
    workers = pd.Series(1.0, index=sorted(votes["worker"].unique()), name="weight")
    return Aggregate("bradley_terry" if method == "bt" else "plackett_luce", items, workers)


def plackett_luce(labels: pd.DataFrame, *, judges: bool = True, alpha: float = 0.01) -> Aggregate:
    """Plackett-Luce over whole rankings (see ``bradley_terry``)."""
    return bradley_terry(labels, judges=judges, alpha=alpha, method="pl")
