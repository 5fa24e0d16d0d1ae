"""Label quality: how far to trust each label. One function per figure; each figure states its
sample (``n``) and is marked ``too_few`` below the configured minimum.

The labels of a project are read by two queries (``quality_labels``) into one pandas frame: one
row per current label (a label superseded by a correction is left out: only the last of a chain
counts), with each item's gold answer and longest candidate (from the candidates' stored
lengths). Every figure is then computed vectorised over that frame, so a page of all figures
costs the same few queries at 300 labels or at 300,000. Pass ``labels=`` to share one frame
between figures (``quality_report`` does).

Every label becomes a nominal value:

- pairwise: the choice, ``A``/``B``/``tie``/``both_bad`` (letters in the item's own order);
  ``None`` is a judge answer that could not be parsed;
- listwise: the candidate ranked first (``A``), or the tied group ranked first (``A=C``);
- thumbs: ``up``/``down``.

Agreement (alpha, kappa, majorities) compares these values, so ties and both-bad are values like
any other: counted, never dropped. Position and length bias need a winner: they count "decided"
labels (one candidate preferred) and report ties, both-bad and unparsed answers beside them.
"""

import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import orjson
import pandas as pd
from django.db import connection
from django.db.models import Count

from accounts.models import User
from tandem.setting_groups import SettingGroup
from tandem.side_work import SideLanes, side_connections_usable

from .models import Annotation, Assignment, Candidate, Item, Project
from .schema import TaskType

HUMAN = Annotation.Source.HUMAN.value
JUDGE = Annotation.Source.JUDGE.value
PAIRWISE_DECIDED = ("A", "B")


@dataclass(frozen=True)
class QualitySettings(SettingGroup):
    """Minimum samples and flag thresholds, overridable through ``settings.TANDEM_QUALITY``
    (``TANDEM_QUALITY_MIN_ITEMS`` and friends in the environment)."""

    setting: ClassVar[str] = "TANDEM_QUALITY"

    # A figure computed on fewer items (or labels) than this is reported as "too few".
    min_items: int = 30
    # Cohen's kappa of two annotators needs this many items both labelled.
    min_pair_items: int = 20
    # Cohen's kappa is listed for at most this many pairs (those sharing the most items).
    max_pairs: int = 50
    # Confidence level of the binomial intervals (Wilson).
    confidence: float = 0.95
    # Flags: gold accuracy and agreement with peers (or, for judges, with the human majority)
    # below these; position bias further than this from chance with an interval excluding chance.
    flag_gold_accuracy: float = 0.7
    flag_peer_agreement: float = 0.6
    flag_position_bias: float = 0.15


