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

Scale: routing reads only the columns it needs (``item_views``: three queries per chunk of
``ROUTE_CHUNK`` items, no model instances), computes the features of all stale items of a chunk in
one vectorised pass (``features.features_table``, as the simulation does), and writes features,
decisions and routes in bulk: on PostgreSQL by COPY into a temporary table and one INSERT ... SELECT
(``ON CONFLICT`` for the features), elsewhere by ``bulk_create``. The number of queries grows with
the number of chunks, not of items; the policy ranks all items together, so chunking changes no
decision. Outside a caller's transaction, the next chunk is read and the last chunk's features are
written on two side connections while the features are computed (``tandem.side_work``), so
PostgreSQL's work and Python's overlap.
"""

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pandas as pd
from django.db import connection, transaction
from django.db.models import Prefetch, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from annotation.models import Annotation, Candidate, Item, Project
from annotation.rows import CandidateRow, ItemRow, LabelRow
from routing.router.config import RouterSettings
from routing.router.features import (
    FEATURE_VERSION,
    MODEL_FEATURES,
    ItemView,
    JudgeLabel,
    features_table,
    languages_detected,
    metadata_table,
    model_rates,
    with_model_strengths,
    with_reward_margins,
)
from routing.router.model_answers import model_answers
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
from tandem.side_work import SideLanes, side_connections_usable

logger = logging.getLogger(__name__)

JUDGE_FIRST = ("judge_uncertainty", "learned")
# Items read, featurised and written together: bounds memory (texts of about two chunks at a
# time, one read ahead on a side connection) and keeps every query's parameter list short. At
# 100,000 items 10,000 was faster than 20,000 (21-23 s against 22-25 s) with 0.2 GB less peak
# memory; 5,000 saved 0.2 GB more and cost 1-2 s (docs/routing.md, Scale).
ROUTE_CHUNK = 10_000
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
        models=[c.model or "" for c in item.candidates.all()],
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


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    size = max(int(ROUTE_CHUNK), 1)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _in(field: str, ids: Sequence[int]) -> Q:
    """``field`` is one of ``ids``: on PostgreSQL one array parameter (``unnest``), so that a
    chunk's thousands of ids are not thousands of placeholders to build, send and parse."""
    if _copy_supported():
        return Q(
            **{f"{field}__in": RawSQL("SELECT unnest(%s::bigint[])", ([int(i) for i in ids],))}
        )
    return Q(**{f"{field}__in": list(ids)})


def item_views(ids: Sequence[int]) -> list[ItemView]:
    """``item_view`` of the items ``ids`` (in id order) from three queries of plain values: the
    items' texts and metadata, their candidates' texts, their current judge labels."""
    candidates: dict[int, list[str]] = {}
    models: dict[int, list[str]] = {}
    for item_id, text, model in (
        Candidate.objects.filter(_in("item_id", ids))
        .order_by("item_id", "position")
        .values_list("item_id", "text", "model")
    ):
        candidates.setdefault(item_id, []).append(text)
        models.setdefault(item_id, []).append(model or "")
    labels: dict[int, list[JudgeLabel]] = {}
    for item_id, judge, payload, order, confidence in (
        Annotation.objects.filter(
            _in("item_id", ids), source=Annotation.Source.JUDGE, superseded_by__isnull=True
        )
        .order_by("id")
        .values_list("item_id", "judge", "payload", "order", "confidence")
    ):
        labels.setdefault(item_id, []).append(
            JudgeLabel(
                judge=judge,
                choice=(payload or {}).get("choice"),
                order=order,
                confidence=confidence,
            )
        )
    return [
        ItemView(
            key=pk,
            prompt=prompt,
            messages=messages,
            candidates=candidates.get(pk, []),
            metadata=metadata or {},
            judge_labels=labels.get(pk, []),
            models=models.get(pk, []),
        )
        for pk, prompt, messages, metadata in Item.objects.filter(_in("id", ids))
        .order_by("id")
        .values_list("id", "prompt", "messages", "metadata")
    ]


