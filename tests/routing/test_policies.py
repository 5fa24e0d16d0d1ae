import math

import numpy as np
import pandas as pd
import pytest

from routing.router.features import ItemView, JudgeLabel, features_table, judge_verdict
from routing.router.policies import POLICIES, policy_build
from routing.router.policies.learned import LearnedPolicy, judge_error_target
from tandem.errors import InvalidInput


def view(key, judges=(), a="short answer", b="a much longer answer with many more words", **kw):
    return ItemView(
        key=key,
        prompt="What?",
        candidates=[a, b],
        judge_labels=[JudgeLabel(*j) for j in judges],
        **kw,
    )


def table_of(views, judges=("g", "p")):
    return features_table(views, list(judges), embeddings=False)


def test_every_policy_is_registered():
    assert set(POLICIES) == {
        "all_human",
        "all_judge",
        "random",
        "rules",
        "judge_uncertainty",
        "learned",
    }


def test_policy_build_refuses_unknown_names_and_params():
    with pytest.raises(InvalidInput, match="unknown policy"):
        policy_build(name="nope")
    with pytest.raises(InvalidInput, match="takes no parameters"):
        policy_build(name="all_judge", params={"x": 1})
    with pytest.raises(InvalidInput, match="fraction"):
        policy_build(name="random", params={"fraction": 1.5})


def test_all_human_fills_the_budget_and_no_more():
    table = table_of([view(str(i), [("g", "A")]) for i in range(10)])
    plan = policy_build(name="all_human").route(table, 4)
    assert plan.counts() == {"human": 4, "judge": 6, "both": 0}
    assert plan.human_keys == ["0", "1", "2", "3"]
    assert "budget is spent" in plan.frame.loc["9", "reason"]


def test_all_judge_sends_nobody_to_people():
    table = table_of([view(str(i), [("g", "A")]) for i in range(5)])
    plan = policy_build(name="all_judge").route(table, 5)
    assert plan.counts()["human"] == 0


def test_random_sends_its_fraction_reproducibly():
    table = table_of([view(str(i), [("g", "A")]) for i in range(100)])
    policy = policy_build(name="random", params={"fraction": 0.3, "seed": 7})
    first = policy.route(table, 100).human_keys
    assert len(first) == 30
    assert policy.route(table, 100).human_keys == first
    assert len(policy.route(table, 10).human_keys) == 10  # the budget cuts the fraction
    other = policy_build(name="random", params={"fraction": 0.3, "seed": 8}).route(table, 100)
    assert other.human_keys != first


def test_judge_verdict_needs_both_orders_to_agree():
    agree = judge_verdict([JudgeLabel("g", "A", "AB"), JudgeLabel("g", "A", "BA")])
    assert agree.choice == "A" and not agree.order_disagree and not agree.first_shown
    split = judge_verdict([JudgeLabel("g", "A", "AB"), JudgeLabel("g", "B", "BA")])
    assert split.choice == "tie" and split.order_disagree
    broken = judge_verdict([JudgeLabel("g", None, "AB")])
    assert broken.choice is None and broken.unparsed
    single = judge_verdict([JudgeLabel("g", "B", "BA")])
    assert single.first_shown  # B was shown first and won: position risk


def test_judge_uncertainty_ranks_the_most_uncertain_first():
    views = [
        view("certain", [("g", "B", "AB", 0.9), ("g", "B", "BA", 0.9), ("p", "B")]),
        view("position", [("g", "A", "AB", 0.9), ("p", "A")]),
        view("judges_disagree", [("g", "B", "AB", 0.9), ("g", "B", "BA", 0.9), ("p", "A")]),
        view("low_confidence", [("g", "B", "AB", 0.1), ("g", "B", "BA", 0.2), ("p", "B")]),
        view("orders_disagree", [("g", "A", "AB", 0.9), ("g", "B", "BA", 0.9), ("p", "B")]),
        view("unparseable", [("g", None, "AB"), ("p", None)]),
    ]
    policy = policy_build(name="judge_uncertainty", params={"low_confidence": 0.6})
    scores = policy.scores(table_of(views))
    assert scores["certain"] == 0
    assert scores["position"] == pytest.approx(0.5)
    assert scores["judges_disagree"] == pytest.approx(1.0)
    assert scores["low_confidence"] == pytest.approx((0.6 - 0.1) / 0.6)
    assert scores["orders_disagree"] > scores["judges_disagree"]
    assert scores["unparseable"] >= 3
    plan = policy.route(table_of(views), 2)
    assert set(plan.human_keys) == {"orders_disagree", "unparseable"}
    # Only the uncertain: the certain item stays with the judge even with budget to spare.
    only = policy_build(name="judge_uncertainty", params={"only_uncertain": True})
    assert "certain" not in only.route(table_of(views), 6).human_keys
    assert len(only.route(table_of(views), 6).human_keys) == 4


