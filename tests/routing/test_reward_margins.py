"""A reward model's margins as router features: the rm_* columns, rules and the learned policy
on them, the stored margins (idempotent writes, replaced on registering again), and
``simulate_routing --rm-scores``."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from annotation.models import Item
from routing.router import fitting, reward_margins, route
from routing.router.features import ItemView, JudgeLabel, features_table, with_reward_margins
from routing.router.models import ItemRewardMargin, RewardFeature, RoutingDecision
from routing.router.policies import LearnedPolicy, policy_build
from routing.router.simulation import rm_scores_read, rows_read, simulation_run
from tandem.errors import InvalidInput
from tests.factories import ProjectFactory

from .factories import item_with_labels

FIXTURES = Path(__file__).parent.parent / "fixtures"
JUDGES = ["gpt-3.5-turbo", "pandalm-7b"]


def _views():
    return [
        ItemView(key="a", prompt="p", candidates=["x", "y"], judge_labels=[JudgeLabel("g", "A")]),
        ItemView(key="b", prompt="p", candidates=["x", "y"], judge_labels=[JudgeLabel("g", "B")]),
        ItemView(key="t", prompt="p", candidates=["x", "y"], judge_labels=[JudgeLabel("g", "tie")]),
        ItemView(key="n", prompt="p", candidates=["x", "y"], judge_labels=[JudgeLabel("g", "A")]),
    ]


def test_the_margin_becomes_its_size_and_its_side_of_the_judge():
    table = features_table(_views(), ["g"], embeddings=False, language=False)
    out = with_reward_margins(table, pd.Series({"a": -2.0, "b": -2.0, "t": 0.3}))
    assert out["rm_margin"].tolist()[:3] == [2.0, 2.0, 0.3]
    # Judge picked A, the model prefers B: it disagrees (negative); judge B: it agrees.
    assert out.loc["a", "rm_vs_primary"] == -2.0 and out.loc["b", "rm_vs_primary"] == 2.0
    assert math.isnan(out.loc["t", "rm_vs_primary"])  # a judge tie has no side
    assert out.loc["n", ["rm_margin", "rm_vs_primary"]].isna().all()  # not scored
    assert "rm_margin" not in with_reward_margins(table, None)  # no model: no columns


def test_rules_threshold_rm_margin_and_a_missing_margin_never_matches():
    table = with_reward_margins(
        features_table(_views(), ["g"], embeddings=False, language=False),
        pd.Series({"a": 0.1, "b": 3.0, "t": -0.2}),
    )
    low = policy_build(name="rules", params={"rules": ["rm_margin < 0.5 -> human"]})
    plan = low.route(table, budget=10)
    assert set(plan.human_keys) == {"a", "t"}  # "n" has no margin: not matched
    other = policy_build(name="rules", params={"rules": ["rm_margin != 3 -> human"]})
    assert set(other.route(table, budget=10).human_keys) == {"a", "t"}
    against = policy_build(name="rules", params={"rules": ["rm_vs_primary < 0 -> human"]})
    assert set(against.route(table, budget=10).human_keys) == {"b"}  # B judged, A preferred
    # Without a reward model the rule is valid and matches nothing.
    bare = features_table(_views(), ["g"], embeddings=False, language=False)
    assert low.route(bare, budget=10).human_keys == []
    with pytest.raises(InvalidInput, match="unknown field 'rm_marg'"):
        policy_build(name="rules", params={"rules": ["rm_marg < 0.5 -> human"]})


def _learned_table(n=300, rm=True, seed=0):
    """Judge wrong exactly when the reward model disagrees with it: a signal only rm carries."""
    rng = np.random.default_rng(seed)
    views, margins, target = [], {}, {}
    for i in range(n):
        wrong = i % 4 == 0
        key = f"k{i}"
        views.append(ItemView(key=key, prompt=f"prompt {i}", candidates=["same text", "same text"]))
        views[-1].judge_labels = [JudgeLabel("g", "A")]
        margins[key] = (-1 if wrong else 1) * float(rng.uniform(0.5, 2.0))
        target[key] = 1.0 if wrong else 0.0
    table = features_table(views, ["g"], embeddings=False, language=False)
    if rm:
        margins[views[1].key] = math.nan  # a missing margin is imputed, not an error
        table = with_reward_margins(table, pd.Series(margins))
    return table, pd.Series(target)


def test_the_learned_policy_uses_the_margin_when_present():
    table, target = _learned_table()
    policy = LearnedPolicy(folds=4, repeats=1).fit(table, target, full_model=False)
    assert {"rm_margin", "rm_vs_primary"} <= set(policy.features_used)
    assert policy.choice in ("logistic", "boosting") and policy.metrics["oof_auc"] > 0.95
    bare, target = _learned_table(rm=False)
    without = LearnedPolicy(folds=4, repeats=1).fit(bare, target, full_model=False)
    assert "rm_margin" not in without.features_used
    assert without.metrics["oof_auc"] < 0.7  # nothing else tells the judge's errors apart
    dropped = LearnedPolicy(folds=4, repeats=1, drop=["reward_model"])
    assert "rm_margin" not in dropped.fit(table, target, full_model=False).features_used


# --- stored margins and the live router --------------------------------------------------


def _register(project, key="training-job-1"):
    return reward_margins.reward_feature_register(
        project=project, model_key=key, training_job_id=1, description="test model"
    )


@pytest.mark.django_db
def test_margins_upsert_count_and_a_replaced_registration_writes_nothing():
    project = ProjectFactory()
    items = [item_with_labels(project, judges={"g": "A"}) for _ in range(3)]
    feature = _register(project)
    assert feature.status == "scoring" and feature.total == 3
    assert reward_margins.items_unscored(feature=feature) == [i.pk for i in items]
    assert reward_margins.reward_margins_write(feature=feature, margins={items[0].pk: 1.0})
    # The same batch again (a retried task) overwrites: one row per item and model.
    assert reward_margins.reward_margins_write(
        feature=feature, margins={items[0].pk: 2.0, items[1].pk: -1.0}
    )
    assert ItemRewardMargin.objects.count() == 2
    assert RewardFeature.objects.get().scored == 2
    assert reward_margins.items_unscored(feature=feature) == [items[2].pk]
    got = reward_margins.reward_margins_get(project=project, item_ids=[i.pk for i in items])
    assert got.tolist()[:2] == [2.0, -1.0] and math.isnan(got.iloc[2])
    # Registering another model clears the margins; the first model's scorer is then refused.
    other = _register(project, key="training-job-2")
    assert not ItemRewardMargin.objects.exists() and other.pk == feature.pk
    assert not reward_margins.reward_margins_write(feature=feature, margins={items[2].pk: 1.0})
    assert reward_margins.reward_feature_finish(feature=feature) is None
    assert reward_margins.reward_feature_finish(feature=other).status == "ready"
    assert reward_margins.reward_margins_get(project=ProjectFactory(), item_ids=[1]) is None


@pytest.mark.django_db
def test_the_router_sends_items_with_a_small_margin_to_people():
    project = ProjectFactory()
    route.routing_policy_set(
        project=project,
        name="rules",
        params={"rules": ["rm_margin < 0.5 -> human"]},
        budget_fraction=1.0,
        calibration_share=0,
    )
    close, clear, unscored = (item_with_labels(project, judges={"g": "A"}) for _ in range(3))
    feature = _register(project)
    reward_margins.reward_margins_write(feature=feature, margins={close.pk: -0.2, clear.pk: 4.0})
    route.project_route(project=project)
    routes = dict(Item.objects.values_list("pk", "route"))
    assert routes[close.pk] == "human"
    assert routes[clear.pk] == "judge" and routes[unscored.pk] == "judge"
    decision = RoutingDecision.objects.get(item=close)
    assert "rule 1 (rm_margin < 0.5 -> human)" in decision.reason


@pytest.mark.django_db
def test_the_live_learned_model_is_fitted_with_the_margins(settings):
    """Calibration items whose judge is wrong exactly where the reward model disagrees."""
    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 10, "folds": 4}
    project = ProjectFactory()
    route.routing_policy_set(
        project=project,
        name="learned",
        judges=["g"],
        budget_fraction=0.5,
        calibration_share=1.0,
        params={"repeats": 1},
    )
    items, margins = [], {}
    for i in range(80):
        wrong = i % 3 == 0
        item = item_with_labels(project, humans=["B" if wrong else "A"] * 3, judges={"g": "A"})
        items.append(item)
        margins[item.pk] = -1.5 if wrong else 1.5
    route.project_route(project=project)
    feature = _register(project)
    reward_margins.reward_margins_write(feature=feature, margins=margins)
    table, *_ = fitting.training_set(project=project, judges=["g"])
    assert table.loc[items[0].pk, "rm_vs_primary"] == -1.5
    model = fitting.router_model_train(project=project)
    policy = route._policy_built(route.routing_policy_get(project=project)).policy
    assert "rm_vs_primary" in policy.features_used
    assert model.metrics["oof_auc"] > 0.95


@pytest.mark.django_db
def test_the_routing_page_shows_the_registered_model(client, manager, project):
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/routing/").content.decode()
    assert 'id="reward-feature"' in page and "Use for routing" in page
    feature = _register(project, key="training-job-7")
    RewardFeature.objects.filter(pk=feature.pk).update(training_job_id=7, scored=0, total=5)
    page = client.get(f"/projects/{project.pk}/routing/").content.decode()
    assert "test model" in page and "0 of 5 items scored" in page
    assert f"/projects/{project.pk}/training-jobs/7/" in page


# --- simulate_routing --rm-scores --------------------------------------------------------


def _scores_file(tmp_path, lines: list[str]) -> Path:
    path = tmp_path / "scores.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ('["pandalm-0", 1]', "line 2: expected an object"),
        ('{"external_id": "pandalm-1", "rm_margin": "big"}', "line 2: rm_margin must be a number"),
        ('{"external_id": "pandalm-1", "rm_margin": NaN}', "line 2: rm_margin must be finite"),
        ('{"rm_margin": 1}', "line 2: external_id must be non-empty text"),
        ('{"external_id": "nowhere-9", "rm_margin": 1}', "'nowhere-9' is not in the items' file"),
        ('{"external_id": "X", "rm_margin": 1}', "line 2: external_id '[^']+' given twice"),
    ],
)
def test_bad_score_lines_are_named_with_their_number(tmp_path, line, message):
    rows = rows_read(FIXTURES / "pandalm_sample.jsonl")
    first = rows[0].external_id
    line = line.replace('"X"', json.dumps(first))
    path = _scores_file(tmp_path, [json.dumps({"external_id": first, "rm_margin": 0.5}), line])
    with pytest.raises(InvalidInput, match=message):
        rm_scores_read(path, rows)


def test_the_command_adds_the_margins_and_reports_bad_files(tmp_path, capsys):
    sample = FIXTURES / "pandalm_sample.jsonl"
    rows = rows_read(sample)
    # Margins that side against the primary judge exactly where it is wrong (an oracle-like
    # reward model): the learned policy must find the judge's errors with them.
    items = {it.external_id: it for it in rows}
    from routing.router.simulation import sim_items

    lines = []
    for it in sim_items(rows, JUDGES):
        if it.judge_label not in ("A", "B"):
            continue
        agrees = it.judge_label == it.reference
        picked_a = it.judge_label == "A"
        margin = (1.0 if agrees else -1.0) * (1.0 if picked_a else -1.0)
        lines.append(json.dumps({"external_id": it.view.key, "rm_margin": margin}))
    assert set(json.loads(line)["external_id"] for line in lines) <= set(items)
    path = _scores_file(tmp_path, lines)
    common = ["--policy", "learned", "--budgets", "0.2", "--no-embeddings", "--seed", "0"]
    with_rm = simulation_run(
        rows,
        policy="learned",
        budgets=[0.2],
        judges=JUDGES,
        embeddings=False,
        rm_margins=rm_scores_read(path, rows),
    )
    without = simulation_run(rows, policy="learned", budgets=[0.2], judges=JUDGES, embeddings=False)
    assert with_rm["results"][0]["agreement"] > without["results"][0]["agreement"]
    out = tmp_path / "r.json"
    call_command(
        "simulate_routing", str(sample), *common, "--rm-scores", str(path), "--json", str(out)
    )
    assert json.loads(out.read_text())["results"] == with_rm["results"]
    bad = _scores_file(tmp_path, ['{"external_id": "nope", "rm_margin": 1}'])
    with pytest.raises(CommandError, match=r"scores\.jsonl, line 1: external_id 'nope'"):
        call_command("simulate_routing", str(sample), *common, "--rm-scores", str(bad))
