"""Aggregation methods: majority on hand-worked examples, Dawid-Skene finding a planted careless
annotator, gold weights, Bradley-Terry / Plackett-Luce recovering a planted order."""

import numpy as np
import pandas as pd
import pytest

from exports import aggregators


def frame(rows, columns=("item", "worker", "label")):
    return pd.DataFrame(rows, columns=list(columns))


def test_majority_by_hand():
    """x1: A, A, B -> A, confidence and agreement 2/3. x2: A, B -> no majority. x3: tie, tie, A
    -> tie (a tie is an answer like any other). x4: both_bad and an unparsed judge answer (None,
    no vote) -> both_bad, 1 label."""
    labels = frame(
        [
            ("x1", "w1", "A"),
            ("x1", "w2", "A"),
            ("x1", "w3", "B"),
            ("x2", "w1", "A"),
            ("x2", "w2", "B"),
            ("x3", "w1", "tie"),
            ("x3", "w2", "tie"),
            ("x3", "w3", "A"),
            ("x4", "w1", "both_bad"),
            ("x4", "judge", None),
        ]
    )
    result = aggregators.majority(labels).items
    assert result.loc["x1"].tolist() == [
        "A",
        pytest.approx(2 / 3),
        pytest.approx(2 / 3),
        3,
    ]
    assert result.loc["x2", "label"] is None and result.loc["x2", "confidence"] == 0.5
    assert np.isnan(result.loc["x2", "agreement"])
    assert result.loc["x3", "label"] == "tie"
    assert (result.loc["x4", "label"], result.loc["x4", "n_labels"]) == ("both_bad", 1)


def test_weighted_majority_and_leaving_judges_out():
    """x1: w1 (weight 3) says B, w2 and w3 (1 each) say A: B wins 3 to 2, confidence 3/5,
    agreement 1/3. Without the judge, x2 has only w1's A."""
    labels = frame(
        [
            ("x1", "w1", "B", "human"),
            ("x1", "w2", "A", "human"),
            ("x1", "w3", "A", "human"),
            ("x2", "w1", "A", "human"),
            ("x2", "gpt", "B", "judge"),
            ("x2", "gpt2", "B", "judge"),
        ],
        columns=("item", "worker", "label", "source"),
    )
    weighted = aggregators.majority(labels, weights={"w1": 3.0}).items
    assert weighted.loc["x1", "label"] == "B"
    assert weighted.loc["x1", "confidence"] == pytest.approx(3 / 5)
    assert weighted.loc["x1", "agreement"] == pytest.approx(1 / 3)
    assert aggregators.majority(labels).items.loc["x2", "label"] == "B"
    alone = aggregators.majority(labels, judges=False)
    assert alone.items.loc["x2"].tolist()[::3] == ["A", 1]
    assert "gpt" not in alone.workers.index


def careless_project(seed=7, n_items=400):
    """Four careful workers (right 85% of the time, else a random other value) and one careless
    worker answering uniformly at random; three workers per item, values A, B, tie."""
    rng = np.random.default_rng(seed)
    values = np.array(["A", "B", "tie"])
    truth = rng.choice(values, size=n_items, p=[0.45, 0.45, 0.1])
    workers = ["careful1", "careful2", "careful3", "careful4", "careless"]
    rows = []
    for item, true in enumerate(truth):
        # the careless worker labels every other item, so their random answers matter
        chosen = rng.choice(workers[:4], size=2 if item % 2 else 3, replace=False).tolist()
        if item % 2:
            chosen.append("careless")
        for worker in chosen:
            if worker == "careless":
                label = rng.choice(values)
            elif rng.random() < 0.85:
                label = true
            else:
                label = rng.choice(values[values != true])
            rows.append((item, worker, label))
    return frame(rows), pd.Series(truth)


def test_dawid_skene_finds_the_careless_annotator():
    labels, truth = careless_project()
    result = aggregators.dawid_skene(labels)
    weights = result.workers
    assert weights.idxmin() == "careless"
    assert weights["careless"] < 0.5
    assert weights.drop("careless").min() > 0.75
    ds_accuracy = (result.items["label"] == truth).mean()
    majority_accuracy = (aggregators.majority(labels).items["label"] == truth).mean()
    assert ds_accuracy >= majority_accuracy
    assert ds_accuracy > 0.9
    assert result.items["confidence"].between(0, 1).all()
    assert result.items["n_labels"].sum() == len(labels)


