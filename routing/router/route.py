"""The online router: per item, people, the judge or both, within the project's human budget.

- ``routing_policy_set`` validates and stores a project's policy (a new version on each change);
- ``project_route`` routes a project's unrouted items (``item_route``: one item), writing a
  ``RoutingDecision`` per item and ``Item.route``;
- ``items_reroute`` routes items again after judge results: explicit, recorded as a new decision
  that supersedes the old one, never silent;
- ``routing_dry_run`` shows how many items each target would get, writing nothing.

The budget is enforced by a row lock on the project's ``RoutingBudget``: every routing of a project
runs under it, re-reads which items are still unrouted, and spends at most what remains, so
concurrent routers never exceed the budget.

Judge-first policies (``judge_uncertainty``, ``learned``) send an item to the judge while the judge
has not answered; the re-routing after the judge's verdict decides whether people are needed.
A ``calibration_share`` of items (chosen by a hash of the item, so it is stable) always goes to
both, so that the judge's accuracy is measured and the learned policy has labels to learn from.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
from django.db import transaction
from django.db.models import Prefetch

from annotation.models import Annotation, Item, Project
from annotation.rows import CandidateRow, ItemRow, LabelRow
from routing.router.features import (
    FEATURE_VERSION,
    ItemView,
    JudgeLabel,
    features_table,
    metadata_table,
    prompt_languages,
    with_reward_margins,
)
from routing.router.models import (
    ItemFeatures,
    RouterModel,
    RoutingBudget,
    RoutingDecision,
    RoutingPolicy,
    RoutingPolicyVersion,
)
from routing.router.policies import BOTH, HUMAN, JUDGE, Policy, policy_build
from routing.router.policies.base import RoutePlan
from routing.router.reward_margins import reward_margins_get
from tandem.errors import InvalidInput

JUDGE_FIRST = ("judge_uncertainty", "learned")
POLICY_FIELDS = (
    "name",
    "params",
    "judges",
    "budget_fraction",
    "budget_count",
    "calibration_share",
    "tagging_judge",
    "judge_cost_cap",
)


# Policies -------------------------------------------------------------------------------------


def routing_policy_get(*, project: Project) -> RoutingPolicy | None:
    return RoutingPolicy.objects.filter(project=project, active=True).first()


@transaction.atomic
def routing_policy_set(*, project: Project, **values: Any) -> RoutingPolicy:
    """Create or change the project's active policy; raises ValidationError with the reasons."""
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown policy fields: {', '.join(sorted(unknown))}")
    policy = RoutingPolicy.objects.select_for_update().filter(project=project, active=True).first()
    if policy is None:
        if not values.get("name"):
            raise InvalidInput("name the routing policy (e.g. judge_uncertainty)")
        policy = RoutingPolicy(project=project, name=values["name"])
    else:
        policy.version += 1
    for key, value in values.items():
        setattr(policy, key, value)
    policy.full_clean()
    policy.save()
    RoutingPolicyVersion.objects.create(
        policy=policy,
        version=policy.version,
        # Money (judge_cost_cap) as text: JSON has no exact decimal.
        config={
            field: str(value) if isinstance(value, Decimal) else value
            for field in POLICY_FIELDS
            for value in [getattr(policy, field)]
        },
    )
    RoutingBudget.objects.get_or_create(project=project)
    if Item.objects.filter(project=project, route=Item.Route.UNROUTED).exists():
        from routing.router.loop import routing_work_request

        # Items that arrived before the policy (or under the old one) are routed now.
        routing_work_request(project_id=project.pk, reason="policy set")
    return policy


def routing_policy_history(*, project: Project) -> list[RoutingPolicyVersion]:
    """Every version of the project's policies, newest first."""
    return list(
        RoutingPolicyVersion.objects.filter(policy__project=project).order_by("-created_at", "-id")
    )


# Items as the policies see them -----------------------------------------------------------------


def items_loaded(items: Sequence[Item] | Any) -> list[Item]:
    ids = [item.pk for item in items]
    current = Annotation.objects.filter(superseded_by__isnull=True).order_by("id")
    return list(
        Item.objects.filter(pk__in=ids)
        .order_by("id")
        .prefetch_related("candidates", Prefetch("annotations", queryset=current))
    )