def _signature(view: ItemView, judges: Sequence[str], *, embeddings: bool = True) -> str:
    """What the stored features came from besides the item itself: judge labels and LLM tags
    (and that the embedding was left out, when it was)."""
    tags = (view.metadata or {}).get("tags")
    parts: tuple[Any, ...] = (
        list(judges),
        [(j.judge, j.choice, j.order, j.confidence) for j in view.judge_labels],
        sorted(tags.items()) if isinstance(tags, dict) else tags,
    )
    if not embeddings:
        parts += ("no embeddings",)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def item_features_get(*, items: Sequence[Item], judges: Sequence[str]) -> pd.DataFrame:
    """The stored features of ``items`` (prefetched as ``items_loaded`` does), computing and
    storing those missing or stale (new judge labels, another feature version)."""
    return views_features(views=[item_view(item) for item in items], judges=judges)


def views_features(
    *,
    views: Sequence[ItemView],
    judges: Sequence[str],
    stored: dict[int, tuple[str, dict]] | None = None,
    write: Callable[..., Any] | None = None,
) -> pd.DataFrame:
    """The stored features of the items ``views`` show (one query), the missing or stale ones
    (new judge labels or tags, another feature version) computed in one vectorised pass and
    stored in bulk (``_features_write``). One row per view, in order.

    ``stored``: the items' stored features, already read (``stored_features``); ``write``: runs
    ``_features_write`` with its arguments (the bulk router passes one that queues it on a side
    connection, ``_plan``)."""
    keys = [v.key for v in views]
    embeddings = RouterSettings.load().embeddings
    signatures = [_signature(v, judges, embeddings=embeddings) for v in views]
    if stored is None:
        stored = stored_features(keys)
    stale = [
        i
        for i, (key, signature) in enumerate(zip(keys, signatures, strict=True))
        if (known := stored.get(key)) is None or known[0] != signature
    ]
    parts = []
    if stale:
        views_stale = [views[i] for i in stale]
        languages = languages_detected(views_stale)
        computed = features_table(views_stale, judges, embeddings=embeddings, languages=languages)
        (write or _features_write)(
            computed, languages["code"], [signatures[i] for i in stale], judges
        )
        parts.append(computed)
    if len(stale) < len(views):
        fresh = set(stale)
        kept = [keys[i] for i in range(len(views)) if i not in fresh]
        parts.append(
            pd.DataFrame.from_records([stored[k][1] for k in kept], index=kept).astype(float)
        )
    table = pd.concat(parts).reindex(keys) if parts else pd.DataFrame(index=keys)
    table = table.astype(float)
    table.attrs["feature_version"] = FEATURE_VERSION
    return table


def stored_features(keys: Sequence[int]) -> dict[int, tuple[str, dict]]:
    """The items' stored features of this version: item id -> (signature, values)."""
    return {
        item_id: (signature, values)
        for item_id, signature, values in ItemFeatures.objects.filter(
            _in("item_id", keys), version=FEATURE_VERSION
        ).values_list("item_id", "signature", "values")
    }


def _chunk_read(ids: Sequence[int]) -> tuple[list[ItemView], dict[int, tuple[str, dict]]]:
    """What the router reads of a chunk: its items' views and stored features."""
    return item_views(ids), stored_features(ids)


def _json_rows(table: pd.DataFrame) -> list[bytes]:
    """Each row of a float table as a JSON object (NaN as null), as ``ItemFeatures.values``."""
    columns = list(table.columns)
    values = table.to_numpy(dtype=float)
    cells = values.astype(object)
    cells[np.isnan(values)] = None
    return [orjson.dumps(dict(zip(columns, row, strict=True))) for row in cells.tolist()]


def _copy_supported() -> bool:
    """PostgreSQL writes by COPY; other databases through the ORM's bulk operations."""
    return connection.vendor == "postgresql"


