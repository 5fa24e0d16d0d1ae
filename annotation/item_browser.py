"""Reads for the manager's item browser: a keyset-paginated, filtered, searchable list of a
project's items, and everything about one item.

Full-text search runs on PostgreSQL's text search: items and candidates carry a stored generated
``search_vector`` column (``to_tsvector('english', prompt)`` / ``(..., text)``) with a GIN index
each (migration ``0006_item_search_indexes``). PostgreSQL computes them on every write path
(ORM, bulk_create, COPY), so imports need not remember them. Elsewhere (SQLite, the embedded
shape) search falls back to ``icontains``.

Pages are keyset pages over ``id`` (``after=<last id>``): page N costs what page 1 costs.
"""

import datetime as dt
import re
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import BooleanField, Count, Exists, F, Func, OuterRef, Q, QuerySet, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Substr

from tandem.errors import NotFound

from .item_filters import item_filter_get
from .models import Annotation, Candidate, Item, Project

PAGE_SIZE = 50
SEARCH_PROBE = 1000  # matches read from a GIN index before searching by walking the ids
SNIPPET_CHARS = 160
TS_CONFIG = "english"
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass
class ItemFilters:
    """What the browser's form asks for; every field optional. Built by the view's form."""

    q: str = ""
    route: str = ""
    human: str = ""  # "yes" | "no" | ""
    judge: str = ""  # "yes" | "no" | ""
    disagreement: bool = False  # judges that answered differently in two presentation orders
    gold: str = ""  # "yes" | "no" | ""
    annotator: str = ""  # username of a person who labelled the item
    meta_key: str = ""
    meta_value: str = ""
    created_from: dt.date | None = None
    created_to: dt.date | None = None
    # Filters other apps register (``item_filters``): name -> chosen value ("" does not filter).
    extra: dict[str, str] = field(default_factory=dict)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _labels(source: str) -> QuerySet[Annotation]:
    return Annotation.objects.filter(item=OuterRef("pk"), source=source)


def _verdict() -> Coalesce:
    """A label's answer as text: the pairwise choice, the thumb, or the ranking's JSON."""
    return Coalesce(KT("payload__choice"), KT("payload__thumb"), KT("payload__ranking"))


def _order_disagreement() -> Exists:
    """A judge label on the item that another label of the same judge, shown in another order,
    contradicts: the judge's verdict depends on the order, a sign of position bias."""
    other = (
        Annotation.objects.filter(
            item=OuterRef("item_id"), source=Annotation.Source.JUDGE, judge=OuterRef("judge")
        )
        .exclude(order=OuterRef("order"))
        .annotate(_verdict=_verdict())
        .exclude(_verdict=OuterRef("_verdict"))
    )
    first = (
        Annotation.objects.filter(item=OuterRef("pk"), source=Annotation.Source.JUDGE)
        .annotate(_verdict=_verdict())
        .filter(Exists(other))
    )
    return Exists(first)


class TextMatch(Func):
    """``<table>.search_vector @@ websearch_to_tsquery('english', query)``: the stored column of
    migration 0006 (``to_tsvector('english', <column>)``) of the table ``column`` belongs to,
    with its GIN index. ``column`` (``prompt`` or ``text``) only names the table and its alias."""

    output_field = BooleanField()

    def __init__(self, column: str, query: str) -> None:
        super().__init__(F(column), Value(query))

    def as_sql(self, compiler, connection, **extra_context):
        column, query = self.source_expressions
        column_sql, _ = compiler.compile(column)
        table = column_sql.rsplit(".", 1)[0]
        query_sql, query_params = compiler.compile(query)
        sql = (
            f"{table}.search_vector @@ websearch_to_tsquery('{TS_CONFIG}'::regconfig, {query_sql})"
        )
        return sql, list(query_params)


def _prompt_match(query: str) -> TextMatch:
    return TextMatch("prompt", query)


def _candidate_match(query: str, after: int | None = None) -> Exists:
    candidates = Candidate.objects.filter(item_id=OuterRef("pk")).filter(TextMatch("text", query))
    if after is not None:  # repeated here so that a walk of the candidates starts at ``after``
        candidates = candidates.filter(item_id__gt=after)
    return Exists(candidates)


def item_search_filter(query: str) -> Q:
    """Items whose prompt or any candidate matches ``query`` (web-search syntax on PostgreSQL:
    words, "quoted phrases", -exclusions, or). For one filter over a whole queryset; the
    browser's pages search each side on its own (``_search_page_ids``), which is faster."""
    if not _postgres():
        return Q(prompt__icontains=query) | Q(
            pk__in=Candidate.objects.filter(text__icontains=query).values("item_id")
        )
    return Q(_prompt_match(query)) | Q(_candidate_match(query))


