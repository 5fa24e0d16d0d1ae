import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from annotation.models import Item
from routing.router import fitting, route
from routing.router.models import ItemFeatures, RouterModel, RoutingBudget, RoutingDecision
from tandem.errors import InvalidInput
from tests.factories import ItemFactory, ProjectFactory

from .factories import item_with_labels


def test_policy_set_validates_and_versions(project):
    policy = route.routing_policy_set(project=project, name="all_human", budget_count=3)
    assert policy.version == 1
    with pytest.raises(ValidationError) as info:
        route.routing_policy_set(
            project=project, name="rules", params={"rules": ["metadata.x === 1 -> human"]}
        )
    assert "rule 1: value" in str(info.value.message_dict["params"])
    with pytest.raises(ValidationError, match="fraction or as a count"):
        route.routing_policy_set(project=project, budget_fraction=0.5)
    with pytest.raises(InvalidInput, match="name the routing policy"):
        route.routing_policy_set(project=ProjectFactory(), budget_count=3)
    again = route.routing_policy_set(project=project, name="random", params={"fraction": 0.5})
    assert (again.pk, again.version) == (policy.pk, 2)


def test_route_records_decisions_and_never_exceeds_the_budget(project):
    items = [ItemFactory(project=project) for _ in range(6)]
    route.routing_policy_set(project=project, name="all_human", budget_count=4, calibration_share=0)
    result = route.project_route(project=project)
    assert result.counts() == {"human": 4, "judge": 2, "both": 0}
    decisions = list(RoutingDecision.objects.filter(project=project).order_by("item_id"))
    # Equal scores: a stable hash of the item decides which four (not the table's order).
    assert sorted(d.target for d in decisions) == ["human"] * 4 + ["judge"] * 2
    first = next(d for d in decisions if d.target == "human")
    last = next(d for d in decisions if d.target == "judge")
    assert first.policy_name == "all_human" and first.policy_version == 1
    state = first.budget_state
    assert state["limit"] == 4 and state["spent_after"] == state["spent_before"] + 1
    assert "within budget" in first.reason
    assert "budget is spent" in last.reason
    assert "a_tokens" in first.features
    for decision in decisions:
        assert Item.objects.get(pk=decision.item_id).route == decision.target
    assert {d.item_id for d in decisions} == {i.pk for i in items}
    assert RoutingBudget.objects.get(project=project).spent == 4
    # Routed items are not routed twice; new items find the budget spent.
    ItemFactory(project=project)
    assert route.project_route(project=project).counts() == {"human": 0, "judge": 1, "both": 0}
    assert RoutingBudget.objects.get(project=project).spent == 4


def test_no_policy_is_an_error(project):
    ItemFactory(project=project)
    with pytest.raises(InvalidInput, match="no routing policy"):
        route.project_route(project=project)


def test_calibration_slice_goes_to_both_and_is_stable(project):
    items = [ItemFactory(project=project) for _ in range(40)]
    route.routing_policy_set(
        project=project, name="all_judge", judges=["g"], budget_fraction=0.5, calibration_share=0.25
    )
    route.project_route(project=project)
    both = set(
        RoutingDecision.objects.filter(project=project, target="both").values_list(
            "item_id", flat=True
        )
    )
    expected = {i.pk for i in items if route.is_calibration(i, 0.25)}
    assert both == expected and 3 <= len(both) <= 20
    assert all(d.calibration for d in RoutingDecision.objects.filter(item_id__in=both))


def test_judge_first_then_explicit_reroute(project):
    route.routing_policy_set(
        project=project,
        name="judge_uncertainty",
        judges=["g", "p"],
        budget_count=1,
        calibration_share=0,
        params={"only_uncertain": True},
    )
    sure = ItemFactory(project=project)
    unsure = ItemFactory(project=project)
    route.project_route(project=project)
    first = RoutingDecision.objects.get(item=unsure)
    assert first.target == "judge" and "waiting for the judge" in first.reason
    # The judge answers: split orders on one item, a clear verdict on the other.
    from tests.factories import AnnotationFactory

    for order, choice in (("AB", "A"), ("BA", "B")):
        AnnotationFactory(
            item=unsure, source="judge", judge="g", order=order, payload={"choice": choice}
        )
    for order in ("AB", "BA"):
        AnnotationFactory(
            item=sure, source="judge", judge="g", order=order, payload={"choice": "B"}
        )
    result = route.items_reroute(project=project, item_ids=[sure.pk, unsure.pk])
    assert result.counts() == {"human": 1, "judge": 1, "both": 0}
    second = RoutingDecision.objects.get(item=unsure, superseded_by__isnull=True)
    assert second.kind == "reroute" and second.supersedes == first
    assert second.target == "human" and second.reason.startswith("re-routed after judge results")
    assert second.features["primary_order_disagree"] == 1.0
    assert Item.objects.get(pk=unsure.pk).route == "human"
    assert Item.objects.get(pk=sure.pk).route == "judge"
    # Features were recomputed once the judge labels changed, not silently reused.
    assert ItemFeatures.objects.get(item=unsure).values["primary_order_disagree"] == 1.0