def test_gold_weighted_trusts_the_careful():
    """On gold items, careful workers are right about 85% of the time and the careless one
    about a third: their weights follow, smoothed (right + 1) / (answered + 2)."""
    labels, truth = careless_project(seed=3)
    gold = truth[truth.index % 4 == 1]  # a quarter of the items, all with the careless worker
    result = aggregators.gold_weighted(labels, gold)
    assert result.workers.idxmin() == "careless"
    assert result.workers["careless"] < 0.5 < result.workers.drop("careless").min()
    accuracy = (result.items["label"] == truth).mean()
    assert accuracy >= (aggregators.majority(labels).items["label"] == truth).mean()


def test_gold_weight_by_hand():
    """w1 right on both gold items: (2 + 1) / (2 + 2) = 0.75; w2 wrong on both: 1/4; w3 has no
    gold answer: 0.5. x3: w1's A (0.75) beats w2's B (0.25); x4: w3's A (0.5) beats w2's B."""
    labels = frame(
        [
            ("g1", "w1", "A"),
            ("g1", "w2", "B"),
            ("g2", "w1", "B"),
            ("g2", "w2", "A"),
            ("x3", "w1", "A"),
            ("x3", "w2", "B"),
            ("x4", "w2", "B"),
            ("x4", "w3", "A"),
        ]
    )
    result = aggregators.gold_weighted(labels, {"g1": "A", "g2": "B"})
    assert result.workers.to_dict() == {"w1": 0.75, "w2": 0.25, "w3": 0.5}
    assert result.items.loc["x3", "label"] == "A"
    assert result.items.loc["x4", "label"] == "A"
    assert result.items.loc["x4", "confidence"] == pytest.approx(0.5 / 0.75)


def planted_rankings(order, n, rng, noise=1.0):
    """Rankings sampled from Plackett-Luce with strengths falling along ``order``."""
    strengths = np.exp(-noise * np.arange(len(order)))
    rankings = []
    for _ in range(n):
        left, ranking = list(range(len(order))), []
        while left:
            p = strengths[left] / strengths[left].sum()
            pick = rng.choice(len(left), p=p)
            ranking.append(order[left.pop(pick)])
        rankings.append(ranking)
    return rankings


@pytest.mark.parametrize("method", ["bt", "pl"])
def test_bradley_terry_ranks_a_planted_order(method):
    rng = np.random.default_rng(11)
    planted = {"x1": list("CAEBD"), "x2": list("ABCDE"), "x3": list("EDCBA")}
    rows = [
        (item, f"w{i}", ranking)
        for item, order in planted.items()
        for i, ranking in enumerate(planted_rankings(order, 60, rng))
    ]
    result = aggregators.bradley_terry(frame(rows), method=method).items
    for item, order in planted.items():
        assert result.loc[item, "label"] == order
        margins = result.loc[item, "margins"]
        assert len(margins) == 10
        assert all(p > 0.5 for p in margins.values())
        assert margins[f"{order[0]}>{order[-1]}"] > margins[f"{order[0]}>{order[1]}"]
        assert result.loc[item, "confidence"] == margins[f"{order[0]}>{order[1]}"]
    assert result.loc["x1", "n_labels"] == 60


def test_bradley_terry_with_ties_and_few_rankings():
    """Two rankings: B first, A and C tied behind; and B, A, C. B leads, A is ahead of C (one
    comparison A>C against none the other way); ties are no comparison, not dropped rankings."""
    labels = frame([("x", "w1", ["B", ["A", "C"]]), ("x", "w2", ["B", "A", "C"])])
    row = aggregators.bradley_terry(labels).items.loc["x"]
    assert row["label"] == ["B", "A", "C"] and row["top"] == "B"
    assert row["agreement"] == 1.0 and row["n_labels"] == 2
    with pytest.raises(ValueError, match="no ties"):
        aggregators.plackett_luce(labels)
