"""Reads for the manager's item browser: a keyset-paginated, filtered, searchable list of a
project's items, and everything about one item.

Full-text search runs on PostgreSQL's text search through two GIN expression indexes
(migration ``0006_item_search_indexes``): ``to_tsvector('english', prompt)`` on items and
``to_tsvector('english', text)`` on candidates. Expression indexes are kept by PostgreSQL itself
on every write path (ORM, bulk_create, COPY), so imports need not remember them. Elsewhere
(SQLite, the embedded shape) search falls back to ``icontains``.

Pages are keyset pages over ``id`` (``after=<last id>``): page N costs what page 1 costs.
"""

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Substr

from tandem.errors import NotFound

from .models import Annotation, Candidate, Item, Project

PAGE_SIZE = 50
SNIPPET_CHARS = 160
TS_CONFIG = "english"
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# The SQL that the GIN expression indexes are built on: a query must repeat it word for word.
PROMPT_TSVECTOR = f"to_tsvector('{TS_CONFIG}'::regconfig, {{table}}.prompt)"
CANDIDATE_TSVECTOR = f"to_tsvector('{TS_CONFIG}'::regconfig, {{table}}.text)"


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
    extra: dict[str, Any] = field(default_factory=dict)


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


def item_search_filter(query: str) -> Q:
    """Items whose prompt or any candidate matches ``query`` (web-search syntax on PostgreSQL:
    words, "quoted phrases", -exclusions, or)."""
    if not _postgres():
        return Q(prompt__icontains=query) | Q(
            pk__in=Candidate.objects.filter(text__icontains=query).values("item_id")
        )
    tsquery = f"websearch_to_tsquery('{TS_CONFIG}'::regconfig, %s)"
    # One id list from both GIN indexes (a UNION, so each side uses its index), then the page.
    ids = RawSQL(
        f"SELECT i.id FROM annotation_item i WHERE {PROMPT_TSVECTOR.format(table='i')} @@ {tsquery}"
        f" UNION SELECT c.item_id FROM annotation_candidate c"
        f" WHERE {CANDIDATE_TSVECTOR.format(table='c')} @@ {tsquery}",
        [query, query],
    )
    return Q(pk__in=ids)


def item_browse(
    *, project: Project, filters: ItemFilters, after: int | None = None, limit: int = PAGE_SIZE
) -> tuple[list[Item], int | None]:
    """One page of the project's items (oldest first) and the cursor of the next page (None on
    the last). Two queries: the page, then the label counts of its items."""
    items = Item.objects.filter(project=project)
    if filters.q:
        items = items.filter(item_search_filter(filters.q))
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
                    item=OuterRef("pk"),
                    source=Annotation.Source.HUMAN,
                    annotator__username=filters.annotator,
                )
            )
        )
    if filters.meta_key:
        items = items.annotate(_meta=KT(f"metadata__{filters.meta_key}")).filter(
            _meta=filters.meta_value
        )
    if filters.created_from:
        items = items.filter(created_at__date__gte=filters.created_from)
    if filters.created_to:
        items = items.filter(created_at__date__lte=filters.created_to)
    if after is not None:
        items = items.filter(pk__gt=after)
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
