"""bench/data/llmbar.jsonl (LLMBar converted by bench/convert_llmbar.py) parses as rows and has the
shape bench/data/README.md describes; the carry-over figures of docs/routing.md when PandaLM is
here."""

import json
from collections import Counter
from pathlib import Path

import pytest

from routing.router.simulation import rows_read, simulation_run

from .test_simulation import BUDGETS, PANDALM

LLMBAR = Path(__file__).resolve().parents[2] / "bench" / "data" / "llmbar.jsonl"
JUDGES = ["gpt-3.5-turbo", "gpt-4"]


@pytest.fixture(scope="module")
def rows():
    return rows_read(LLMBAR)


def test_the_file_parses_with_the_expected_counts(rows):
    assert len(rows) == 419
    raw = [json.loads(line) for line in LLMBAR.read_text().splitlines()]
    assert len({r["external_id"] for r in raw}) == 419
    assert Counter(r["metadata"]["subset"] for r in raw) == {
        "natural": 100,
        "neighbor": 134,
        "gptinst": 92,
        "gptout": 47,
        "manual": 46,
    }
    assert Counter(r["gold"] for r in raw) == {"A": 206, "B": 213}
    assert all(r["metadata"]["dataset"] == "llmbar" for r in raw)
    assert all(len(r["candidates"]) == 2 for r in raw)


def test_every_item_has_both_judges_in_both_orders(rows):
    for row in rows:
        seen = Counter((label.judge, label.order) for label in row.labels)
        assert seen == {(j, o): 1 for j in JUDGES for o in ("AB", "BA")}, row.external_id
        assert all(label.source == "judge" for label in row.labels)
        assert all(label.payload.get("choice") in ("A", "B") for label in row.labels)


def test_a_few_rows_match_the_source(rows):
    by_id = {row.external_id: row for row in rows}

    def verdicts(row):
        return {(lb.judge, lb.order): lb.payload["choice"] for lb in row.labels}

    # Manual item 0 (Lua): label 2; ChatGPT answered "Output (a)" in both orders (winner 1, then
    # 2), GPT-4 chose output 2 both times.
    lua = by_id["llmbar-manual-0"]
    assert lua.prompt == "What is the programing language lua used for?"
    assert lua.gold == "B"
    assert verdicts(lua) == {
        ("gpt-3.5-turbo", "AB"): "A",
        ("gpt-3.5-turbo", "BA"): "B",
        ("gpt-4", "AB"): "B",
        ("gpt-4", "BA"): "B",
    }
    # Manual item 5: label 2; ChatGPT chose output 1 in both orders, GPT-4 output 2.
    poverty = by_id["llmbar-manual-5"]
    assert poverty.candidates[1].text == "It is India."
    assert verdicts(poverty)[("gpt-3.5-turbo", "BA")] == "A"
    assert verdicts(poverty)[("gpt-4", "AB")] == "B"


def test_judge_accuracy_and_order_consistency_match_the_readme(rows):
    for judge, accuracy, consistent in (("gpt-3.5-turbo", 0.400, 0.611), ("gpt-4", 0.765, 0.912)):
        right = agree = 0
        for row in rows:
            verdict = {lb.order: lb.payload["choice"] for lb in row.labels if lb.judge == judge}
            right += (verdict["AB"] == row.gold) + (verdict["BA"] == row.gold)
            agree += verdict["AB"] == verdict["BA"]
        assert round(right / (2 * len(rows)), 3) == accuracy
        assert round(agree / len(rows), 3) == consistent


@pytest.mark.slow
@pytest.mark.skipif(not PANDALM.exists(), reason="the full PandaLM file is not here")
def test_learned_fitted_on_pandalm_beats_random_on_llmbar(rows):
    run = simulation_run(
        rows,
        policy="learned",
        budgets=BUDGETS,
        judges=JUDGES,
        train_rows=rows_read(PANDALM),
        train_judges=["gpt-3.5-turbo", "pandalm-7b"],
        embeddings=False,
    )
    assert run["n_scored"] == 419
    for r in run["results"]:
        assert r["agreement"] > r["random"], r


@pytest.mark.slow
@pytest.mark.skipif(not PANDALM.exists(), reason="the full PandaLM file is not here")
def test_with_gpt4_labelling_the_slice_reverses_the_weaker_judges_disagreement(rows):
    """gpt-4 labels, gpt-3.5-turbo advises: the other judge disagreeing marks gpt-4's right
    verdicts. The calibration slice shows it, the signal is reversed and the transferred policy
    beats random at every budget (docs/routing.md); with the prior weights it did not at 50%."""
    common = {"budgets": BUDGETS, "judges": JUDGES[::-1], "embeddings": False, "dedupe": True}
    run = simulation_run(
        rows,
        policy="learned",
        train_rows=rows_read(PANDALM),
        train_judges=["gpt-3.5-turbo", "pandalm-7b"],
        **common,
    )
    signals = {c["signal"]: c for c in run["model"]["calibration"]["signals"]}
    assert signals["disagree"]["reversed"] and not signals["inconclusive"]["reversed"]
    assert [r["agreement"] for r in run["results"]] == pytest.approx(
        [0.814, 0.862, 0.904, 0.955], abs=0.0005
    )
    for r in run["results"]:
        assert r["agreement"] > r["random"], r
    prior = simulation_run(rows, policy="judge_uncertainty", **common)
    assert prior["results"][-1]["agreement"] < prior["results"][-1]["random"]


def test_the_converter_maps_orders_and_winners(tmp_path):
    import importlib.util

    path = LLMBAR.parents[1] / "convert_llmbar.py"
    spec = importlib.util.spec_from_file_location("convert_llmbar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    item = {"input": "q", "output_1": "one", "output_2": "two", "label": 2}
    verdicts = {
        "ChatGPT": {"swap = False": {"winner": "1"}, "swap = True": {"winner": "2"}},
        "GPT-4": {"swap = False": {"winner": "2"}, "swap = True": {"winner": "tie?"}},
    }
    for evaluator, run in verdicts.items():
        folder = tmp_path / "Dataset/LLMBar/Natural/evaluators" / evaluator / "Vanilla_NoRules"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps([{**item, "results": [run]}]))
    (row,) = module.convert(tmp_path, ["natural"])
    assert row["external_id"] == "llmbar-natural-0"
    assert row["gold"] == "B"
    assert [c["text"] for c in row["candidates"]] == ["one", "two"]
    assert [(lb["judge"], lb["order"], lb["choice"]) for lb in row["labels"]] == [
        ("gpt-3.5-turbo", "AB", "A"),
        ("gpt-3.5-turbo", "BA", "B"),
        ("gpt-4", "AB", "B"),
        ("gpt-4", "BA", None),
    ]