def _features_write(
    table: pd.DataFrame, languages: pd.Series, signatures: Sequence[str], judges: Sequence[str]
) -> None:
    """Insert or replace the ``ItemFeatures`` of the rows of ``table`` (this feature version)."""
    values = _json_rows(table)
    keys = [int(k) for k in table.index]
    codes = languages.reindex(table.index).tolist()
    now = timezone.now()
    if not _copy_supported():
        ItemFeatures.objects.bulk_create(
            [
                ItemFeatures(
                    item_id=key,
                    version=FEATURE_VERSION,
                    judges=list(judges),
                    signature=signature,
                    values=orjson.loads(value),
                    language=code,
                    computed_at=now,
                )
                for key, signature, value, code in zip(keys, signatures, values, codes, strict=True)
            ],
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["item", "version"],
            update_fields=["judges", "signature", "values", "language", "computed_at"],
        )
        return
    target = ItemFeatures._meta.db_table
    # One transaction: the staging table is dropped on commit, and the dry run calls this
    # outside any (in autocommit the table would be gone before the COPY).
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        _stage(
            cursor,
            "routing_features_stage",
            "item_id bigint, signature text, vals jsonb, language text",
        )
        with cursor.cursor.copy(
            "COPY routing_features_stage (item_id, signature, vals, language) FROM STDIN"
        ) as copy:
            for row in zip(keys, signatures, (v.decode() for v in values), codes, strict=True):
                copy.write_row(row)
        cursor.execute(
            f"""INSERT INTO {target} (item_id, version, judges, signature, "values", language,
                computed_at)
            SELECT item_id, %s, %s::jsonb, signature, vals, language, %s
            FROM routing_features_stage
            ON CONFLICT (item_id, version) DO UPDATE SET judges = EXCLUDED.judges,
                signature = EXCLUDED.signature, "values" = EXCLUDED."values",
                language = EXCLUDED.language, computed_at = EXCLUDED.computed_at""",
            [FEATURE_VERSION, orjson.dumps(list(judges)).decode(), now],
        )
        cursor.execute("DROP TABLE routing_features_stage")


def _stage(cursor: Any, name: str, columns: str) -> None:
    """A fresh temporary table (dropped at the end of the transaction at the latest). Call it
    inside ``transaction.atomic``: in autocommit, ON COMMIT DROP drops it at once."""
    cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute(f"CREATE TEMPORARY TABLE {name} ({columns}) ON COMMIT DROP")


def is_calibration(item: Item, share: float) -> bool:
    return bool(calibration_mask(item.project_id, [item.pk], share)[0])


def calibration_mask(project_id: int, ids: Sequence[int], share: float) -> np.ndarray:
    """Which of ``ids`` are in the project's calibration slice: a hash of the item, so that an
    item's membership never changes."""
    if not share:
        return np.zeros(len(ids), dtype=bool)
    return np.fromiter(
        (
            int.from_bytes(
                hashlib.sha256(f"calibration:{project_id}:{pk}".encode()).digest()[:8], "big"
            )
            / 2**64
            < share
            for pk in ids
        ),
        dtype=bool,
        count=len(ids),
    )


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
    """What one routing did: the items it routed (in id order) and how many went where; the
    decisions themselves are read on demand (a large routing need not hold them)."""

    item_ids: list[int]
    targets: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {HUMAN: 0, JUDGE: 0, BOTH: 0} | self.targets

    @property
    def n_routed(self) -> int:
        return len(self.item_ids)

    @cached_property
    def decisions(self) -> list[RoutingDecision]:
        """The routed items' current decisions (this routing's, unless routed again since)."""
        out: list[RoutingDecision] = []
        for chunk in _chunks(self.item_ids):
            out += RoutingDecision.objects.filter(
                item_id__in=chunk, superseded_by__isnull=True
            ).order_by("id")
        return out


