"""Annotations -> one ``Preference`` per item: the final label, who gave it and how sure it is.

The rules (``majority``, the default method):

1. Human labels count when nothing supersedes them (a correction supersedes the label it
   corrects). Once an item has as many as the project's ``overlap``, the strict majority of
   their answers is the final label (pairwise choice, identical listwise ranking, thumb).
2. Otherwise (overlap not reached, or no strict majority) a judge decides when its presentation
   orders agreed: every stored order of that judge on the item parsed, all giving the same
   answer in the item's letters. With several judges, the one that decides is the first of the
   active routing policy's ``judges`` that labelled the item (then the others, by name): when
   its orders disagree the item stays unresolved; the next judge is not asked.
3. ``tie`` and ``both_bad`` are final labels like ``A`` and ``B``: kept, never turned into one.
4. Anything else is unresolved: ``choice`` is None.

``provenance`` says which kinds of label the item has (``hybrid``: both), whoever decided.
``agreement`` is the share of the deciding source's labels that give the choice (for a judge:
all judge labels of the item, so a second judge that disagrees lowers it).

Other methods (``METHOD_NAMES``; the project's choice is an ``exports.Aggregation`` row, see
``exports.aggregation``): ``dawid_skene`` (reliability-weighted vote), ``gold_weighted`` (weights
= accuracy on gold items) and, for rankings, ``bradley_terry``. They are project-level
(``exports.reliability``): one run over all the project's labels answers every item, so a
recompute with them always covers the whole project. ``include_judges`` says whether judges'
labels count; by default they do for ``majority`` (rule 2) and ``bradley_terry``, and do not for
the human-reliability methods: a judge labels every item, twice (both orders), so it would
dominate the reliability estimate and the two orders, being one labeller, break Dawid-Skene's
assumption of independent labels; and the point of those methods is to weigh people. Their
``margin`` combines agreement and strength (``exports.reliability``). Item-level methods plug in
through ``method_register``: a method maps one item's labels to a ``Resolution``.

Race model: one recompute per project at a time (a PostgreSQL transaction advisory lock), each
reading committed labels and writing in the same transaction, so a recompute that started
before a label committed cannot overwrite one that saw it. Recomputing is idempotent: rows whose
values did not change are not written, and ``resolved_at`` keeps the time the current choice
was first reached.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import pandas as pd
from django.db import connection, transaction
from django.db.models.fields.json import KT
from django.utils import timezone

from annotation.models import Annotation, Item, Project
from annotation.schema import TaskType
from routing.models import RoutingPolicy

from . import reliability
from .models import Aggregation, Preference

LOCK_NAMESPACE = 0x7A50  # advisory lock namespace of preference recomputes
WRITE_BATCH = 5000
CHUNK_ITEMS = 20_000

# Where each task type keeps its verdict in a label's payload.
VERDICT_KEY = {TaskType.PAIRWISE: "choice", TaskType.LISTWISE: "ranking", TaskType.THUMBS: "thumb"}


class Label(NamedTuple):
    """What aggregation needs from one annotation. ``verdict`` is hashable (a ranking is a
    tuple) and None when the label gave no answer (an unparsed judge output)."""

    source: str
    judge: str
    order: str
    verdict: Any
    strength: float | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class Context:
    """What a method knows of the project."""

    task_type: str
    overlap: int
    judge_order: tuple[str, ...]  # the routing policy's judges, first first
    include_judges: bool = True


@dataclass(frozen=True)
class Resolution:
    choice: Any
    agreement: float | None
    margin: float | None = None
    strength: float | None = None
    confidence: float | None = None
    decided_by: str = ""
    margins: dict[str, float] | None = None


Method = Callable[[Sequence[Label], Context], Resolution | None]
METHODS: dict[str, Method] = {}


def method_register(name: str, method: Method) -> None:
    """Make an aggregation method available to ``preferences_recompute(method=name)``."""
    METHODS[name] = method


def _strict_majority(votes: Sequence[Any]) -> tuple[Any, int, int] | None:
    """(answer, its votes, the runner-up's votes) when one answer has more than half."""
    if not votes:
        return None
    ranked = Counter(votes).most_common(2)
    top, count = ranked[0]
    if count * 2 <= len(votes):
        return None
    return top, count, ranked[1][1] if len(ranked) > 1 else 0


def _mean(values: Iterable[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def human_majority(labels: Sequence[Label], ctx: Context) -> Resolution | None:
    humans = [label for label in labels if label.source == Annotation.Source.HUMAN]
    if len(humans) < ctx.overlap:
        return None
    votes = [label.verdict for label in humans if label.verdict is not None]
    found = _strict_majority(votes)
    if found is None:
        return None
    choice, count, runner_up = found
    return Resolution(
        choice=choice,
        agreement=count / len(votes),
        margin=(count - runner_up) / len(votes),
        strength=_mean(label.strength for label in humans if label.verdict == choice),
        decided_by=Annotation.Source.HUMAN,
    )


def judge_order(labels: Sequence[Label], ctx: Context) -> list[str]:
    """The judges that labelled the item, the policy's first, then the others by name."""
    present = {label.judge for label in labels if label.source == Annotation.Source.JUDGE}
    first = [name for name in ctx.judge_order if name in present]
    return first + sorted(present - set(first))


def judge_consistent(labels: Sequence[Label], ctx: Context) -> Resolution | None:
    order = judge_order(labels, ctx)
    if not order:
        return None
    judged = [label for label in labels if label.source == Annotation.Source.JUDGE]
    own = [label for label in judged if label.judge == order[0]]
    answers = {label.verdict for label in own}
    if None in answers or len(answers) != 1:
        return None  # an order unparsed, or the orders disagree
    choice = answers.pop()
    backing = sum(1 for label in judged if label.verdict == choice)
    others = Counter(label.verdict for label in judged if label.verdict not in (None, choice))
    runner_up = others.most_common(1)[0][1] if others else 0
    confidences = [label.confidence for label in own if label.confidence is not None]
    return Resolution(
        choice=choice,
        agreement=backing / len(judged),
        margin=(backing - runner_up) / len(judged),
        strength=_mean(label.strength for label in own),
        confidence=min(confidences) if confidences else None,
        decided_by=order[0],
    )


def resolve_majority(labels: Sequence[Label], ctx: Context) -> Resolution | None:
    found = human_majority(labels, ctx)
    if found is None and ctx.include_judges:
        found = judge_consistent(labels, ctx)
    return found


method_register("majority", resolve_majority)

# Project-level methods: (votes, judges=, scale=, gold=) -> {item id: row} (exports.reliability).
PROJECT_METHODS: dict[str, Callable[..., dict[int, dict[str, Any]]]] = {
    "dawid_skene": reliability.dawid_skene,
    "gold_weighted": reliability.gold_weighted,
    "bradley_terry": reliability.bradley_terry,
}
# Whether judges' labels count when the project does not say (see the module).
INCLUDE_JUDGES_DEFAULT = {
    "majority": True,
    "dawid_skene": False,
    "gold_weighted": False,
    "bradley_terry": True,
}
# The methods each task type can use.
METHODS_FOR = {
    TaskType.PAIRWISE: ("majority", "dawid_skene", "gold_weighted"),
    TaskType.THUMBS: ("majority", "dawid_skene", "gold_weighted"),
    TaskType.LISTWISE: ("majority", "bradley_terry"),
}


def method_names(*, task_type: str | None = None) -> list[str]:
    """The methods a project of ``task_type`` can use (None: every known method)."""
    if task_type is not None:
        return [m for m in METHODS_FOR.get(task_type, ()) if m in METHODS or m in PROJECT_METHODS]
    return sorted({*METHODS, *PROJECT_METHODS})


def aggregation_options(*, project: Project) -> tuple[str, bool]:
    """The project's method and whether judges count (``majority`` with judges when unset)."""
    row = Aggregation.objects.filter(project=project).values_list("method", "include_judges")
    method, include = row.first() or ("majority", None)
    return method, INCLUDE_JUDGES_DEFAULT.get(method, True) if include is None else include


def provenance_of(n_human: int, n_judge: int) -> str:
    if n_human and n_judge:
        return Preference.Provenance.HYBRID
    if n_human:
        return Preference.Provenance.HUMAN
    if n_judge:
        return Preference.Provenance.JUDGE
    return ""


def _hashable(verdict: Any) -> Any:
    """Rankings (lists, with nested lists for tied tiers) as tuples, so votes can be counted."""
    return tuple(_hashable(v) for v in verdict) if isinstance(verdict, list) else verdict


def _unhashable(choice: Any) -> Any:
    return [_unhashable(v) for v in choice] if isinstance(choice, tuple) else choice


def policy_judges(*, project: Project) -> tuple[str, ...]:
    judges = (
        RoutingPolicy.objects.filter(project=project, active=True)
        .values_list("judges", flat=True)
        .first()
    )
    return tuple(judges or ())


def labels_load(
    *,
    project: Project,
    item_ids: Sequence[int] | None = None,
    id_range: tuple[int, int] | None = None,
) -> dict[int, list[Label]]:
    """The current (not superseded) labels of the items, grouped by item: one query.

    The verdict and strength are read as text (``payload->>'choice'``): no JSON decoding per
    row, except for rankings, which arrive as JSON text.
    """
    key = VERDICT_KEY[project.task_type]
    rows = Annotation.objects.filter(project=project, superseded_by__isnull=True)
    if item_ids is not None:
        rows = rows.filter(item_id__in=item_ids)
    if id_range is not None:
        rows = rows.filter(item_id__gte=id_range[0], item_id__lte=id_range[1])
    rows = (
        rows.order_by()
        .annotate(_verdict=KT(f"payload__{key}"), _strength=KT("payload__strength"))
        .values_list("item_id", "source", "judge", "order", "_verdict", "_strength", "confidence")
    )
    ranking = key == "ranking"
    grouped: dict[int, list[Label]] = defaultdict(list)
    for item_id, source, judge, order, verdict, strength, confidence in rows.iterator(
        chunk_size=10_000
    ):
        if ranking and verdict is not None:
            verdict = _hashable(orjson.loads(verdict))
        grouped[item_id].append(Label(source, judge, order, verdict, _number(strength), confidence))
    return grouped


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


_FIELDS = Preference.DECIDED_FIELDS


@dataclass(frozen=True)
class RecomputeResult:
    items: int
    written: int
    resolved: int

    def to_dict(self) -> dict[str, int]:
        return {"items": self.items, "written": self.written, "resolved": self.resolved}


Progress = Callable[[int, int], None]  # (items done, items in all)


def preferences_recompute(
    *,
    project: Project,
    item_ids: Iterable[int] | None = None,
    method: str | None = None,
    include_judges: bool | None = None,
    progress: Progress | None = None,
) -> RecomputeResult:
    """Recompute the preferences of the items (None: every item of the project) with
    ``method`` (None: the project's, ``aggregation_options``). A project-level method always
    recomputes the whole project: one item's new label moves every annotator's weight.

    Set-based, in chunks of ``CHUNK_ITEMS`` items (memory stays flat as projects grow): per
    chunk one query for the labels, one for the stored preferences, then an upsert
    (``INSERT ... ON CONFLICT (item_id) DO UPDATE``) of the rows that changed. A project-level
    method first reads all the project's labels in one query and runs once over them.
    """
    if method is None:
        chosen, judges = aggregation_options(project=project)
    else:
        chosen, judges = method, INCLUDE_JUDGES_DEFAULT.get(method, True)
    if include_judges is not None:
        judges = include_judges
    if chosen not in METHODS and chosen not in PROJECT_METHODS:
        raise KeyError(f"unknown aggregation method {chosen!r}")
    project_level = chosen in PROJECT_METHODS
    ids = None if item_ids is None or project_level else sorted(set(item_ids))
    with transaction.atomic():
        _lock(project)
        items = Item.objects.filter(project=project)
        if ids is not None:
            items = items.filter(pk__in=ids)
        item_list = list(items.order_by("pk").values_list("pk", flat=True))
        ctx = Context(
            task_type=project.task_type,
            overlap=project.overlap,
            judge_order=policy_judges(project=project),
            include_judges=judges,
        )
        if project_level:
            table = _project_resolutions(project, chosen, judges)
            decide = lambda item_id, labels: table.get(item_id)  # noqa: E731
        else:
            resolve = METHODS[chosen]
            decide = lambda item_id, labels: resolve(labels, ctx) if labels else None  # noqa: E731
        now = timezone.now()
        written = resolved = 0
        for start in range(0, len(item_list), CHUNK_ITEMS):
            chunk = item_list[start : start + CHUNK_ITEMS]
            changed, chunk_resolved = _chunk_rows(
                project, chunk, named=ids is not None, decide=decide, method=chosen, now=now
            )
            _upsert(changed)
            written += len(changed)
            resolved += chunk_resolved
            if progress is not None:
                progress(start + len(chunk), len(item_list))
    return RecomputeResult(items=len(item_list), written=written, resolved=resolved)


def votes_load(*, project: Project, judges: bool = True) -> pd.DataFrame:
    """The project's current labels (``judges=False``: people's only), one query, as
    ``reliability.VOTE_COLUMNS``; built column-wise, no Python work per label but the read."""
    key = VERDICT_KEY[project.task_type]
    rows = Annotation.objects.filter(project=project, superseded_by__isnull=True)
    if not judges:
        rows = rows.filter(source=Annotation.Source.HUMAN)
    rows = (
        rows.order_by()
        .annotate(_verdict=KT(f"payload__{key}"), _strength=KT("payload__strength"))
        .values_list("item_id", "source", "annotator_id", "external_annotator", "judge",
                     "_verdict", "_strength")
    )  # fmt: skip
    raw = pd.DataFrame.from_records(
        list(rows.iterator(chunk_size=10_000)),
        columns=["item", "source", "user", "external", "judge", "label", "strength"],
    )
    user = "user:" + raw["user"].astype("Int64").astype(str)
    person = user.where(raw["user"].notna(), raw["external"])
    raw["worker"] = raw["judge"].where(raw["source"] == Annotation.Source.JUDGE, person)
    if key == "ranking":
        raw["label"] = raw["label"].map(orjson.loads, na_action="ignore")
    raw["label"] = raw["label"].astype(object).where(raw["label"].notna(), None)
    raw["strength"] = pd.to_numeric(raw["strength"], errors="coerce")
    return raw[reliability.VOTE_COLUMNS]


def _project_resolutions(project: Project, method: str, judges: bool) -> dict[int, Resolution]:
    votes = votes_load(project=project, judges=judges)
    gold = None
    if method == "gold_weighted":
        gold = dict(
            Item.objects.filter(project=project, gold__isnull=False).values_list("pk", "gold")
        )
    scale = len(project.schema.strength_scale) if project.task_type == TaskType.PAIRWISE else 0
    rows = PROJECT_METHODS[method](votes, judges=judges, scale=scale, gold=gold)
    return {
        item_id: Resolution(
            choice=_hashable(row["choice"]),
            agreement=row["agreement"],
            margin=row["margin"],
            strength=row["strength"],
            confidence=row["confidence"],
            decided_by=row["decided_by"],
            margins=row["margins"],
        )
        for item_id, row in rows.items()
    }


def _chunk_rows(
    project: Project,
    chunk: list[int],
    *,
    named: bool,
    decide: Callable[[int, Sequence[Label]], Resolution | None],
    method: str,
    now: datetime,
) -> tuple[list[tuple], int]:
    """The rows of the chunk's items that changed (``_COLUMNS`` order), and how many resolve.

    ``named``: the caller named the items (read them by id); else the chunk is a run of the
    project's items, read by id range."""
    if named:
        labels = labels_load(project=project, item_ids=chunk)
        stored = Preference.objects.filter(project=project, item_id__in=chunk)
    else:
        labels = labels_load(project=project, id_range=(chunk[0], chunk[-1]))
        stored = Preference.objects.filter(
            project=project, item_id__gte=chunk[0], item_id__lte=chunk[-1]
        )
    before = {row[0]: row[1:] for row in stored.values_list("item_id", *_FIELDS, "resolved_at")}
    changed: list[tuple] = []
    resolved = 0
    for item_id in chunk:
        row = _preference_row(item_id, labels.get(item_id, ()), decide, method)
        resolved += row["choice"] is not None
        old = before.get(item_id)
        values = tuple(row[f] for f in _FIELDS)
        if old is not None and old[:-1] == values:
            continue
        if row["choice"] is None:
            resolved_at = None
        elif old is not None and old[0] == row["choice"] and old[-1] is not None:
            resolved_at = old[-1]  # the same choice: resolved when it was first reached
        else:
            resolved_at = now
        changed.append((item_id, project.pk, *values, resolved_at, now))
    return changed, resolved


def _preference_row(
    item_id: int,
    labels: Sequence[Label],
    decide: Callable[[int, Sequence[Label]], Resolution | None],
    method: str,
) -> dict[str, Any]:
    n_human = sum(1 for label in labels if label.source == Annotation.Source.HUMAN)
    n_judge = len(labels) - n_human
    found = decide(item_id, labels)
    return {
        "choice": _unhashable(found.choice) if found else None,
        "margins": found.margins if found else None,
        "strength": found.strength if found else None,
        "margin": found.margin if found else None,
        "provenance": provenance_of(n_human, n_judge),
        "agreement": found.agreement if found else None,
        "n_human": n_human,
        "n_judge": n_judge,
        "method": method,
        "decided_by": found.decided_by if found else "",
        "confidence": found.confidence if found else None,
    }


def _lock(project: Project) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, project.pk])


_COLUMNS = ("item_id", "project_id", *_FIELDS, "resolved_at", "updated_at")
_STAGE = "tandem_stage_preference"


def _upsert(rows: list[tuple]) -> None:
    """Insert or update the rows (``_COLUMNS`` order): ``INSERT ... ON CONFLICT (item_id) DO
    UPDATE``, fed by COPY through a staging table on PostgreSQL."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        _upsert_orm(rows)
        return
    table = connection.ops.quote_name(Preference._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in _COLUMNS)
    json_at = (_COLUMNS.index("choice"), _COLUMNS.index("margins"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.cursor.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    tuple(
                        orjson.dumps(v).decode() if i in json_at and v is not None else v
                        for i, v in enumerate(row)
                    )
                )
        updates = ", ".join(
            f"{connection.ops.quote_name(c)} = EXCLUDED.{connection.ops.quote_name(c)}"
            for c in _COLUMNS[2:]
        )
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGE} "
            f"ON CONFLICT (item_id) DO UPDATE SET {updates}"
        )
        cursor.execute(f"TRUNCATE {_STAGE}")


def _upsert_orm(rows: list[tuple]) -> None:
    objects = [Preference(**dict(zip(_COLUMNS, row, strict=True))) for row in rows]
    for start in range(0, len(objects), WRITE_BATCH):
        Preference.objects.bulk_create(
            objects[start : start + WRITE_BATCH],
            update_conflicts=True,
            unique_fields=["item"],
            update_fields=list(_COLUMNS[2:]),
        )
