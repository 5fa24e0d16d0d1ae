import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from routing.router.simulation import reference_of, rows_read, sim_items, simulation_run
from tandem.errors import InvalidInput

from .helpers import parsed, row

FIXTURES = Path(__file__).parent.parent / "fixtures"
# The full PandaLM set ships with the repository (data/pandalm/); a missing file is a failure.
PANDALM = Path(__file__).resolve().parents[2] / "data" / "pandalm" / "pandalm.jsonl"
BUDGETS = [0.1, 0.2, 0.3, 0.5]


def test_reference_is_gold_else_the_human_majority():
    gold, majority, tie, split = parsed(
        [
            row(1, humans=["A", "A", "B"], gold="B"),
            row(2, humans=["B", "A", "B"]),
            row(3, humans=["tie", "tie", "A"]),
            row(4, humans=["A", "B"]),
        ]
    )
    assert reference_of(gold) == ("B", "gold")
    assert reference_of(majority) == ("B", "majority")
    assert reference_of(tie) == ("tie", "majority")
    assert reference_of(split) == (None, "none")


def test_a_person_gives_the_first_human_label_and_the_judge_needs_both_orders():
    items = sim_items(
        parsed(
            [
                row(1, humans=["A", "B", "B"], judges={"g": [("AB", "B"), ("BA", "B")]}),
                row(2, humans=["A"], gold="B", judges={"g": [("AB", "A"), ("BA", "B")]}),
            ]
        ),
        ["g"],
    )
    assert (items[0].reference, items[0].human_label, items[0].judge_label) == ("B", "A", "B")
    assert (items[1].reference, items[1].human_label, items[1].judge_label) == ("B", "B", "tie")


def _rows():
    """10 scored items: the judge is wrong on 0-2 (2 is unparseable), item 3's first human label
    disagrees with the majority; plus 2 left out (a tie reference, no majority)."""
    rows = []
    for i in range(10):
        humans = ["A", "A", "A"]
        judge = "A"
        if i in (0, 1):
            judge = "B"
        if i == 2:
            judge = None
        if i == 3:
            humans = ["B", "A", "A"]
        rows.append(row(i, humans=humans, judges={"g": judge, "p": "A"}))
    rows.append(row(10, humans=["tie", "tie", "A"], judges={"g": "A", "p": "A"}))
    rows.append(row(11, humans=["A", "B"], judges={"g": "A", "p": "A"}))
    return parsed(rows)


def test_baselines_and_counts():
    out = simulation_run(
        _rows(), policy="all_judge", budgets=[0.0, 0.2, 0.3, 0.5, 1.0], judges=["g"]
    )
    assert (out["n_items"], out["n_scored"], out["n_left_out"]) == (12, 10, 2)
    assert out["judges"] == ["g"]
    by_budget = {r["budget"]: r for r in out["results"]}
    assert by_budget[0.0]["all_judge"] == pytest.approx(0.7)
    assert by_budget[0.2]["oracle"] == pytest.approx(0.9)  # items 0 and 1 fixed
    assert by_budget[0.3]["oracle"] == pytest.approx(1.0)  # 0-2 fixed
    # Beyond the judge's errors the oracle can dip: item 3's first human label is wrong (whether
    # item 3 is among the next two depends on the stable hash that orders the rest).
    assert by_budget[0.5]["oracle"] in (pytest.approx(0.9), pytest.approx(1.0))
    assert by_budget[1.0]["oracle"] == pytest.approx(0.9)
    assert by_budget[1.0]["random"] == pytest.approx(0.9)
    assert all(r["agreement"] == pytest.approx(0.7) for r in out["results"])
    assert [r["human_items"] for r in out["results"]] == [0] * 5