def _plan(
    config: RoutingPolicy,
    ids: Sequence[int],
    remaining: int | None,
    project_id: int,
    *,
    side: bool = False,
) -> tuple[pd.DataFrame, BuiltPolicy, pd.DataFrame]:
    """Per item id (in order): target, score (NaN: none), ``scored``, reason and calibration,
    people within ``remaining``; with the built policy and the items' feature table.

    The items are read and featurised chunk by chunk; the policy then ranks them all at once.
    With ``side`` (the caller checked ``side_connections_usable`` before opening its
    transaction) and more than one chunk, the next chunk is read and the last chunk's features
    are written on two side connections while this thread computes features: the server's work
    and Python's overlap (``tandem.side_work``). The features' writes are finished before this
    returns (the decisions copy them)."""
    built = _policy_built(config)
    judges = config.judges or []
    primary = judges[0] if judges else None
    judge_first = config.name in JUDGE_FIRST
    rules = config.name == RoutingPolicy.Name.RULES
    # How the judges rate the candidates' models (model_pick_*), where the policy reads them;
    # the items' model names are kept only then.
    rates = _model_rates_for(config, built) if len(ids) else {}
    tables: list[pd.DataFrame] = []
    answered: list[np.ndarray] = []
    metadata: dict[int, dict] = {}
    models: dict[int, list[str]] = {}
    chunks = list(_chunks(ids))
    with SideLanes(("read", "write"), enabled=side and len(chunks) > 1) as lanes:

        def write(*args: Any) -> None:
            lanes.submit("write", _features_write, *args)

        pending = lanes.submit("read", _chunk_read, chunks[0]) if chunks else None
        done = 0
        for number, chunk in enumerate(chunks):
            views, stored = pending.result()
            if number + 1 < len(chunks):
                pending = lanes.submit("read", _chunk_read, chunks[number + 1])
            tables.append(views_features(views=views, judges=judges, stored=stored, write=write))
            if judge_first:
                answered.append(
                    np.fromiter(
                        (any(label.judge == primary for label in v.judge_labels) for v in views),
                        dtype=bool,
                        count=len(views),
                    )
                )
            if rules:
                metadata.update((v.key, v.metadata) for v in views)
            if rates:
                models.update((v.key, v.models) for v in views)
            done += len(chunk)
            if len(ids) > ROUTE_CHUNK:
                logger.info(
                    "routing project %s: features of %d of %d items", project_id, done, len(ids)
                )
    table = pd.concat(tables) if tables else pd.DataFrame(index=pd.Index([], dtype=int))
    if len(table):
        table = with_model_strengths(table, models, rates, judges)
        # A registered reward model's margins (rm_margin, rm_vs_primary), if any.
        margins = reward_margins_get(project=config.project, item_ids=list(table.index))
        table = with_reward_margins(table, margins)
    n = len(ids)
    budget = n if remaining is None else remaining
    target = np.full(n, JUDGE, dtype=object)
    score = np.full(n, np.nan)
    scored = np.zeros(n, dtype=bool)
    reason = np.full(n, "", dtype=object)
    calibration = calibration_mask(project_id, ids, config.calibration_share)
    # The calibration slice first, in id order, as far as the budget goes.
    slice_positions = np.flatnonzero(calibration)
    both = slice_positions[:budget]
    target[both] = BOTH
    reason[both] = "calibration slice: people and judge"
    reason[slice_positions[budget:]] = "calibration slice, but the human budget is spent"
    budget -= len(both)
    rest = ~calibration
    if judge_first:
        waiting = rest & ~(np.concatenate(answered) if answered else np.zeros(n, dtype=bool))
        reason[waiting] = "judge first: waiting for the judge's verdict"
        rest &= ~waiting
    if rest.any():
        keys = [ids[i] for i in np.flatnonzero(rest)]
        frame = (
            metadata_table(
                [ItemView(key=k, prompt="", candidates=[], metadata=metadata[k]) for k in keys]
            )
            if rules
            else None
        )
        plan: RoutePlan = built.policy.route(table.loc[keys], budget, metadata=frame)
        routed = plan.frame.reindex(keys)
        target[rest] = routed["target"].to_numpy(dtype=object)
        score[rest] = routed["score"].to_numpy(dtype=float)
        scored[rest] = True
        reason[rest] = (built.note + routed["reason"].astype(str)).to_numpy(dtype=object)
    out = pd.DataFrame(
        {
            "target": target,
            "score": score,
            "scored": scored,
            "reason": reason,
            "calibration": calibration,
        },
        index=pd.Index(list(ids), dtype="int64"),
    )
    return out, built, table


