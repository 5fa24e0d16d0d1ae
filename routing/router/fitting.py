"""Fitting the learned policy on the calibration slice, and what the budget is expected to buy.

Only calibration items (a random share that always gets both a human and a judge label) train
the model: they are a fair sample, and their human labels say where the judge is wrong. The fit is
cross-fitted (``LearnedPolicy``), so a calibration item re-routed later is scored by models that
never saw its own label.
"""

import io
from typing import Any

import pandas as pd
from django.db import transaction

from annotation.models import Annotation, Item, Project
from routing.router.config import RouterSettings
from routing.router.features import (
    FEATURE_VERSION,
    model_rates,
    prompt_groups,
    with_model_strengths,
    with_reward_margins,
)
from routing.router.model_answers import model_answers
from routing.router.models import RouterModel, RoutingDecision
from routing.router.policies import LearnedPolicy
from routing.router.policies.learned import judge_error_target
from routing.router.reward_margins import reward_margins_get
from routing.router.route import (
    item_row,
    item_view,
    items_loaded,
    routing_policy_get,
    views_features,
)
from routing.router.simulation import DECISIVE, sim_items, simulation_run
from tandem.errors import InvalidInput


def calibration_items(*, project: Project) -> list[Item]:
    """Calibration items that have a human label, with candidates and labels loaded."""
    ids = (
        RoutingDecision.objects.filter(
            project=project, calibration=True, superseded_by__isnull=True
        )
        .filter(item__annotations__source=Annotation.Source.HUMAN)
        .values_list("item_id", flat=True)
        .distinct()
    )
    return items_loaded(list(Item.objects.filter(pk__in=list(ids)).only("id")))


def training_set(
    *, project: Project, judges: list[str]
) -> tuple[pd.DataFrame, pd.Series, pd.Series, dict[str, dict[str, float]]]:
    """Features, target (judge wrong: 1/0, NaN unknown) and prompt groups of the labelled
    calibration items, and the judges' rates of the candidates' models over the whole project
    (which the model_pick_* features came from; stored with the model). The groups keep every
    item on one prompt (and every copy of an item) in one fold of the cross-fit, so that the
    model's own validation figures are not inflated."""
    items = calibration_items(project=project)
    rows = [item_row(item) for item in items]
    sims = sim_items(rows, judges)
    target = pd.Series(
        [judge_error_target(s.judge_label, s.reference) for s in sims],
        index=[item.pk for item in items],
    )
    views = [item_view(item) for item in items]  # the features, the models and the groups
    table = views_features(views=views, judges=judges)
    # How the judges rate the candidates' models across the project (model_pick_*).
    rates = model_rates(model_answers(project=project, judges=judges))
    table = with_model_strengths(table, {v.key: v.models for v in views}, rates, judges)
    # The reward model's margins, when one is registered (the model then learns from them).
    margins = reward_margins_get(project=project, item_ids=list(table.index))
    table = with_reward_margins(table, margins)
    groups = prompt_groups(views)
    return table, target, groups, rates


def router_model_train(*, project: Project) -> RouterModel | None:
    """Fit and store a new model version; None when there are too few labelled items yet."""
    settings = RouterSettings.load()
    config = routing_policy_get(project=project)
    if config is None or not config.judges:
        return None
    table, target, groups, rates = training_set(project=project, judges=config.judges)
    if target.notna().sum() < settings.min_training_items or target.nunique() < 2:
        return None
    policy = LearnedPolicy(folds=settings.folds, **_learned_params(config.params))
    # Model selection guards the fit: with a project's first calibration labels the data rarely
    # shows that a model beats judge uncertainty, and then the policy ranks by it (and says so),
    # with any signal those labels show to point the wrong way reversed (signal_directions).
    policy.fit(table, target, groups)
    policy.model_rates = rates  # routing builds the model_pick_* features from these
    metrics: dict[str, Any] = dict(policy.metrics)
    metrics["expected_agreement"] = _expected(project, config, "learned")
    buffer = io.BytesIO()
    import joblib  # with scikit-learn, loaded only when a model is stored

    joblib.dump(policy, buffer)
    with transaction.atomic():
        last = (
            RouterModel.objects.select_for_update()
            .filter(project=project)
            .order_by("-version")
            .first()
        )
        return RouterModel.objects.create(
            project=project,
            version=(last.version + 1) if last else 1,
            feature_version=FEATURE_VERSION,
            judges=list(config.judges),
            n_train=int(target.notna().sum()),
            metrics=metrics,
            blob=buffer.getvalue(),
        )


def _learned_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if k in ("repeats", "seed", "models", "drop")}


def router_model_retrain_due(*, project: Project) -> bool:
    """True when enough calibration items got human labels since the last model."""
    settings = RouterSettings.load()
    last = RouterModel.objects.filter(project=project).order_by("-version").first()
    labelled = len(calibration_items(project=project))
    trained = last.n_train if last else 0
    return labelled >= settings.min_training_items and labelled - trained >= settings.retrain_every


def _expected(project: Project, config, name: str) -> list[dict[str, Any]] | None:
    items = calibration_items(project=project)
    rows = [item_row(item) for item in items]
    if not config.judges:
        return None
    scored = [s for s in sim_items(rows, config.judges) if s.reference in DECISIVE]
    if len(scored) < 10:
        return None
    fraction = _budget_fraction(project, config)
    budgets = sorted(
        {0.1, 0.2, 0.3, 0.5} | ({round(fraction, 4)} if fraction is not None else set())
    )
    try:
        run = simulation_run(
            rows,
            policy=name,
            budgets=budgets,
            judges=config.judges,
            params=None if name == "learned" else config.params,
            embeddings=False,
        )
    except InvalidInput:  # too few items for the folds, one outcome only: no estimate yet
        return None
    return run["results"]


def _budget_fraction(project: Project, config) -> float | None:
    if config.budget_fraction is not None:
        return config.budget_fraction
    if config.budget_count is not None:
        n = project.items.count()
        return min(config.budget_count / n, 1.0) if n else None
    return None


def project_expected_agreement(*, project: Project) -> dict[str, Any] | None:
    """Expected agreement with the reference at the current budget, simulated on the calibration
    slice with the active policy (for ``learned``: as measured when the model was fitted)."""
    config = routing_policy_get(project=project)
    if config is None:
        return None
    fraction = _budget_fraction(project, config)
    if config.name == "learned":
        model = RouterModel.objects.filter(project=project).order_by("-version").first()
        results = (model.metrics or {}).get("expected_agreement") if model else None
    else:
        results = _expected(project, config, config.name)
    if not results:
        return None
    nearest = min(results, key=lambda r: abs(r["budget"] - (fraction or 0.0)))
    return {"budget": nearest["budget"], "agreement": nearest["agreement"], "curve": results}