def test_judge_uncertainty_and_signals_from_every_judge():
    out = simulation_run(_rows(), policy="judge_uncertainty", budgets=[0.1, 0.3], judges=["g", "p"])
    assert [r["human_items"] for r in out["results"]] == [1, 3]
    assert out["results"][1]["agreement"] == pytest.approx(1.0)  # the three judge errors first
    # With the second judge left out, only the unparseable verdict is a sign.
    alone = simulation_run(_rows(), policy="judge_uncertainty", budgets=[0.1], judges=["g"])
    assert alone["results"][0]["agreement"] == pytest.approx(0.8)


def test_bad_input_is_refused():
    with pytest.raises(InvalidInput, match="budget"):
        simulation_run(_rows(), policy="all_judge", budgets=[1.5], judges=["g"])
    with pytest.raises(InvalidInput, match="no label from judge"):
        simulation_run(_rows(), policy="all_judge", budgets=[0.1], judges=["nobody"])
    with pytest.raises(InvalidInput, match="--train"):
        simulation_run(_rows(), policy="random", budgets=[0.1], judges=["g"], train_rows=_rows())


def test_learned_is_cross_fitted_on_the_sample():
    rows = rows_read(FIXTURES / "pandalm_sample.jsonl")
    out = simulation_run(
        rows,
        policy="learned",
        budgets=BUDGETS,
        judges=["gpt-3.5-turbo", "pandalm-7b"],
        embeddings=False,
    )
    assert out["model"]["trained_on"] == "5-fold cross-fit grouped by prompt"
    assert out["model"]["n_train"] == out["n_scored"]
    for r in out["results"]:
        assert r["all_judge"] <= r["agreement"] <= 1.0