def _search_page_ids(
    items: QuerySet[Item], query: str, limit: int, after: int | None = None
) -> list[int]:
    """The first ``limit`` ids (in id order) of ``items`` that match ``query``.

    Prompt matches and candidate matches are found separately (an OR of both would make
    PostgreSQL compute every match). Each side first reads up to ``SEARCH_PROBE`` matches in no
    particular order, which PostgreSQL answers from the GIN index: a rare query has fewer, and
    they are the whole answer. A common query has more; then the page is found by walking the
    items in id order testing the stored vectors, which stops after ``limit`` hits. (Left to
    itself the planner may walk for a word it wrongly thinks common: seconds at 1M items.)
    """
    ids: set[int] = set()
    prompt_side = items.filter(_prompt_match(query))
    probe = list(prompt_side.values_list("pk", flat=True)[:SEARCH_PROBE])
    if len(probe) < SEARCH_PROBE:
        ids.update(sorted(probe)[:limit])
    else:
        ids.update(prompt_side.order_by("pk").values_list("pk", flat=True)[:limit])
    matching = Candidate.objects.filter(TextMatch("text", query))
    if after is not None:
        matching = matching.filter(item_id__gt=after)
    probe = list(matching.values_list("item_id", flat=True)[:SEARCH_PROBE])
    if len(probe) < SEARCH_PROBE:
        side = items.filter(pk__in=set(probe))
    else:
        side = items.filter(_candidate_match(query, after))
    ids.update(side.order_by("pk").values_list("pk", flat=True)[:limit])
    return sorted(ids)[:limit]


def item_browse(
    *, project: Project, filters: ItemFilters, after: int | None = None, limit: int = PAGE_SIZE
) -> tuple[list[Item], int | None]:
    """One page of the project's items (oldest first) and the cursor of the next page (None on
    the last). The page and the label counts of its items: two queries (up to six with a
    search)."""
    items = _filtered(project=project, filters=filters)
    if after is not None:
        items = items.filter(pk__gt=after)
    if filters.q and _postgres():
        ids = _search_page_ids(items, filters.q, limit + 1, after=after)
        items = Item.objects.filter(pk__in=ids)
    elif filters.q:
        items = items.filter(item_search_filter(filters.q))
    page = list(
        items.order_by("pk")
        .annotate(snippet=Substr("prompt", 1, SNIPPET_CHARS))
        .only("pk", "external_id", "route", "gold", "created_at", "project_id")[: limit + 1]
    )
    next_after = page[limit - 1].pk if len(page) > limit else None
    page = page[:limit]
    counts = _label_counts([item.pk for item in page])
    for item in page:
        item.n_human, item.n_judge = counts.get(item.pk, (0, 0))
    return page, next_after


def _filtered(*, project: Project, filters: ItemFilters) -> QuerySet[Item]:
    """The project's items under every filter but the search."""
    items = Item.objects.filter(project=project)
    if filters.route:
        items = items.filter(route=filters.route)
    for wanted, source in ((filters.human, "human"), (filters.judge, "judge")):
        if wanted == "yes":
            items = items.filter(Exists(_labels(source)))
        elif wanted == "no":
            items = items.filter(~Exists(_labels(source)))
    if filters.gold == "yes":
        items = items.filter(gold__isnull=False)
    elif filters.gold == "no":
        items = items.filter(gold__isnull=True)
    if filters.disagreement:
        items = items.filter(_order_disagreement())
    if filters.annotator:
        items = items.filter(
            Exists(
                Annotation.objects.filter(
                    Q(annotator__username=filters.annotator)
                    | Q(annotator__isnull=True, external_annotator=filters.annotator),
                    item=OuterRef("pk"),
                    source=Annotation.Source.HUMAN,
                )
            )
        )
    if filters.meta_key:
        # ``iexact`` compares the key's text on both databases (numbers match their digits).
        items = items.filter(**{f"metadata__{filters.meta_key}__iexact": filters.meta_value})
    if filters.created_from:
        items = items.filter(created_at__date__gte=filters.created_from)
    if filters.created_to:
        items = items.filter(created_at__date__lte=filters.created_to)
    for name, value in filters.extra.items():
        registered = item_filter_get(name)
        if value and registered is not None:
            items = items.filter(registered.condition(value))
    return items


def _label_counts(item_ids: list[int]) -> dict[int, tuple[int, int]]:
    if not item_ids:
        return {}
    rows = (
        Annotation.objects.filter(item_id__in=item_ids)
        .values("item_id")
        .annotate(
            human=Count("id", filter=Q(source=Annotation.Source.HUMAN)),
            judge=Count("id", filter=Q(source=Annotation.Source.JUDGE)),
        )
        .order_by()
    )
    return {row["item_id"]: (row["human"], row["judge"]) for row in rows}


def item_get(*, project: Project, item_id: int | str) -> Item:
    try:
        return Item.objects.get(project=project, pk=item_id)
    except (Item.DoesNotExist, ValueError):
        raise NotFound("No such item.") from None


def item_labels(*, item: Item) -> list[Annotation]:
    """Every label of the item, oldest first, with who gave it (one query)."""
    return list(
        Annotation.objects.filter(item=item)
        .select_related("annotator")
        .annotate(superseded=Exists(Annotation.objects.filter(supersedes=OuterRef("pk"))))
        .order_by("id")
    )


def valid_metadata_key(key: str) -> bool:
    return bool(METADATA_KEY.match(key)) and "__" not in key
