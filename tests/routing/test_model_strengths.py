"""The judges' rates of the candidates' models (``model_pick_*``): worked values, the thresholds,
and the live query giving what the simulation computes from the same items."""

import math

import numpy as np
import pandas as pd
import pytest

from annotation.models import Annotation, Candidate
from routing.router import fitting, route
from routing.router.features import (
    MIN_MODEL_ANSWERS,
    MODEL_FEATURES,
    answers_of_views,
    model_rates,
    with_model_strengths,
)
from routing.router.model_answers import model_answers
from tests.factories import AnnotationFactory, ProjectFactory

from .factories import item_with_labels

RATES = {"g": {"m1": 0.8, "m2": 0.3, "m3": 0.5}, "p": {"m1": 0.6, "m2": 0.4}}


def _verdicts(*choices: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "primary_a": [float(c == "A") for c in choices],
            "primary_b": [float(c == "B") for c in choices],
        },
        index=[f"k{i}" for i in range(len(choices))],
    )


def test_the_pick_is_rated_against_the_model_not_picked():
    table = _verdicts("A", "B", "A", "tie", "A", "A")
    models = {
        "k0": ["m1", "m2"],
        "k1": ["m1", "m2"],
        "k2": ["m1", "m3"],  # the other judge has no rate for m3
        "k3": ["m1", "m2"],  # a tie: no pick
        "k4": ["", "m2"],  # an unnamed model
    }  # k5: no models known
    out = with_model_strengths(table, models, RATES, ["g", "p"])
    assert out.loc["k0", "model_pick_primary"] == pytest.approx(0.5)
    assert out.loc["k0", "model_pick_others"] == pytest.approx(0.2)
    assert out.loc["k1", "model_pick_primary"] == pytest.approx(-0.5)  # picked the usual loser
    assert out.loc["k1", "model_pick_others"] == pytest.approx(-0.2)
    assert out.loc["k1", "model_pick_gap"] == pytest.approx(0.5)
    assert out.loc["k2", "model_pick_primary"] == pytest.approx(0.3)
    assert math.isnan(out.loc["k2", "model_pick_others"])
    for key in ("k3", "k4", "k5"):
        assert out.loc[key, list(MODEL_FEATURES)].isna().all(), key
    # No rates (no named models, or too few answers): the columns are left out altogether.
    assert list(with_model_strengths(table, models, {}, ["g"]).columns) == list(table.columns)


def test_a_rate_needs_enough_decisive_answers_on_named_models():
    enough, few = MIN_MODEL_ANSWERS, MIN_MODEL_ANSWERS - 1
    answers = pd.DataFrame(
        [
            ("g", "m1", 10, enough - 5),
            ("g", "m1", 5, 5),  # rows of one (judge, model) add up
            ("g", "m2", 1, few),
            ("g", "", 20, 40),
        ],
        columns=["judge", "model", "wins", "seen"],
    )
    assert model_rates(answers) == {"g": {"m1": 15 / enough}}
    assert model_rates(answers.iloc[:0]) == {}


def _named(item, *models: str) -> None:
    for position, model in enumerate(models):
        Candidate.objects.filter(item=item, position=position).update(model=model)


@pytest.mark.django_db
def test_the_projects_answers_are_the_simulations_on_the_same_items():
    project = ProjectFactory()
    rng = np.random.default_rng(3)
    items = []
    for i in range(30):
        pair = [("m1", "m2"), ("m2", "m3"), ("m3", "m1")][i % 3]
        judges = {
            "g": [
                ("AB", str(rng.choice(["A", "B"])), None),
                ("BA", "tie" if i % 4 == 0 else "A", None),
            ],
            "p": str(rng.choice(["A", "B"])),
            "elsewhere": "A",  # a judge the policy does not name
        }
        item = item_with_labels(project, humans=["A"], judges=judges)
        _named(item, *pair)
        items.append(item)
    _named(items[0], "", "m2")  # an unnamed model: no rate of its own
    # A corrected answer: only the correction counts.
    old = items[1].annotations.get(judge="p")
    AnnotationFactory(
        item=items[1],
        source=Annotation.Source.JUDGE,
        judge="p",
        payload={"choice": "B" if old.payload["choice"] == "A" else "A"},
        supersedes=old,
    )
    live = model_answers(project=project, judges=["g", "p"])
    views = [route.item_view(item) for item in route.items_loaded(items)]
    offline = answers_of_views(views)
    offline = offline[offline["judge"].isin(["g", "p"])]

    def totals(frame):
        return frame.groupby(["judge", "model"])[["wins", "seen"]].sum().astype(int)

    pd.testing.assert_frame_equal(totals(live), totals(offline))
    assert totals(live).loc[("p", "m1"), "seen"] == 19  # 20 pairs with m1, one renamed
    assert totals(live).loc[("p", ""), "seen"] == 1  # counted, and dropped by model_rates
    assert model_rates(live) == model_rates(offline)


def _strong_and_weak(project, n: int = MIN_MODEL_ANSWERS) -> list:
    """Pairs of "strong" (A) and "weak" (B): judge g picks "strong" on 3 of 4."""
    items = []
    for i in range(n):
        item = item_with_labels(project, humans=["A"] * 3, judges={"g": "A" if i % 4 else "B"})
        _named(item, "strong", "weak")
        items.append(item)
    return items


@pytest.mark.django_db
def test_rules_read_the_projects_rates_now():
    project = ProjectFactory()
    route.routing_policy_set(
        project=project,
        name="rules",
        judges=["g"],
        params={"rules": ["model_pick_primary < 0 -> human"]},
        calibration_share=0.0,
    )
    items = _strong_and_weak(project)
    config = route.routing_policy_get(project=project)
    ids = [item.pk for item in items]
    plan, _, table = route._plan(config, ids, None, project.pk)
    # g picks "strong" on 15 of 20 pairs: 0.75 against 0.25.
    assert table["model_pick_primary"].iloc[1] == pytest.approx(0.5)
    assert table["model_pick_primary"].iloc[0] == pytest.approx(-0.5)
    assert table["model_pick_others"].isna().all()  # no other judge
    picked_weak = [item.pk for i, item in enumerate(items) if i % 4 == 0]
    assert sorted(plan.index[plan["target"] == "human"]) == picked_weak


@pytest.mark.django_db
def test_other_policies_do_not_aggregate_the_project(django_assert_num_queries):
    project = ProjectFactory()
    route.routing_policy_set(project=project, name="judge_uncertainty", judges=["g"])
    _strong_and_weak(project)
    config = route.routing_policy_get(project=project)
    built = route._policy_built(config)
    with django_assert_num_queries(0):
        assert route._model_rates_for(config, built) == {}


@pytest.mark.django_db
def test_a_fitted_model_routes_with_the_rates_it_was_fitted_with(settings):
    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 10, "folds": 4}
    project = ProjectFactory()
    route.routing_policy_set(project=project, name="learned", judges=["g"], calibration_share=1.0)
    _strong_and_weak(project, 40)
    route.project_route(project=project)
    model = fitting.router_model_train(project=project)
    assert model is not None and "model_pick_primary" in model.metrics["features"]
    config = route.routing_policy_get(project=project)
    built = route._policy_built(config)
    assert built.policy.model_rates == {"g": {"strong": 0.75, "weak": 0.25}}
    # Verdicts that came after the fit do not change what routing reads until the next fit.
    for _ in range(MIN_MODEL_ANSWERS):
        _named(item_with_labels(project, judges={"g": "B"}), "strong", "weak")
    assert route._model_rates_for(config, built) == {"g": {"strong": 0.75, "weak": 0.25}}