def test_rules_route_by_metadata(project):
    route.routing_policy_set(
        project=project,
        name="rules",
        params={"rules": ["metadata.domain == 'medical' -> human"]},
        budget_fraction=1.0,
        calibration_share=0,
    )
    med = ItemFactory(project=project, metadata={"domain": "medical"})
    chat = ItemFactory(project=project, metadata={"domain": "chat"})
    route.project_route(project=project)
    assert Item.objects.get(pk=med.pk).route == "human"
    assert Item.objects.get(pk=chat.pk).route == "judge"
    assert "rule 1" in RoutingDecision.objects.get(item=med).reason


def test_dry_run_counts_without_writing(project):
    for _ in range(10):
        ItemFactory(project=project)
    route.routing_policy_set(
        project=project, name="all_judge", judges=["g"], budget_count=3, calibration_share=0
    )
    out = route.routing_dry_run(project=project, name="all_human", params={})
    assert out["targets"] == {"human": 3, "judge": 7, "both": 0}
    assert not RoutingDecision.objects.exists()
    assert not Item.objects.exclude(route="unrouted").exists()


LONG_A = ["a long first answer that goes on and on with many words", "short"]
SHORT_A = ["brief", "a second answer of middling length"]


def _learned_project(n=80, *, signal="length", params=None):
    """A project where the judge is wrong exactly when the first answer is the long one (a signal
    only a model sees), or (``signal="disagree"``) when the two judges disagree (one that judge
    uncertainty sees already), or (``"disagree_wrong_way"``) never where the other judge
    disagrees (a weaker judge advising: judge uncertainty's prior points the wrong way)."""
    project = ProjectFactory()
    route.routing_policy_set(
        project=project,
        name="learned",
        judges=["g", "p"],
        budget_fraction=0.5,
        calibration_share=1.0,
        params={"repeats": 1, **(params or {})},
    )
    items = []
    for i in range(n):
        wrong = i % 3 == 0
        if signal == "length":
            judges, candidates = {"g": "A", "p": "A"}, LONG_A if wrong else SHORT_A
        elif signal == "disagree_wrong_way":
            judges, candidates = {"g": "A", "p": "B" if i % 3 == 1 else "A"}, None
        else:
            judges, candidates = {"g": "A", "p": "B" if wrong else "A"}, None
        items.append(
            item_with_labels(
                project,
                humans=["B" if wrong else "A"] * 3,
                judges=judges,
                candidates=candidates,
            )
        )
    route.project_route(project=project)  # every item is calibration: both
    return project, items


@pytest.mark.django_db
def test_learned_model_trains_on_calibration_and_keeps_items_own_label_out(settings):
    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 10, "folds": 4}
    project, items = _learned_project(150)
    assert fitting.router_model_retrain_due(project=project)
    model = fitting.router_model_train(project=project)
    assert model.version == 1 and model.n_train == 150
    assert model.metrics["oof_auc"] > 0.9
    assert model.metrics["model"] in ("logistic", "boosting")
    assert model.metrics["n_groups"] == 150  # every item its own prompt
    assert model.metrics["expected_agreement"]
    built = route._policy_built(route.routing_policy_get(project=project))
    policy = built.policy
    assert built.model_version == 1
    # Every training item is scored only by the fold model that did not see it.
    assert set(policy.fold_by_key.index) == {i.pk for i in items}
    table, *_ = fitting.training_set(project=project, judges=["g", "p"])
    scores = policy.scores(table)
    design = policy._design(table)
    for position, key in enumerate(list(table.index)[:5]):
        fold = int(policy.fold_by_key.loc[key, 0])
        own = policy.models[0][fold].predict(design[[position]])[0]
        assert scores[key] == pytest.approx(own)
    expected = fitting.project_expected_agreement(project=project)
    assert expected["budget"] == 0.5 and 0 <= expected["agreement"] <= 1


@pytest.mark.django_db
def test_learned_falls_back_to_judge_uncertainty_and_says_so(settings):
    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 10, "folds": 4}
    project, _ = _learned_project(90, signal="disagree")
    model = fitting.router_model_train(project=project)
    assert model.metrics["model"] == "judge_uncertainty"
    route.routing_policy_set(project=project, calibration_share=0, budget_fraction=None)
    split = item_with_labels(project, judges={"g": "A", "p": "B"})
    agree = item_with_labels(project, judges={"g": "A", "p": "A"})
    route.project_route(project=project, item_ids=[split.pk, agree.pk])
    decision = RoutingDecision.objects.get(item=split)
    assert decision.target == "human"
    assert "did not show that a model beats it" in decision.reason