def _model_rates_for(config: RoutingPolicy, built: BuiltPolicy) -> dict[str, dict[str, float]]:
    """The judges' rates of the candidates' models that the policy reads: a fitted learned
    model's own (those it was fitted with, refreshed at every refit); for rules that name a
    ``model_pick_*`` feature, the project's now (one aggregate query over all its judge
    answers); none for the other policies, which do not read them (no query)."""
    if built.model_version is not None:
        return getattr(built.policy, "model_rates", None) or {}
    if config.name == RoutingPolicy.Name.RULES and any(
        rule.field in MODEL_FEATURES for rule in getattr(built.policy, "rules", [])
    ):
        return model_rates(model_answers(project=config.project, judges=config.judges or []))
    return {}


# Where an item may go from where it is: the router's one transition of ``Item.route``. People
# keep an item once they have it (its labels may be under way); the judge's items may go on.
ROUTE_EDGES = {
    Item.Route.UNROUTED: {HUMAN, JUDGE, BOTH},
    Item.Route.JUDGE: {HUMAN, JUDGE, BOTH},
    Item.Route.HUMAN: {HUMAN},
    Item.Route.BOTH: {BOTH},
}
_EDGES = {f"{here}>{there}" for here, theres in ROUTE_EDGES.items() for there in theres}


def items_route_enter(
    item_ids: Sequence[int], targets: Sequence[str], current: dict[int, str] | None = None
) -> None:
    """Set ``Item.route`` of each item to its target: the one place routing writes it (one read
    and at most one update per target). Runs under the budget's row lock (every routing of the
    project does), so the routes it checks the edges against cannot change meanwhile; a
    forbidden edge is a bug and raises. ``current``: the items' routes, read under that lock."""
    if not len(item_ids):
        return
    if current is None:
        current = dict(Item.objects.filter(_in("id", item_ids)).values_list("id", "route"))
    here = np.array([current[i] for i in item_ids], dtype=object)
    there = np.asarray(targets, dtype=object)
    edges = here + ">" + there
    allowed = np.isin(edges.astype(str), list(_EDGES))
    if not allowed.all():
        bad = int(np.flatnonzero(~allowed)[0])
        raise RuntimeError(f"item {item_ids[bad]}: no route {here[bad]} -> {there[bad]}")
    moves = here != there
    ids = np.asarray(item_ids, dtype=np.int64)
    for target in (HUMAN, JUDGE, BOTH):
        chosen = ids[moves & (there == target)]
        if len(chosen):
            Item.objects.filter(_in("id", chosen.tolist())).update(route=target)


def _budget_locked(project: Project) -> RoutingBudget:
    RoutingBudget.objects.get_or_create(project=project)
    return RoutingBudget.objects.select_for_update().get(project=project)


@dataclass
class _Decisions:
    """This routing's decisions as columns (one row per item, in id order), and what they share."""

    frame: pd.DataFrame
    table: pd.DataFrame
    common: dict[str, Any]
    limit: int | None