def test_judge_uncertainty_validates_params():
    with pytest.raises(InvalidInput, match="low_confidence"):
        policy_build(name="judge_uncertainty", params={"low_confidence": 2})


def test_rules_first_match_wins_and_budget_caps_people():
    views = [
        view("med", [("g", "A")], metadata={"domain": "medical"}),
        view("law", [("g", "A")], metadata={"domain": "legal"}),
        view("split", [("g", "A"), ("p", "B")], metadata={"domain": "chat"}),
        view("med2", [("g", "A")], metadata={"domain": "medical"}),
        view("plain", [("g", "A"), ("p", "A")], metadata={"domain": "chat"}),
    ]
    from routing.router.features import metadata_table

    table, meta = table_of(views), metadata_table(views)
    policy = policy_build(
        name="rules",
        params={
            "rules": [
                "metadata.domain == 'medical' -> human",
                {"if": "metadata.domain in ['legal']", "then": "both"},
                "judges_disagree > 0 -> human",
                "metadata.domain == 'medical' -> judge",
            ]
        },
    )
    plan = policy.route(table, 3, metadata=meta)
    frame = plan.frame
    assert frame.loc["med", "target"] == "human"
    assert frame.loc["med2", "target"] == "human"
    assert frame.loc["law", "target"] == "both"
    assert frame.loc["split", "target"] == "judge"  # matched rule 3, but the budget is spent
    assert "budget is spent" in frame.loc["split", "reason"]
    assert frame.loc["plain", "reason"].startswith("no rule matched")
    assert plan.counts() == {"human": 2, "judge": 2, "both": 1}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("metadata.domain = 'x' -> human", "cannot read condition"),
        ("metadata.domain == 'x' -> robots", "not one of human, judge, both"),
        ("metadata.domain == 'x'", "write '<condition> -> <target>'"),
        ("lenght > 3 -> human", "unknown field 'lenght'"),
        ("a_tokens > 'many' -> human", "needs a number"),
        ("metadata.domain in 'x' -> human", "'in' needs a list"),
        ("metadata.domain == medical -> human", "is not a number, quoted text"),
        ({"if": "a_tokens > 3"}, "a rule is"),
        (42, "a rule is text or an object"),
    ],
)
def test_rules_refuse_bad_rules_with_the_reason(rule, message):
    with pytest.raises(InvalidInput, match="rule 1") as info:
        policy_build(name="rules", params={"rules": [rule]})
    assert message in info.value.message


def test_rules_need_a_list():
    with pytest.raises(InvalidInput, match="non-empty list"):
        policy_build(name="rules", params={"rules": []})


def test_judge_error_target():
    assert judge_error_target("A", "A") == 0.0
    assert judge_error_target("B", "A") == 1.0
    assert judge_error_target("tie", "A") == 1.0
    assert judge_error_target(None, "B") == 1.0
    assert math.isnan(judge_error_target("A", "tie"))


def _learnable(n=200, seed=0):
    """Items where the judge is wrong exactly when the judges disagree (plus noise)."""
    rng = np.random.default_rng(seed)
    views, target = [], []
    for i in range(n):
        disagree = rng.random() < 0.3
        views.append(view(f"k{i}", [("g", "A"), ("p", "B" if disagree else "A")]))
        target.append(float(disagree if rng.random() < 0.9 else not disagree))
    table = table_of(views)
    return table, pd.Series(target, index=table.index)


def test_learned_ranks_likely_judge_errors_first():
    table, target = _learnable()
    policy = LearnedPolicy(folds=5, repeats=1).fit(table, target)
    scores = policy.scores(table)
    disagree = table["judges_disagree"] == 1
    assert scores[disagree].mean() > scores[~disagree].mean() + 0.3
    assert policy.metrics["oof_auc"] > 0.7
    plan = policy.route(table, 20)
    assert table.loc[plan.human_keys, "judges_disagree"].mean() > 0.9


def test_learned_never_uses_an_items_own_label_for_its_own_score():
    table, target = _learnable()
    base = LearnedPolicy(folds=5, repeats=2, seed=3).fit(table, target).scores(table)
    for key in ("k0", "k1", "k2", "k17"):
        flipped = target.copy()
        flipped[key] = 1.0 - flipped[key]
        again = LearnedPolicy(folds=5, repeats=2, seed=3).fit(table, flipped).scores(table)
        assert again[key] == base[key], key  # its own label changed; its score did not
        # ...while the label does reach other items' models (the test would catch a no-op).
        assert not np.allclose(again.drop(key), base.drop(key))


def test_learned_refuses_to_score_unfitted_or_with_too_few_labels():
    table, target = _learnable(n=8)
    with pytest.raises(InvalidInput, match="no fitted model"):
        LearnedPolicy().scores(table)
    with pytest.raises(InvalidInput, match="at least"):
        LearnedPolicy(folds=5).fit(table, target)
    with pytest.raises(InvalidInput, match="folds"):
        LearnedPolicy(folds=1)