def item_view(item: Item) -> ItemView:
    judge_labels = [
        JudgeLabel(
            judge=a.judge,
            choice=(a.payload or {}).get("choice"),
            order=a.order,
            confidence=a.confidence,
        )
        for a in item.annotations.all()
        if a.source == Annotation.Source.JUDGE
    ]
    return ItemView(
        key=item.pk,
        prompt=item.prompt,
        messages=item.messages,
        candidates=[c.text for c in item.candidates.all()],
        metadata=item.metadata or {},
        judge_labels=judge_labels,
    )


def item_row(item: Item) -> ItemRow:
    """The item in the row format, with its current labels (for the simulation and training)."""
    labels = [
        LabelRow(
            source=a.source,
            payload=a.payload or {},
            annotator=a.external_annotator or str(a.annotator_id or ""),
            judge=a.judge,
            order=a.order,
            confidence=a.confidence,
        )
        for a in item.annotations.all()
    ]
    return ItemRow(
        external_id=str(item.pk),
        prompt=item.prompt,
        messages=item.messages,
        candidates=[CandidateRow(text=c.text, model=c.model) for c in item.candidates.all()],
        metadata=item.metadata or {},
        gold=item.gold,
        labels=labels,
        content_hash=item.content_hash,
    )


def _signature(view: ItemView, judges: Sequence[str]) -> str:
    """What the stored features came from besides the item itself: judge labels and LLM tags."""
    tags = (view.metadata or {}).get("tags")
    blob = repr(
        (
            list(judges),
            [(j.judge, j.choice, j.order, j.confidence) for j in view.judge_labels],
            sorted(tags.items()) if isinstance(tags, dict) else tags,
        )
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def item_features_get(*, items: Sequence[Item], judges: Sequence[str]) -> pd.DataFrame:
    """The stored features of ``items`` (prefetched as ``items_loaded`` does), computing and
    storing those missing or stale (new judge labels, another feature version)."""
    views = [item_view(item) for item in items]
    stored = {
        f.item_id: f for f in ItemFeatures.objects.filter(item__in=items, version=FEATURE_VERSION)
    }
    stale = [
        v for v in views if (s := stored.get(v.key)) is None or s.signature != _signature(v, judges)
    ]
    if stale:
        # One vectorised pass over the stale items (features_table), then one row each.
        computed = features_table(stale, judges)
        languages = prompt_languages(stale)
        for view, language, values in zip(
            stale, languages, computed.to_dict("records"), strict=True
        ):
            clean = {k: (None if v != v else v) for k, v in values.items()}  # NaN -> null
            features, _ = ItemFeatures.objects.update_or_create(
                item_id=view.key,
                version=FEATURE_VERSION,
                defaults={
                    "judges": list(judges),
                    "signature": _signature(view, judges),
                    "values": clean,
                    "language": language,
                },
            )
            stored[view.key] = features
    table = pd.DataFrame.from_records(
        [stored[v.key].values for v in views], index=[v.key for v in views]
    ).astype(float)
    table.attrs["feature_version"] = FEATURE_VERSION
    return table


def is_calibration(item: Item, share: float) -> bool:
    digest = hashlib.sha256(f"calibration:{item.project_id}:{item.pk}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


# Policies with their fitted model ---------------------------------------------------------------


@dataclass
class BuiltPolicy:
    policy: Policy
    model_version: int | None
    note: str = ""


def _policy_built(config: RoutingPolicy) -> BuiltPolicy:
    if config.name != RoutingPolicy.Name.LEARNED:
        return BuiltPolicy(policy_build(name=config.name, params=config.params), None)
    model = RouterModel.objects.filter(project=config.project).order_by("-version").first()
    if model is None:
        fallback = policy_build(name="judge_uncertainty")
        return BuiltPolicy(fallback, None, "no fitted model yet, judge uncertainty instead; ")
    import io

    import joblib

    learned = joblib.load(io.BytesIO(bytes(model.blob)))
    return BuiltPolicy(learned, model.version)


# Routing --------------------------------------------------------------------------------------


@dataclass
class RouteResult:
    decisions: list[RoutingDecision]

    def counts(self) -> dict[str, int]:
        out = {HUMAN: 0, JUDGE: 0, BOTH: 0}
        for decision in self.decisions:
            out[decision.target] += 1
        return out


def _plan(
    config: RoutingPolicy, items: list[Item], remaining: int | None
) -> tuple[dict[int, tuple[str, float | None, str, bool]], BuiltPolicy, pd.DataFrame]:
    """Per item id: (target, score, reason, calibration), people within ``remaining``."""
    built = _policy_built(config)
    judges = config.judges or []
    table = item_features_get(items=items, judges=judges) if items else pd.DataFrame()
    if items:  # a registered reward model's margins (rm_margin, rm_vs_primary), if any
        margins = reward_margins_get(project=config.project, item_ids=list(table.index))
        table = with_reward_margins(table, margins)
    budget = len(items) if remaining is None else remaining
    out: dict[int, tuple[str, float | None, str, bool]] = {}
    rest: list[Item] = []
    for item in items:
        if config.calibration_share and is_calibration(item, config.calibration_share):
            if budget > 0:
                budget -= 1
                out[item.pk] = (BOTH, None, "calibration slice: people and judge", True)
                continue
            out[item.pk] = (JUDGE, None, "calibration slice, but the human budget is spent", True)
            continue
        rest.append(item)
    waiting = []
    if config.name in JUDGE_FIRST:
        primary = judges[0] if judges else None
        for item in rest:
            has_verdict = primary is not None and any(
                a.source == Annotation.Source.JUDGE and a.judge == primary
                for a in item.annotations.all()
            )
            if not has_verdict:
                waiting.append(item)
                out[item.pk] = (JUDGE, None, "judge first: waiting for the judge's verdict", False)
        rest = [item for item in rest if item.pk not in out]
    if rest:
        keys = [item.pk for item in rest]
        views = [item_view(item) for item in rest]
        plan: RoutePlan = built.policy.route(
            table.loc[keys], budget, metadata=metadata_table(views)
        )
        for key, row in plan.frame.iterrows():
            out[key] = (row["target"], float(row["score"]), built.note + row["reason"], False)
    return out, built, table


def waits_for_judges(config: RoutingPolicy, target: str, score: float | None, calib: bool) -> bool:
    """Whether a decision only parks the item with the judges until their verdicts are in."""
    return config.name in JUDGE_FIRST and target == JUDGE and score is None and not calib


# Where an item may go from where it is: the router's one transition of ``Item.route``. People
# keep an item once they have it (its labels may be under way); the judge's items may go on.
ROUTE_EDGES = {
    Item.Route.UNROUTED: {HUMAN, JUDGE, BOTH},
    Item.Route.JUDGE: {HUMAN, JUDGE, BOTH},
    Item.Route.HUMAN: {HUMAN},
    Item.Route.BOTH: {BOTH},
}


def items_route_enter(decisions: Sequence[RoutingDecision]) -> None:
    """Set ``Item.route`` to each decision's target: the one place routing writes it. Runs
    under the budget's row lock (every routing of the project does), so the routes it checks
    the edges against cannot change meanwhile; a forbidden edge is a bug and raises."""
    if not decisions:
        return
    current = dict(
        Item.objects.filter(pk__in=[d.item_id for d in decisions]).values_list("id", "route")
    )
    by_target: dict[str, list[int]] = {}
    for decision in decisions:
        here = current[decision.item_id]
        if decision.target not in ROUTE_EDGES[here]:
            raise RuntimeError(f"item {decision.item_id}: no route {here} -> {decision.target}")
        if here != decision.target:
            by_target.setdefault(decision.target, []).append(decision.item_id)
    for target, ids in by_target.items():
        Item.objects.filter(pk__in=ids).update(route=target)


def _budget_locked(project: Project) -> RoutingBudget:
    RoutingBudget.objects.get_or_create(project=project)
    return RoutingBudget.objects.select_for_update().get(project=project)


def _route(
    *, project: Project, item_ids: Sequence[int] | None, reroute: bool, why: str = ""
) -> RouteResult:
    config = routing_policy_get(project=project)
    if config is None:
        raise InvalidInput("this project has no routing policy yet")
    with transaction.atomic():
        budget = _budget_locked(project)  # serialises every routing of this project
        queryset = Item.objects.filter(project=project)
        if item_ids is not None:
            queryset = queryset.filter(pk__in=item_ids)
        if not reroute:
            queryset = queryset.filter(route=Item.Route.UNROUTED)
        items = items_loaded(list(queryset.only("id")))
        n_items = Item.objects.filter(project=project).count()
        limit = config.budget_limit(n_items)
        remaining = None if limit is None else max(limit - budget.spent, 0)
        previous: dict[int, RoutingDecision] = {}
        if reroute:
            for decision in RoutingDecision.objects.filter(
                item__in=items, superseded_by__isnull=True
            ).order_by("id"):
                previous[decision.item_id] = decision
        # Items that already have people keep them: their label may be under way.
        keep = {k for k, d in previous.items() if d.target in (HUMAN, BOTH)}
        plan, built, table = _plan(config, [i for i in items if i.pk not in keep], remaining)
        decisions, spent = [], budget.spent
        for item in items:
            if item.pk in keep:
                target, score, reason, calibration = (
                    previous[item.pk].target,
                    previous[item.pk].score,
                    "people were already asked; kept",
                    previous[item.pk].calibration,
                )
            else:
                target, score, reason, calibration = plan[item.pk]
            spends = target in (HUMAN, BOTH) and item.pk not in keep
            if spends and limit is not None and spent >= limit:  # never past the budget
                target, reason = JUDGE, reason + "; the human budget is spent"
                spends = False
            before = spent
            spent += int(spends)
            features = (
                {k: v for k, v in table.loc[item.pk].items() if v == v}
                if item.pk in table.index
                else {}
            )
            decisions.append(
                RoutingDecision(
                    project=project,
                    item=item,
                    policy=config,
                    policy_name=config.name,
                    policy_version=config.version,
                    model_version=built.model_version,
                    target=target,
                    kind=RoutingDecision.Kind.REROUTE if reroute else RoutingDecision.Kind.INITIAL,
                    calibration=calibration,
                    waiting=waits_for_judges(config, target, score, calibration),
                    score=score,
                    reason=(why + reason) if reroute else reason,
                    budget_state={
                        "limit": limit,
                        "spent_before": before,
                        "spent_after": spent,
                        "remaining": None if limit is None else limit - spent,
                    },
                    features=features,
                    supersedes=previous.get(item.pk),
                )
            )
        RoutingDecision.objects.bulk_create(decisions)
        items_route_enter(decisions)
        if spent != budget.spent:
            budget.spent = spent
            budget.save(update_fields=["spent", "updated_at"])
    return RouteResult(decisions)


def project_route(*, project: Project, item_ids: Sequence[int] | None = None) -> RouteResult:
    """Route the project's unrouted items (or those of ``item_ids`` still unrouted)."""
    return _route(project=project, item_ids=item_ids, reroute=False)


def item_route(*, item: Item) -> RoutingDecision | None:
    result = _route(project=item.project, item_ids=[item.pk], reroute=False)
    return result.decisions[0] if result.decisions else None


def items_reroute(
    *, project: Project, item_ids: Sequence[int], reason: str = "after judge results"
) -> RouteResult:
    """Route items again (e.g. once the judge answered); recorded as superseding decisions."""
    return _route(project=project, item_ids=item_ids, reroute=True, why=f"re-routed {reason}: ")


def routing_dry_run(
    *, project: Project, name: str | None = None, params: dict | None = None
) -> dict[str, Any]:
    """How many of the project's unrouted items each target would get; writes nothing but
    missing features."""
    config = routing_policy_get(project=project)
    if config is None and name is None:
        raise InvalidInput("this project has no routing policy yet; name one to try")
    trial = RoutingPolicy(
        project=project,
        name=name or config.name,
        params=params if params is not None else (config.params if config else {}),
        judges=config.judges if config else [],
        budget_fraction=config.budget_fraction if config else None,
        budget_count=config.budget_count if config else None,
        calibration_share=config.calibration_share if config else 0.0,
    )
    trial.clean()
    items = items_loaded(list(Item.objects.filter(project=project, route=Item.Route.UNROUTED)))
    budget = RoutingBudget.objects.filter(project=project).first()
    spent = budget.spent if budget else 0
    limit = trial.budget_limit(Item.objects.filter(project=project).count())
    remaining = None if limit is None else max(limit - spent, 0)
    plan, _, _ = _plan(trial, items, remaining)
    counts = {HUMAN: 0, JUDGE: 0, BOTH: 0}
    for target, *_ in plan.values():
        counts[target] += 1
    return {"policy": trial.name, "items": len(items), "targets": counts, "remaining": remaining}


def budget_state(*, project: Project) -> dict[str, Any]:
    config = routing_policy_get(project=project)
    budget = RoutingBudget.objects.filter(project=project).first()
    spent = budget.spent if budget else 0
    limit = config.budget_limit(project.items.count()) if config else None
    return {
        "limit": limit,
        "spent": spent,
        "remaining": None if limit is None else max(limit - spent, 0),
        "fraction": config.budget_fraction if config else None,
    }