# --- result types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A number and the sample it rests on: ``n`` items (or labels, as the figure says).
    ``too_few`` when ``n`` is below the minimum; the value is still given, but is not to be
    trusted and raises no flag. ``value`` is None when there was nothing to compute it on."""

    value: float | None
    n: int
    too_few: bool


@dataclass(frozen=True)
class Share(Figure):
    """A proportion ``successes / n`` with its binomial (Wilson) confidence interval."""

    successes: int
    low: float | None
    high: float | None


@dataclass(frozen=True)
class FleissKappa(Figure):
    raters: int  # the items counted are those with exactly this many human labels


@dataclass(frozen=True)
class PairKappa(Figure):
    annotators: tuple[str, str]


@dataclass(frozen=True)
class CohenKappas:
    """Cohen's kappa per pair of annotators with enough items in common (the ``max_pairs``
    pairs sharing the most), and their mean over ``pairs_total`` such pairs."""

    mean: Figure
    pairs: list[PairKappa]
    pairs_total: int


@dataclass(frozen=True)
class PositionBias:
    """How often the candidate shown first wins: ``first_wins`` over the decided labels whose
    presentation order is known; ``chance`` is 1/k. Ties, both-bad and unparsed answers are
    counted beside it, and labels without a known order in ``unknown_order``."""

    first_wins: Share
    chance: float
    ties: int
    both_bad: int
    unparsed: int
    unknown_order: int


@dataclass(frozen=True)
class LengthBias:
    """How often the longer candidate wins (decided labels on items with one longest
    candidate), per labeller, against the same share in the human majority (``reference``)."""

    reference: Share
    by_labeller: dict[tuple[str, str], Share]


@dataclass(frozen=True)
class Activity:
    labels: int
    median_seconds: float | None
    skips: int


@dataclass(frozen=True)
class AnnotatorRow:
    annotator: str
    labels: int
    skips: int
    median_seconds: float | None
    gold_accuracy: Share
    peer_agreement: Share
    position_bias: PositionBias | None
    length_bias: Share | None
    flags: list[str]


@dataclass(frozen=True)
class JudgeRow:
    judge: str
    labels: int
    human_agreement: Share
    order_consistency: Share
    unparsed: Share
    position_bias: PositionBias | None
    length_bias: Share | None
    flags: list[str]


@dataclass(frozen=True)
class Agreement:
    krippendorff_alpha: Figure
    fleiss_kappa: FleissKappa
    cohen_kappa: CohenKappas


@dataclass(frozen=True)
class QualityReport:
    project_id: int
    task_type: str
    items_labelled: int
    human_labels: int
    judge_labels: int
    agreement: Agreement
    annotators: list[AnnotatorRow]
    judges: list[JudgeRow]
    length_bias_reference: Share | None
    settings: QualitySettings = field(default_factory=QualitySettings)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the read --------------------------------------------------------------------------------

LABEL_COLUMNS = ["item", "source", "worker", "raw", "order", "time_ms"]
ITEM_COLUMNS = ["item", "gold", "longest"]
NUMBER_COLUMNS = ("item", "time_ms", "longest")
LETTERS = [chr(65 + i) for i in range(26)]
# Items per CSV value of the labels' read: a chunk of a project must stay well under PostgreSQL's
# 1 GB per value (at ~50 bytes a label: 100 labels an item). One chunk needs no GROUP BY (no sort).
ITEMS_PER_CHUNK = 200_000


def quality_labels(*, project: Project) -> pd.DataFrame:
    """The project's current labels: columns ``item``, ``source``, ``worker`` (username,
    imported annotator name or judge; "" when unknown), ``label`` (the nominal value, see the
    module), ``order`` ("" when unknown), ``first`` (the letter shown first), ``time_ms``,
    ``gold`` (the item's gold answer as a nominal value) and ``longer`` (the letter of the item's
    one longest candidate; missing when two share the longest length).

    Two queries: one row per item (gold answer, longest candidate; from the candidates' stored
    lengths by an index-only scan) and one row per current label (six narrow columns, no join
    but the annotator's name); pandas puts them together by item.

    Text columns are pandas categoricals; ``label``, ``first``, ``gold`` and ``longer`` share
    one set of categories, so they compare with each other element by element."""
    items_sql, labels_sql, params = _items_sql(project), _labels_sql(project), [project.pk]
    if side_connections_usable():
        # The two reads at once, the per-item one on a second connection: the server builds
        # both texts in two backends (two cores) instead of one after the other. Outside a
        # transaction only, where a second connection sees what this one sees (both read
        # committed data; an item added between the two reads has no gold or length, as if it
        # had none). Inside one (tests, a caller's atomic block), the reads stay on this one.
        chunks = 1 + Item.objects.filter(project_id=project.pk).count() // ITEMS_PER_CHUNK
        with SideLanes(("items",), enabled=True) as lanes:
            pending = lanes.submit(
                "items", _read_postgres, items_sql, params, ITEM_COLUMNS, chunks=1
            )
            labels = _read_postgres(labels_sql, params, LABEL_COLUMNS, chunks=chunks)
            items = pending.result()
    elif connection.vendor == "postgresql":
        items = _read_postgres(items_sql, params, ITEM_COLUMNS, chunks=1)
        chunks = 1 + len(items) // ITEMS_PER_CHUNK
        labels = _read_postgres(labels_sql, params, LABEL_COLUMNS, chunks=chunks)
    else:
        items = _fetch(items_sql, params, ITEM_COLUMNS)
        labels = _fetch(labels_sql, params, LABEL_COLUMNS)
    per_item = items.set_index("item").reindex(labels["item"].to_numpy())
    for name in ("gold", "longest"):
        labels[name] = per_item[name].array  # categorical stays categorical
    return _normalise(labels, project.task_type)


def _fetch(sql: str, params: list[Any], columns: list[str]) -> pd.DataFrame:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return pd.DataFrame.from_records(cursor.fetchall(), columns=columns)


def _items_sql(project: Project) -> str:
    """One row per item of the project: its gold answer (JSON text) and the position of its one
    longest candidate (NULL when two share the longest length, or for thumbs), from the
    candidates' stored ``text_bytes`` (the covering index of migration 0008 answers it without
    reading the candidates' rows)."""
    item, candidate = Item._meta.db_table, Candidate._meta.db_table
    gold = "ci.gold::text" if connection.vendor == "postgresql" else "ci.gold"
    if project.task_type == TaskType.PAIRWISE:
        return f"""
            SELECT ci.id AS item, MAX({gold}) AS gold,
                   CASE WHEN MAX(CASE WHEN c.position = 0 THEN c.text_bytes END)
                             > MAX(CASE WHEN c.position = 1 THEN c.text_bytes END) THEN 0
                        WHEN MAX(CASE WHEN c.position = 1 THEN c.text_bytes END)
                             > MAX(CASE WHEN c.position = 0 THEN c.text_bytes END) THEN 1
                   END AS longest
            FROM {item} ci LEFT JOIN {candidate} c ON c.item_id = ci.id
            WHERE ci.project_id = %s GROUP BY ci.id"""
    if project.task_type == TaskType.LISTWISE:
        return f"""
            SELECT item, MAX(gold) AS gold,
                   CASE WHEN MAX(CASE WHEN r = 2 THEN n END) IS NULL
                             OR MAX(CASE WHEN r = 1 THEN n END) > MAX(CASE WHEN r = 2 THEN n END)
                        THEN MAX(CASE WHEN r = 1 THEN position END) END AS longest
            FROM (SELECT ci.id AS item, {gold} AS gold, c.position, c.text_bytes AS n,
                         ROW_NUMBER() OVER (PARTITION BY ci.id
                                            ORDER BY c.text_bytes DESC, c.position) AS r
                  FROM {item} ci LEFT JOIN {candidate} c ON c.item_id = ci.id
                  WHERE ci.project_id = %s) ranked
            GROUP BY item"""
    return f"""SELECT ci.id AS item, {gold} AS gold, NULL AS longest
               FROM {item} ci WHERE ci.project_id = %s"""


def _labels_sql(project: Project) -> str:
    """One row per current label of the project (a label that a correction supersedes is left
    out): the item, source, labeller, answer (text), presentation order and time."""
    annotation, user = Annotation._meta.db_table, User._meta.db_table
    field = {TaskType.PAIRWISE: "choice", TaskType.LISTWISE: "ranking"}.get(
        project.task_type, "thumb"
    )
    return f"""
        SELECT a.item_id AS item, a.source AS source,
               COALESCE(u.username, NULLIF(a.external_annotator, ''), NULLIF(a.judge, ''), '')
                   AS worker,
               a.payload ->> '{field}' AS raw, a."order" AS "order",
               a.time_spent_ms AS time_ms
        FROM {annotation} a
        LEFT JOIN {user} u ON u.id = a.annotator_id
        WHERE a.project_id = %s
          AND NOT EXISTS (SELECT 1 FROM {annotation} s WHERE s.supersedes_id = a.id)"""


def _read_postgres(sql: str, params: list[Any], columns: list[str], chunks: int) -> pd.DataFrame:
    """PostgreSQL: the server writes the rows as CSV text in one value per chunk of items (a
    COPY or a plain fetch would hand Python one message or tuple per row), and Arrow parses
    them, text columns dictionary-encoded."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    fields = []
    for name in columns:
        column = f'q."{name}"'
        if name in NUMBER_COLUMNS:
            fields.append(f"COALESCE(CAST({column} AS TEXT), '\\N')")
        else:  # quoted, quotes doubled: any text survives; an unquoted \N is NULL
            fields.append(f"""COALESCE('"' || REPLACE({column}, '"', '""') || '"', '\\N')""")
    line = " || ',' || ".join(fields)
    group = f"GROUP BY MOD(q.item, {chunks})" if chunks > 1 else ""
    # Text, not bytea: psycopg decodes UTF-8 faster than bytea's hex (0.13 s at 500,000 rows).
    statement = f"SELECT STRING_AGG({line}, E'\\n') FROM ({sql}) q {group}"
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        values = [row[0].encode() for row in cursor.fetchall() if row[0]]
    if not values:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    text = pa.dictionary(pa.int32(), pa.string())
    types = {name: (pa.float64() if name in NUMBER_COLUMNS else text) for name in columns}
    types["item"] = pa.int64()
    data = values[0] if len(values) == 1 else b"\n".join(values)
    table = arrow_csv.read_csv(
        pa.py_buffer(data),
        read_options=arrow_csv.ReadOptions(column_names=columns),
        convert_options=arrow_csv.ConvertOptions(
            column_types=types,
            null_values=["\\N"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return table.to_pandas()


def _normalise(frame: pd.DataFrame, task_type: str) -> pd.DataFrame:
    """Categoricals throughout: every figure groups and compares on small integer codes."""
    raw, order, gold = (_category(frame[c]) for c in ("raw", "order", "gold"))
    label_of = _top_of_ranking_json if task_type == TaskType.LISTWISE else _plain
    mapped = {
        "label": [label_of(c) for c in raw.cat.categories],
        "gold": [_gold_value(c, task_type) for c in gold.cat.categories],
        "first": [c[:1] or None for c in order.cat.categories],
    }
    vocabulary = pd.Index(
        sorted({v for values in mapped.values() for v in values if v is not None} | set(LETTERS))
    )
    longest = pd.to_numeric(frame["longest"], errors="coerce").to_numpy()
    longer_codes = np.where(
        np.isnan(longest), -1, vocabulary.get_indexer(LETTERS)[np.nan_to_num(longest).astype(int)]
    )
    return pd.DataFrame(
        {
            "item": frame["item"].astype("int64").to_numpy(),
            "source": _category(frame["source"]),
            "worker": _filled(_category(frame["worker"])),
            "order": _filled(order),
            "time_ms": pd.to_numeric(frame["time_ms"], errors="coerce").astype("float64"),
            "label": _recode(raw, mapped["label"], vocabulary),
            "first": _recode(order, mapped["first"], vocabulary),
            "gold": _recode(gold, mapped["gold"], vocabulary),
            "longer": pd.Categorical.from_codes(longer_codes, categories=vocabulary),
        }
    )


def _category(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.remove_unused_categories()
    return values.astype(object).astype("category")


def _filled(values: pd.Series) -> pd.Series:
    """A categorical with missing values as "" (an unknown worker or order)."""
    if "" not in values.cat.categories:
        values = values.cat.add_categories([""])
    return values.fillna("")


def _recode(values: pd.Series, mapped: list[Any], vocabulary: pd.Index) -> pd.Categorical:
    """The categorical ``values`` with each category replaced by ``mapped`` (same order), as
    codes into ``vocabulary``; missing stays missing."""
    lookup = np.append(vocabulary.get_indexer(pd.Index(mapped, dtype=object)), -1)
    return pd.Categorical.from_codes(lookup[values.cat.codes.to_numpy()], categories=vocabulary)


def _plain(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _top_of_ranking(ranking: Any) -> str | None:
    if not isinstance(ranking, list) or not ranking:
        return None
    top = ranking[0]
    return "=".join(sorted(top)) if isinstance(top, list) else str(top)


def _top_of_ranking_json(text: str) -> str | None:
    try:
        return _top_of_ranking(orjson.loads(text))
    except orjson.JSONDecodeError:
        return None


def _gold_value(text: Any, task_type: str) -> str | None:
    """A gold answer (JSON: ``"A"``, ``{"choice": "A"}``, ``"up"``, a ranking) as a value."""
    if text is None:
        return None
    try:
        gold = orjson.loads(text) if isinstance(text, str | bytes) else text
    except orjson.JSONDecodeError:
        gold = text
    if isinstance(gold, dict):
        gold = gold.get("choice", gold.get("ranking", gold.get("thumb")))
    if task_type == TaskType.LISTWISE:
        return _top_of_ranking(gold)
    return gold if isinstance(gold, str) else None


def _labels(project: Project, labels: pd.DataFrame | None) -> pd.DataFrame:
    return quality_labels(project=project) if labels is None else labels


def _config(config: QualitySettings | None) -> QualitySettings:
    return QualitySettings.load() if config is None else config


# --- building blocks ---------------------------------------------------------------------------


def _share(successes: int, n: int, config: QualitySettings) -> Share:
    low, high = _wilson(np.array([successes]), np.array([n]), config)
    return Share(
        value=successes / n if n else None,
        n=int(n),
        too_few=n < config.min_items,
        successes=int(successes),
        low=low[0],
        high=high[0],
    )


def _wilson(
    successes: np.ndarray, n: np.ndarray, config: QualitySettings
) -> tuple[list[float | None], list[float | None]]:
    from statsmodels.stats.proportion import proportion_confint

    successes, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    safe = np.where(n > 0, n, 1)
    low, high = proportion_confint(successes, safe, alpha=1 - config.confidence, method="wilson")
    empty = n == 0

    def values(bounds: Any) -> list[float | None]:
        return [
            None if e else round(float(v), 6)
            for v, e in zip(np.atleast_1d(bounds), empty, strict=True)
        ]

    return values(low), values(high)


def _shares(successes: pd.Series, n: pd.Series, config: QualitySettings) -> dict[Any, Share]:
    """Share per group from aligned counts (vectorised Wilson intervals)."""
    successes = successes.reindex(n.index, fill_value=0)
    low, high = _wilson(successes.to_numpy(), n.to_numpy(), config)
    return {
        key: Share(
            value=float(s) / float(total) if total else None,
            n=int(total),
            too_few=int(total) < config.min_items,
            successes=int(s),
            low=lo,
            high=hi,
        )
        for key, s, total, lo, hi in zip(n.index, successes, n, low, high, strict=True)
    }


def _empty_share(config: QualitySettings) -> Share:
    return _share(0, 0, config)


def _human(labels: pd.DataFrame) -> pd.DataFrame:
    return labels[(labels["source"] == HUMAN) & labels["label"].notna()]


@dataclass(frozen=True)
class Votes:
    """The human votes as a matrix: ``matrix[i, v]`` labels gave value ``values[v]`` on item
    ``items[i]``; ``row_item`` and ``row_value`` place each label (row of the frame) in it."""

    items: np.ndarray
    values: pd.Index
    matrix: np.ndarray
    row_item: np.ndarray
    row_value: np.ndarray


# One frame's human votes and majority, kept while that frame lives: the figures of a report
# share one frame (nothing changes a frame once ``quality_labels`` has built it), and five of
# them need the votes. Keyed by the frame's identity (a weak reference, so a new frame at the
# same address is never taken for the old one); an entry goes when its frame does.
_MEMO: dict[str, tuple[weakref.ref, Any]] = {}


def _memo(name: str, labels: pd.DataFrame, compute: Callable[[pd.DataFrame], Any]) -> Any:
    found = _MEMO.get(name)
    if found is not None and found[0]() is labels:
        return found[1]
    value = compute(labels)
    # Dropped with the frame (a miss at worst, if a newer frame's entry goes with it).
    _MEMO[name] = (weakref.ref(labels, lambda _: _MEMO.pop(name, None)), value)
    return value


def _human_of(labels: pd.DataFrame) -> pd.DataFrame:
    return _memo("human", labels, _human)


def _human_votes_of(labels: pd.DataFrame) -> Votes:
    return _memo("votes", labels, lambda frame: human_votes(_human_of(frame)))


def human_votes(human: pd.DataFrame) -> Votes:
    row_item, items = pd.factorize(human["item"].to_numpy())
    codes = human["label"].cat.codes.to_numpy()
    used = np.unique(codes)
    lookup = np.full(len(human["label"].cat.categories), -1)
    lookup[used] = np.arange(len(used))
    row_value = lookup[codes]
    matrix = np.bincount(
        row_item * len(used) + row_value, minlength=len(items) * len(used)
    ).reshape(len(items), len(used))
    values = pd.Index(human["label"].cat.categories[used], dtype=object)
    return Votes(items, values, matrix, row_item, row_value)


def _unique_argmax(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the index of the largest count, and whether it is the only largest (> 0)."""
    if matrix.size == 0:
        return np.zeros(len(matrix), dtype=int), np.zeros(len(matrix), dtype=bool)
    top = matrix.max(axis=1)
    unique = ((matrix == top[:, None]).sum(axis=1) == 1) & (top > 0)
    return matrix.argmax(axis=1), unique


def human_majority(*, labels: pd.DataFrame) -> pd.Series:
    """The human majority value per item (items with a tie for the most votes have none)."""
    return _memo("majority", labels, _human_majority)


def _human_majority(labels: pd.DataFrame) -> pd.Series:
    votes = _human_votes_of(labels)
    winner, unique = _unique_argmax(votes.matrix)
    majority = pd.Series(np.asarray(votes.values, dtype=object)[winner], index=votes.items)
    return majority[unique]


def _majority_codes(labels: pd.DataFrame, items: np.ndarray) -> np.ndarray:
    """The human majority of each of ``items`` as a code of ``labels["label"]`` (-1: none)."""
    majority = human_majority(labels=labels)
    codes = labels["label"].cat.categories.get_indexer(majority.to_numpy())
    lookup = np.append(codes, -1)
    return lookup[pd.Index(majority.index).get_indexer(items)]


def _decided(labels: pd.DataFrame, task_type: str) -> pd.Series:
    """Labels that prefer one candidate: A/B (pairwise), a single letter on top (listwise)."""
    label = labels["label"]
    if task_type == TaskType.PAIRWISE:
        return label.isin(PAIRWISE_DECIDED)
    if task_type == TaskType.LISTWISE:
        return label.isin([v for v in label.cat.categories if len(v) == 1])
    return pd.Series(False, index=labels.index)


def _per_labeller(
    frame: pd.DataFrame, counts: dict[str, Any], how: str | dict[str, str] = "sum"
) -> pd.DataFrame:
    """Sum (or, where ``how`` says "max" for it, the largest) of each column of ``counts``
    (aligned with the frame's rows, or a scalar) per named labeller, indexed by ``(source,
    worker)`` in category order, labellers without rows left out. By ``np.bincount`` over the
    categories' codes: a pandas groupby of two categoricals cost several times more, six times
    a report."""
    sources, workers = frame["source"].cat.categories, frame["worker"].cat.categories
    source = frame["source"].cat.codes.to_numpy().astype(np.int64)
    worker = frame["worker"].cat.codes.to_numpy().astype(np.int64)
    named = (source >= 0) & (worker >= 0)
    blank = np.asarray(workers == "", dtype=bool)  # per category: the unknown worker
    named[named] = ~blank[worker[named]]
    keys = source[named] * len(workers) + worker[named]
    size = len(sources) * len(workers)
    present = np.flatnonzero(np.bincount(keys, minlength=size))
    columns = {}
    for name, values in counts.items():
        values = np.broadcast_to(np.asarray(values), (len(frame),))[named]
        if (how.get(name, "sum") if isinstance(how, dict) else how) == "max":
            out = np.full(size, np.iinfo(np.int64).min)
            np.maximum.at(out, keys, values.astype(np.int64))
        else:
            out = np.bincount(keys, weights=values.astype(np.float64), minlength=size)
            out = out.astype(np.int64)
        columns[name] = out[present]
    index = pd.MultiIndex.from_arrays(
        [sources[present // len(workers)], workers[present % len(workers)]],
        names=["source", "worker"],
    )
    return pd.DataFrame(columns, index=index)


def _keyed(shares: dict[Any, Share]) -> dict[tuple[str, str], Share]:
    return {(str(k[0]), str(k[1])): v for k, v in shares.items()}


# --- agreement between people -------------------------------------------------------------------


def krippendorff_alpha(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> Figure:
    """Krippendorff's alpha (nominal) of the human labels, by the ``krippendorff`` package, on
    the items with at least two human labels (``n``). Pairwise, listwise (the top) and thumbs."""
    import krippendorff

    config = _config(config)
    matrix = _human_votes_of(_labels(project, labels)).matrix
    matrix = matrix[matrix.sum(axis=1) >= 2]
    n = len(matrix)
    value = None
    if n and matrix.shape[1] >= 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            value = _finite(krippendorff.alpha(value_counts=matrix, level_of_measurement="nominal"))
    elif n:
        value = 1.0  # one value used throughout: perfect agreement, nothing to tell apart
    return Figure(value=_round(value), n=n, too_few=n < config.min_items)


def fleiss_kappa(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> FleissKappa:
    """Fleiss' kappa of the human labels (statsmodels). Fleiss' kappa wants the same number of
    raters per item: it is computed on the items with the most common number of human labels
    (two or more), ``raters``; ``n`` is how many items that is. All task types."""
    from statsmodels.stats import inter_rater

    config = _config(config)
    matrix = _human_votes_of(_labels(project, labels)).matrix
    totals = matrix.sum(axis=1)
    multi = totals[totals >= 2]
    if not len(multi):
        return FleissKappa(value=None, n=0, too_few=True, raters=0)
    raters = int(np.bincount(multi).argmax())  # the most common count (the smallest on a tie)
    table = matrix[totals == raters]
    value = 1.0  # one value used throughout
    if table.shape[1] >= 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            value = _finite(inter_rater.fleiss_kappa(table, method="fleiss"))
    n = len(table)
    return FleissKappa(value=_round(value), n=n, too_few=n < config.min_items, raters=raters)


def cohen_kappa_pairs(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> CohenKappas:
    """Cohen's kappa (statsmodels' simple kappa, from each pair's contingency table; every pair
    at once in numpy, as one call per pair cost 0.5 s at 435 pairs) for every pair of named
    annotators with at least ``min_pair_items`` items in common; ``n`` is the items they share.
    The mean is over all those pairs (``pairs_total``), the list keeps the ``max_pairs`` pairs
    sharing the most. All task types."""
    config = _config(config)
    human = _human_of(_labels(project, labels))
    human = human[human["worker"] != ""].drop_duplicates(["item", "worker"], keep="last")
    workers = human["worker"].cat.categories
    n_values = len(human["label"].cat.categories)
    left = pd.DataFrame(
        {
            "item": human["item"].to_numpy(),
            "w": human["worker"].cat.codes.to_numpy().astype(np.int64),
            "v": human["label"].cat.codes.to_numpy().astype(np.int64),
        }
    )
    pairs = left.merge(left, on="item", suffixes=("1", "2"))
    pairs = pairs[pairs["w1"] < pairs["w2"]]
    pair = pairs["w1"].to_numpy() * len(workers) + pairs["w2"].to_numpy()
    sizes = pd.Series(pair).value_counts()
    eligible = sizes[sizes >= config.min_pair_items]
    eligible = eligible.sort_values(ascending=False, kind="stable")
    if eligible.empty:
        return CohenKappas(mean=Figure(None, 0, True), pairs=[], pairs_total=0)
    # Every eligible pair's contingency table at once (pair, value 1, value 2), then kappa as
    # statsmodels' ``cohens_kappa`` computes it (simple, unweighted): (p_o - p_e) / (1 - p_e),
    # p_e the sum over values of the two annotators' marginal shares multiplied.
    keys = eligible.index.to_numpy()
    row = np.full(len(workers) * len(workers), -1)
    row[keys] = np.arange(len(keys))
    row = row[pair]
    kept = row >= 0
    cells = (row[kept] * n_values + pairs["v1"].to_numpy()[kept]) * n_values
    cells += pairs["v2"].to_numpy()[kept]
    tables = np.bincount(cells, minlength=len(keys) * n_values * n_values)
    tables = tables.reshape(len(keys), n_values, n_values).astype(float)
    nobs = tables.sum(axis=(1, 2))
    agree = np.trace(tables, axis1=1, axis2=2)
    freq_row, freq_col = tables.sum(axis=2) / nobs[:, None], tables.sum(axis=1) / nobs[:, None]
    agree_exp = (freq_col * freq_row).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # one value only: undefined
        values = (agree / nobs - agree_exp) / (1 - agree_exp)
    kappas = [
        PairKappa(
            value=_round(_finite(value)),
            n=int(n),
            too_few=False,
            annotators=tuple(
                sorted((str(workers[key // len(workers)]), str(workers[key % len(workers)])))
            ),
        )
        for key, n, value in zip(keys, eligible.to_numpy(), values, strict=True)
    ]
    finite = [k.value for k in kappas if k.value is not None]
    mean = Figure(
        value=_round(float(np.mean(finite))) if finite else None, n=len(kappas), too_few=False
    )
    return CohenKappas(mean=mean, pairs=kappas[: config.max_pairs], pairs_total=len(kappas))


# --- per annotator -----------------------------------------------------------------------------


def gold_accuracy(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> dict[str, Share]:
    """Per annotator: the share of their labels on gold items that give the gold answer
    (``n``: their labels on gold items). A tie or both-bad is right only where gold says so.
    Pairwise, thumbs, listwise (the top against gold's top)."""
    config = _config(config)
    human = _human_of(_labels(project, labels))
    gold = human[human["gold"].notna() & (human["worker"] != "")]
    tally = _per_labeller(gold, {"right": gold["label"] == gold["gold"], "n": 1})
    return {w: s for (_, w), s in _shares(tally["right"], tally["n"], config).items()}


def peer_agreement(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> dict[str, Share]:
    """Per annotator: how often their label equals the majority of the OTHER people's labels on
    the item (leave-one-out; ``n``: their labels on items where the others have a majority).
    All task types."""
    config = _config(config)
    labels = _labels(project, labels)
    human = _human_of(labels)
    if human.empty:
        return {}
    votes = _human_votes_of(labels)  # its rows are ``human``'s
    peers = votes.matrix[votes.row_item]  # a copy: one row per label
    peers[np.arange(len(peers)), votes.row_value] -= 1  # leave this label out
    winner, unique = _unique_argmax(peers)
    tally = _per_labeller(human[unique], {"agreed": (winner == votes.row_value)[unique], "n": 1})
    return {w: s for (_, w), s in _shares(tally["agreed"], tally["n"], config).items()}


def annotator_activity(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> dict[str, Activity]:
    """Per annotator: current labels, median time on a label (seconds, where the client
    measured it) and skipped leases (one more query: skips are leases, not labels)."""
    labels = _labels(project, labels)
    human = labels[(labels["source"] == HUMAN) & (labels["worker"] != "")]
    by_worker = human.groupby("worker", observed=True)
    counts, medians = by_worker.size(), by_worker["time_ms"].median()
    skips = dict(
        Assignment.objects.filter(project=project, status=Assignment.Status.SKIPPED)
        .values_list("annotator__username")
        .annotate(n=Count("id"))
        .order_by()
    )
    workers = sorted(set(map(str, counts.index)) | set(skips))
    return {
        w: Activity(
            labels=int(counts.get(w, 0)),
            median_seconds=_seconds(medians.get(w)),
            skips=int(skips.get(w, 0)),
        )
        for w in workers
    }


# --- per judge ---------------------------------------------------------------------------------


def _judges(labels: pd.DataFrame) -> pd.DataFrame:
    return labels[(labels["source"] == JUDGE) & (labels["worker"] != "")]


def judge_human_agreement(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> dict[str, Share]:
    """Per judge: how often a parsed verdict equals the human majority, over the judge's labels
    on items where people have a majority (both presentation orders count, each once). Unparsed
    answers are left out here and reported by ``judge_unparsed``. All task types."""
    config = _config(config)
    labels = _labels(project, labels)
    judged = _judges(labels)
    judged = judged[judged["label"].notna()]
    majority = _majority_codes(labels, judged["item"].to_numpy())
    counted = majority >= 0
    judged = judged[counted]
    agreed = judged["label"].cat.codes.to_numpy() == majority[counted]
    tally = _per_labeller(judged, {"agreed": agreed, "n": 1})
    return {w: s for (_, w), s in _shares(tally["agreed"], tally["n"], config).items()}


def judge_order_consistency(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> dict[str, Share]:
    """Per judge: of the items it judged in two or more presentation orders (all answers
    parsed), the share where every order gave the same verdict (``n``: such items). A tie in
    both orders is consistent. Pairwise and listwise (the top)."""
    config = _config(config)
    judged = _judges(_labels(project, labels))
    judged = judged[judged["order"] != ""]
    codes = pd.DataFrame(
        {
            "worker": judged["worker"],
            "item": judged["item"],
            "order": judged["order"].cat.codes,
            "label": judged["label"].cat.codes,  # -1: unparsed
        }
    )
    spans = codes.groupby(["worker", "item"], observed=True).agg(["min", "max"])
    both = spans[(spans["order", "min"] != spans["order", "max"]) & (spans["label", "min"] >= 0)]
    consistent = (both["label", "min"] == both["label", "max"]).groupby(level="worker").sum()
    return {
        str(w): s
        for w, s in _shares(consistent, both.groupby(level="worker").size(), config).items()
    }


def judge_unparsed(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> dict[str, Share]:
    """Per judge: the share of its answers that could not be parsed (choice null). All types."""
    config = _config(config)
    judged = _judges(_labels(project, labels))
    tally = _per_labeller(judged, {"unparsed": judged["label"].isna(), "n": 1})
    return {w: s for (_, w), s in _shares(tally["unparsed"], tally["n"], config).items()}


# --- bias --------------------------------------------------------------------------------------


def position_bias(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> dict[tuple[str, str], PositionBias]:
    """Per labeller (``(source, worker)``): how often the candidate shown first wins, with a
    Wilson interval; chance is 1/k. Pairwise (A/B shown first) and listwise (the first shown
    ranked top); thumbs show one candidate and have no position bias (empty result)."""
    config = _config(config)
    labels = _labels(project, labels)
    if project.task_type == TaskType.THUMBS or labels.empty:
        return {}
    label = labels["label"]
    known = (labels["order"] != "").to_numpy()
    decided = _decided(labels, project.task_type).to_numpy() & known
    order = labels["order"]
    lengths = np.append(order.cat.categories.str.len().to_numpy(), 0)[order.cat.codes.to_numpy()]
    if project.task_type == TaskType.LISTWISE:
        # A tied top is neither decided nor a pairwise tie; count it with the ties.
        ties = label.notna().to_numpy() & ~_decided(labels, project.task_type).to_numpy()
    else:
        ties = (label == "tie").to_numpy()
    tally = _per_labeller(
        labels,
        {
            "wins": decided & (label == labels["first"]).to_numpy(),
            "decided": decided,
            "ties": ties,
            "both_bad": (label == "both_bad").to_numpy(),
            "unparsed": label.isna().to_numpy(),
            "unknown_order": ~known,
            "k": np.where(known, lengths, 0),
        },
        how={
            "wins": "sum",
            "decided": "sum",
            "ties": "sum",
            "both_bad": "sum",
            "unparsed": "sum",
            "unknown_order": "sum",
            "k": "max",
        },
    )
    shares = _shares(tally["wins"], tally["decided"], config)
    return {
        (str(key[0]), str(key[1])): PositionBias(
            first_wins=shares[key],
            chance=round(1 / (row.k if row.k > 0 else 2), 6),
            ties=int(row.ties),
            both_bad=int(row.both_bad),
            unparsed=int(row.unparsed),
            unknown_order=int(row.unknown_order),
        )
        for key, row in zip(tally.index, tally.itertuples(index=False), strict=True)
    }


def length_bias(
    *, project: Project, labels: pd.DataFrame | None = None, config: QualitySettings | None = None
) -> LengthBias | None:
    """How often the longer candidate wins, per labeller and in the human majority (the
    reference a labeller is compared with), over decided labels on items with one longest
    candidate (longer in UTF-8 bytes). Pairwise and listwise (the longest ranked top); None for
    thumbs."""
    config = _config(config)
    labels = _labels(project, labels)
    if project.task_type == TaskType.THUMBS:
        return None
    counted = labels[_decided(labels, project.task_type) & labels["longer"].notna()]
    tally = _per_labeller(counted, {"wins": counted["label"] == counted["longer"], "n": 1})
    by_labeller = _keyed(_shares(tally["wins"], tally["n"], config))

    # Per item with human labels (the others have no majority): its majority as a code of
    # ``labels["label"]`` (-1: none) and its longer candidate, read at its first human label.
    votes = _human_votes_of(labels)
    first = np.zeros(len(votes.items), dtype=np.int64)
    first[votes.row_item[::-1]] = np.arange(len(votes.row_item))[::-1]
    longer = _human_of(labels)["longer"].cat.codes.to_numpy()[first]
    winner, unique = _unique_argmax(votes.matrix)
    majority = labels["label"].cat.categories.get_indexer(votes.values)[winner]
    majority = np.where(unique, majority, -1)
    decided_codes = labels["label"].cat.categories.get_indexer(
        list(PAIRWISE_DECIDED)
        if project.task_type == TaskType.PAIRWISE
        else [v for v in labels["label"].cat.categories if len(v) == 1]
    )
    counted_items = np.isin(majority, decided_codes) & (longer >= 0)
    wins = int((majority[counted_items] == longer[counted_items]).sum())
    return LengthBias(
        reference=_share(wins, int(counted_items.sum()), config), by_labeller=by_labeller
    )


# --- the report --------------------------------------------------------------------------------


def quality_report(*, project: Project, config: QualitySettings | None = None) -> QualityReport:
    """Every figure of a project, from one read of its labels (plus one for skipped leases)."""
    config = _config(config)
    labels = quality_labels(project=project)
    shared = {"project": project, "labels": labels, "config": config}
    position = position_bias(**shared)
    length = length_bias(**shared)
    lengths = length.by_labeller if length else {}
    gold, peers = gold_accuracy(**shared), peer_agreement(**shared)
    annotators = []
    for name, activity in annotator_activity(**shared).items():
        row = AnnotatorRow(
            annotator=name,
            labels=activity.labels,
            skips=activity.skips,
            median_seconds=activity.median_seconds,
            gold_accuracy=gold.get(name, _empty_share(config)),
            peer_agreement=peers.get(name, _empty_share(config)),
            position_bias=position.get((HUMAN, name)),
            length_bias=lengths.get((HUMAN, name)),
            flags=[],
        )
        row.flags.extend(_annotator_flags(row, config))
        annotators.append(row)

    agreement, consistency = judge_human_agreement(**shared), judge_order_consistency(**shared)
    unparsed = judge_unparsed(**shared)
    judges = []
    for name in sorted(unparsed):
        row = JudgeRow(
            judge=name,
            labels=unparsed[name].n,
            human_agreement=agreement.get(name, _empty_share(config)),
            order_consistency=consistency.get(name, _empty_share(config)),
            unparsed=unparsed[name],
            position_bias=position.get((JUDGE, name)),
            length_bias=lengths.get((JUDGE, name)),
            flags=[],
        )
        row.flags.extend(_judge_flags(row, config))
        judges.append(row)

    sources = labels["source"].value_counts()
    return QualityReport(
        project_id=project.pk,
        task_type=project.task_type,
        items_labelled=int(labels["item"].nunique()),
        human_labels=int(sources.get(HUMAN, 0)),
        judge_labels=int(sources.get(JUDGE, 0)),
        agreement=Agreement(
            krippendorff_alpha=krippendorff_alpha(**shared),
            fleiss_kappa=fleiss_kappa(**shared),
            cohen_kappa=cohen_kappa_pairs(**shared),
        ),
        annotators=annotators,
        judges=judges,
        length_bias_reference=length.reference if length else None,
        settings=config,
    )


def _below(figure: Share, threshold: float) -> bool:
    return not figure.too_few and figure.value is not None and figure.value < threshold


def position_biased(bias: PositionBias | None, config: QualitySettings) -> bool:
    """Further from chance than the tolerance, with an interval that excludes chance."""
    if bias is None or bias.first_wins.too_few or bias.first_wins.value is None:
        return False
    share = bias.first_wins
    far = abs(share.value - bias.chance) > config.flag_position_bias
    return far and not (share.low <= bias.chance <= share.high)


def _annotator_flags(row: AnnotatorRow, config: QualitySettings) -> Iterable[str]:
    if _below(row.gold_accuracy, config.flag_gold_accuracy):
        yield "gold_accuracy"
    if _below(row.peer_agreement, config.flag_peer_agreement):
        yield "peer_agreement"
    if position_biased(row.position_bias, config):
        yield "position_bias"


def _judge_flags(row: JudgeRow, config: QualitySettings) -> Iterable[str]:
    if _below(row.human_agreement, config.flag_peer_agreement):
        yield "human_agreement"
    if position_biased(row.position_bias, config):
        yield "position_bias"


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _seconds(ms: Any) -> float | None:
    return None if ms is None or pd.isna(ms) else round(float(ms) / 1000, 1)