def test_command_writes_json_and_plot(tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    call_command(
        "simulate_routing",
        str(FIXTURES / "pandalm_sample.jsonl"),
        "--policy",
        "judge_uncertainty",
        "--budgets",
        "0.1,0.3",
        "--judge",
        "gpt-3.5-turbo",
        "--judge",
        "pandalm-7b",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
    )
    data = json.loads(out_json.read_text())
    assert set(data) >= {"policy", "judges", "n_items", "n_scored", "results"}
    assert data["n_items"] == 120
    assert set(data["results"][0]) == {
        "budget",
        "agreement",
        "human_items",
        "random",
        "all_judge",
        "oracle",
    }
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert "judge_uncertainty" in capsys.readouterr().out


def test_command_reports_bad_budgets():
    with pytest.raises(CommandError, match="budgets"):
        call_command("simulate_routing", str(FIXTURES / "pandalm_sample.jsonl"), "--budgets", "x")


@pytest.mark.slow
def test_pandalm_figures():
    """The figures of docs/routing.md on PandaLM with identical items kept once (819 scored),
    the same in file order and reversed; learned (cross-fitted in folds grouped by prompt) within
    0.005 of judge_uncertainty at every budget. (Before the grouping the README claimed 0.928 at
    30%: that figure came from twins in other folds carrying an item's own label. The judges'
    rates of the candidates' models, model_pick_*, took it from 0.905 to 0.912.)"""
    rows = rows_read(PANDALM)
    judges = ["gpt-3.5-turbo", "pandalm-7b"]
    common = {"budgets": BUDGETS, "judges": judges, "embeddings": False, "dedupe": True}
    unc = simulation_run(rows, policy="judge_uncertainty", **common)
    assert (unc["n_scored"], unc["n_left_out"], unc["n_duplicates_removed"]) == (819, 81, 99)
    expected = {
        "all_judge": [0.773] * 4,
        "random": [0.793, 0.812, 0.832, 0.872],
        "oracle": [0.867, 0.963, 0.989, 0.982],
        "agreement": [0.834, 0.874, 0.906, 0.930],
    }
    for name, figures in expected.items():
        for r, figure in zip(unc["results"], figures, strict=True):
            assert abs(r[name] - figure) <= 0.0005, (name, r)
    learned = simulation_run(rows, policy="learned", **common)
    assert [r["agreement"] for r in learned["results"]] == pytest.approx(
        [0.846, 0.889, 0.912, 0.933], abs=0.0005
    )
    for lr, ur in zip(learned["results"], unc["results"], strict=True):
        assert lr["agreement"] >= ur["agreement"] - 0.005, (lr, ur)
    backwards = simulation_run(rows[::-1], policy="learned", **common)
    assert backwards["results"] == learned["results"]


@pytest.mark.parametrize("policy", ["all_judge", "random", "judge_uncertainty", "rules", "learned"])
def test_reversed_and_shuffled_copies_give_the_same_figures(policy):
    rows = rows_read(FIXTURES / "pandalm_sample.jsonl")
    shuffled = list(rows)
    random.Random(5).shuffle(shuffled)
    params = {"rules": ["judges_disagree > 0 -> human"]} if policy == "rules" else None
    runs = [
        simulation_run(
            copy,
            policy=policy,
            budgets=BUDGETS,
            judges=["gpt-3.5-turbo", "pandalm-7b"],
            params=params,
            embeddings=False,
        )
        for copy in (rows, rows[::-1], shuffled)
    ]
    assert runs[0]["results"] == runs[1]["results"] == runs[2]["results"]


def test_the_seed_governs_random():
    rows = rows_read(FIXTURES / "pandalm_sample.jsonl")

    def run(seed):
        out = simulation_run(
            rows, policy="random", budgets=[0.3], judges=["gpt-3.5-turbo"], seed=seed
        )
        return out["results"][0]["agreement"]

    assert run(0) == run(0)
    assert len({run(seed) for seed in range(6)}) > 1


def test_train_refuses_a_file_that_shares_prompts():
    rows = rows_read(FIXTURES / "pandalm_sample.jsonl")
    with pytest.raises(InvalidInput, match="shares 120 of the 120"):
        simulation_run(
            rows, policy="learned", budgets=[0.1], judges=["gpt-3.5-turbo"], train_rows=rows
        )
    # One planted copy of an item with another id is enough.
    other = parsed([row(i, humans=["A"] * 3, judges={"gpt-3.5-turbo": "A"}) for i in range(30)])
    with pytest.raises(InvalidInput, match=r"shares [1-9]\d* of the 120 items' prompts"):
        simulation_run(
            rows,
            policy="learned",
            budgets=[0.1],
            judges=["gpt-3.5-turbo"],
            train_rows=[*other, rows[3]],
        )


def test_dedupe_keeps_identical_items_once_whatever_the_order():
    rows = rows_read(FIXTURES / "pandalm_sample.jsonl")
    base = simulation_run(rows, policy="all_judge", budgets=[0.1], dedupe=True)
    assert base["n_duplicates_removed"] >= 1  # the sample has identical pairs of its own
    twin = replace(rows[0], external_id="zz-twin")
    for copy in ([*rows, twin], [twin, *rows][::-1]):
        out = simulation_run(copy, policy="all_judge", budgets=[0.1], dedupe=True)
        assert out["n_duplicates_removed"] == base["n_duplicates_removed"] + 1
        assert out["n_items"] == base["n_items"] and out["results"] == base["results"]


def test_params_go_to_their_policy_or_are_refused_when_ambiguous(tmp_path):
    sample = str(FIXTURES / "pandalm_sample.jsonl")
    with pytest.raises(CommandError, match="say which one"):
        call_command(
            "simulate_routing", sample, "--policy", "random,judge_uncertainty", "--params", "{}"
        )
    out_json = tmp_path / "r.json"
    call_command(
        "simulate_routing",
        sample,
        "--policy",
        "random,judge_uncertainty",
        "--budgets",
        "0.3",
        "--params",
        'random={"fraction": 0.1}',
        "--params",
        'judge_uncertainty={"only_uncertain": true}',
        "--json",
        str(out_json),
    )
    random_run, uncertainty_run = json.loads(out_json.read_text())
    assert random_run["results"][0]["human_items"] == 12  # the fraction, not the budget
    assert uncertainty_run["results"][0]["human_items"] < 36
    with pytest.raises(CommandError, match="not among"):
        call_command("simulate_routing", sample, "--policy", "random", "--params", 'x={"a": 1}')