@pytest.mark.django_db
def test_the_live_fallback_reverses_a_signal_its_calibration_labels_show_pointing_wrong(settings):
    """A project's first calibration labels show that "the other judge disagrees" marks items
    where the judge is right: the fitted policy (judge uncertainty, as nothing else is allowed)
    reverses that signal, sends the agreeing item to people first and says why."""
    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 10, "folds": 4}
    project, _ = _learned_project(
        90, signal="disagree_wrong_way", params={"models": ["judge_uncertainty"]}
    )
    model = fitting.router_model_train(project=project)
    assert model.metrics["model"] == "judge_uncertainty"
    checks = {c["signal"]: c for c in model.metrics["signal_check"]}
    assert checks["disagree"]["reversed"] and checks["disagree"]["errors_flagged"] == 0
    policy = route.routing_policy_get(project=project)
    policy.calibration_share = 0
    policy.budget_fraction = None
    policy.budget_count = 200
    policy.save()
    split = item_with_labels(project, judges={"g": "A", "p": "B"})
    agree = item_with_labels(project, judges={"g": "A", "p": "A"})
    RoutingBudget.objects.filter(project=project).update(spent=199)
    route.project_route(project=project, item_ids=[split.pk, agree.pk])
    decision = RoutingDecision.objects.get(item=agree)
    assert decision.target == "human"  # with the prior weights the split item would go
    assert "'other judges disagree' reversed" in decision.reason
    assert RoutingDecision.objects.get(item=split).target == "judge"


@pytest.mark.django_db
def test_learned_routes_new_items_with_the_model(settings):
    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 10, "folds": 4}
    project, _ = _learned_project()
    fitting.router_model_train(project=project)
    policy = route.routing_policy_get(project=project)
    policy.calibration_share = 0
    policy.budget_fraction = None
    policy.budget_count = 200
    policy.save()
    risky = item_with_labels(project, judges={"g": "A", "p": "A"}, candidates=LONG_A)
    safe = item_with_labels(project, judges={"g": "A", "p": "A"}, candidates=SHORT_A)
    route.routing_policy_set(project=project, params={"repeats": 1, "seed": 0})
    # With budget for one, the item the model finds riskier goes to people.
    policy = route.routing_policy_get(project=project)
    RoutingBudget.objects.filter(project=project).update(spent=199)
    route.project_route(project=project, item_ids=[risky.pk, safe.pk])
    decision = RoutingDecision.objects.get(item=risky)
    assert decision.target == "human" and decision.model_version == 1
    assert "predicted chance the judge is wrong" in decision.reason
    assert RoutingDecision.objects.get(item=safe).target == "judge"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_routing_never_exceeds_the_budget():
    project = ProjectFactory()
    items = [ItemFactory(project=project) for _ in range(30)]
    route.routing_policy_set(project=project, name="all_human", budget_count=7, calibration_share=0)
    barrier = threading.Barrier(6)
    errors = []

    def work(chunk):
        from django.db import connections

        try:
            barrier.wait()
            for item in chunk:
                route.item_route(item=item)
            route.project_route(project=project)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    chunks = [items[i::6] for i in range(6)]
    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Item.objects.filter(project=project, route__in=["human", "both"]).count() == 7
    assert RoutingBudget.objects.get(project=project).spent == 7
    assert RoutingDecision.objects.filter(project=project).count() == 30  # each item once


@pytest.mark.django_db
def test_router_model_versions_increase(settings):
    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 10, "folds": 4}
    project, _ = _learned_project(n=40)
    first = fitting.router_model_train(project=project)
    second = fitting.router_model_train(project=project)
    assert (first.version, second.version) == (1, 2)
    assert RouterModel.objects.filter(project=project).count() == 2


@pytest.mark.django_db
def test_retrain_task_fits_only_when_due(settings, monkeypatch):
    from routing.tasks import router_model_retrain, router_models_refresh

    settings.TANDEM_ROUTER = {"min_training_items": 20, "retrain_every": 30, "folds": 4}
    project, _ = _learned_project(n=40)
    assert router_model_retrain.apply(args=[project.pk]).get() == 1
    # No new calibration labels since: nothing to do.
    assert router_model_retrain.apply(args=[project.pk]).get() is None
    queued = []
    monkeypatch.setattr(router_model_retrain, "delay", queued.append)
    assert router_models_refresh.apply().get() == [project.pk]
    assert queued == [project.pk]