def _route(
    *, project: Project, item_ids: Sequence[int] | None, reroute: bool, why: str = ""
) -> RouteResult:
    config = routing_policy_get(project=project)
    if config is None:
        raise InvalidInput("this project has no routing policy yet")
    side = side_connections_usable()  # before this routing's own transaction opens
    with transaction.atomic():
        budget = _budget_locked(project)  # serialises every routing of this project
        queryset = Item.objects.filter(project=project)
        if item_ids is not None:
            queryset = queryset.filter(pk__in=item_ids)
        if not reroute:
            queryset = queryset.filter(route=Item.Route.UNROUTED)
        routes = dict(queryset.order_by("id").values_list("id", "route"))
        ids = list(routes)
        n_items = Item.objects.filter(project=project).count()
        limit = config.budget_limit(n_items)
        remaining = None if limit is None else max(limit - budget.spent, 0)
        previous = pd.DataFrame(columns=["id", "target", "score", "calibration"])
        if reroute:
            rows = []
            for chunk in _chunks(ids):
                rows += RoutingDecision.objects.filter(
                    _in("item_id", chunk), superseded_by__isnull=True
                ).values_list("item_id", "id", "target", "score", "calibration")
            previous = pd.DataFrame(
                rows, columns=["item_id", "id", "target", "score", "calibration"]
            )
            # Several current decisions of one item cannot be, but the newest would win.
            previous = previous.sort_values("id").drop_duplicates("item_id", keep="last")
            previous = previous.set_index("item_id")
        # Items that already have people keep them: their label may be under way.
        keep = set(previous.index[previous["target"].isin((HUMAN, BOTH))].tolist())
        plan, built, table = _plan(
            config, [i for i in ids if i not in keep], remaining, project.pk, side=side
        )
        frame = plan.reindex(pd.Index(ids, dtype="int64"))
        kept = frame.index.isin(list(keep))
        if kept.any():
            before = previous.reindex(frame.index[kept])
            frame.loc[kept, "target"] = before["target"].to_numpy(dtype=object)
            frame.loc[kept, "score"] = before["score"].to_numpy(dtype=float)
            frame.loc[kept, "scored"] = before["score"].notna().to_numpy()
            frame.loc[kept, "calibration"] = before["calibration"].to_numpy(dtype=bool)
            frame.loc[kept, "reason"] = "people were already asked; kept"
        frame["scored"] = frame["scored"].astype(bool)
        frame["calibration"] = frame["calibration"].astype(bool)
        target = frame["target"].to_numpy(dtype=object, copy=True)
        spends = np.isin(target.astype(str), (HUMAN, BOTH)) & ~kept
        if limit is not None:  # never past the budget: the spenders beyond it go to the judge
            over = spends & (budget.spent + np.cumsum(spends) > limit)
            target[over] = JUDGE
            frame.loc[over, "reason"] = frame.loc[over, "reason"] + "; the human budget is spent"
            spends &= ~over
            frame["target"] = target
        frame["spent_after"] = budget.spent + np.cumsum(spends)
        frame["spent_before"] = frame["spent_after"] - spends
        # A decision that only parks the item with the judges until their verdicts are in.
        frame["waiting"] = (
            (target == JUDGE) & ~frame["scored"].to_numpy() & ~frame["calibration"].to_numpy()
            if config.name in JUDGE_FIRST
            else False
        )
        if reroute:
            frame["reason"] = why + frame["reason"].astype(str)
        frame["supersedes_id"] = previous["id"].reindex(frame.index) if len(previous) else np.nan
        frame["with_features"] = frame.index.isin(table.index) & ~kept
        decisions = _Decisions(
            frame=frame,
            table=table,
            limit=limit,
            common={
                "project_id": project.pk,
                "policy_id": config.pk,
                "policy_name": str(config.name),
                "policy_version": config.version,
                "model_version": built.model_version,
                "kind": str(
                    RoutingDecision.Kind.REROUTE if reroute else RoutingDecision.Kind.INITIAL
                ),
            },
        )
        done = 0
        for chunk in _chunks(ids):
            part = frame.loc[list(chunk)]
            _decisions_write(decisions, part)
            items_route_enter(chunk, part["target"].tolist(), routes)
            done += len(chunk)
            if len(ids) > ROUTE_CHUNK:
                logger.info("routing project %s: %d of %d items routed", project.pk, done, len(ids))
        spent = int(frame["spent_after"].iloc[-1]) if len(frame) else budget.spent
        if spent != budget.spent:
            budget.spent = spent
            budget.save(update_fields=["spent", "updated_at"])
    counts = frame["target"].value_counts() if len(frame) else pd.Series(dtype=int)
    return RouteResult(ids, {str(k): int(v) for k, v in counts.items()})


def _budget_state(limit: int | None, before: int, after: int) -> dict[str, Any]:
    return {
        "limit": limit,
        "spent_before": before,
        "spent_after": after,
        "remaining": None if limit is None else limit - after,
    }


def _decisions_write(decisions: _Decisions, part: pd.DataFrame) -> None:
    """Write the ``RoutingDecision`` rows of ``part`` (a chunk of ``decisions.frame``); their
    ``features`` are the item's stored features without the missing ones."""
    common, limit = decisions.common, decisions.limit
    scores = [
        float(s) if ok else None
        for s, ok in zip(part["score"].tolist(), part["scored"].tolist(), strict=True)
    ]
    rows = list(
        zip(
            part.index.tolist(),
            part["target"].tolist(),
            part["calibration"].tolist(),
            part["waiting"].tolist(),
            scores,
            part["reason"].tolist(),
            part["spent_before"].tolist(),
            part["spent_after"].tolist(),
            [None if s != s else int(s) for s in part["supersedes_id"].tolist()],
            part["with_features"].tolist(),
            strict=True,
        )
    )
    now = timezone.now()
    if not _copy_supported():
        with_features = part.index[part["with_features"].to_numpy(dtype=bool)]
        values = _json_rows(decisions.table.loc[with_features])
        features = dict(zip(with_features.tolist(), values, strict=True))
        RoutingDecision.objects.bulk_create(
            [
                RoutingDecision(
                    item_id=item_id,
                    target=target,
                    calibration=calibration,
                    waiting=waiting,
                    score=score,
                    reason=reason,
                    budget_state=_budget_state(limit, before, after),
                    features={
                        k: v
                        for k, v in orjson.loads(features.get(item_id, b"{}")).items()
                        if v is not None
                    },
                    supersedes_id=supersede,
                    created_at=now,
                    **common,
                )
                for (
                    item_id,
                    target,
                    calibration,
                    waiting,
                    score,
                    reason,
                    before,
                    after,
                    supersede,
                    _,
                ) in rows
            ],
            batch_size=1000,
        )
        return
    columns = (
        "position bigint, item_id bigint, target text, calibration boolean, waiting boolean, "
        "score double precision, reason text, spent_before integer, spent_after integer, "
        "supersedes_id bigint, with_features boolean"
    )
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        _stage(cursor, "routing_decisions_stage", columns)
        with cursor.cursor.copy("COPY routing_decisions_stage FROM STDIN") as copy:
            for position, row in enumerate(rows):
                copy.write_row((position, *row))
        cursor.execute(
            f"""INSERT INTO {RoutingDecision._meta.db_table} (project_id, item_id, policy_id,
                policy_name, policy_version, model_version, target, kind, calibration, waiting,
                score, reason, budget_state, features, supersedes_id, created_at)
            SELECT %(project_id)s, s.item_id, %(policy_id)s, %(policy_name)s, %(policy_version)s,
                %(model_version)s, s.target, %(kind)s, s.calibration, s.waiting, s.score, s.reason,
                jsonb_build_object('limit', %(limit)s::integer, 'spent_before', s.spent_before,
                    'spent_after', s.spent_after, 'remaining', %(limit)s::integer - s.spent_after),
                CASE WHEN s.with_features THEN coalesce(jsonb_strip_nulls(f."values"), '{{}}')
                    ELSE '{{}}' END,
                s.supersedes_id, %(now)s
            FROM routing_decisions_stage s
            LEFT JOIN {ItemFeatures._meta.db_table} f
                ON f.item_id = s.item_id AND f.version = %(version)s
            ORDER BY s.position""",
            {**common, "limit": limit, "now": now, "version": FEATURE_VERSION},
        )
        cursor.execute("DROP TABLE routing_decisions_stage")


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
    ids = list(
        Item.objects.filter(project=project, route=Item.Route.UNROUTED)
        .order_by("id")
        .values_list("id", flat=True)
    )
    budget = RoutingBudget.objects.filter(project=project).first()
    spent = budget.spent if budget else 0
    limit = trial.budget_limit(Item.objects.filter(project=project).count())
    remaining = None if limit is None else max(limit - spent, 0)
    plan, _, _ = _plan(trial, ids, remaining, project.pk, side=side_connections_usable())
    counts = {HUMAN: 0, JUDGE: 0, BOTH: 0}
    for target, n in plan["target"].value_counts().items():
        counts[str(target)] = int(n)
    return {"policy": trial.name, "items": len(ids), "targets": counts, "remaining": remaining}


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
