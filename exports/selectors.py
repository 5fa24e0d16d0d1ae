"""Reads of the exports app."""

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet

from annotation.models import Project

from .models import Preference


def preference_list(
    *,
    project: Project,
    provenance: str | None = None,
    resolved: bool | None = None,
    agreement_min: float | None = None,
) -> QuerySet[Preference]:
    """The project's preferences in item order, with each item's ``external_id``."""
    rows = Preference.objects.filter(project=project).annotate(external_id=F("item__external_id"))
    if provenance is not None:
        rows = rows.filter(provenance=provenance)
    if resolved is not None:
        rows = rows.filter(resolved_at__isnull=not resolved)
    if agreement_min is not None:
        rows = rows.filter(agreement__gte=agreement_min)
    return rows.order_by("item_id")


# The pipeline (``GET /api/v1/projects/{id}/pipeline/``) lives in routing, which must not import
# exports: exports registers this count with routing at start-up (``apps.py``).
def preference_counts(*, project_id: int) -> dict[str, int]:
    """Resolved preferences by provenance (``human``, ``judge``, ``hybrid``) and ``unresolved``
    (items with a Preference row whose choice is still open)."""
    out = {choice: 0 for choice in Preference.Provenance.values}
    out["unresolved"] = 0
    rows = (
        Preference.objects.filter(project_id=project_id)
        .values("provenance")
        .annotate(
            n=Count("item_id"), resolved=Count("item_id", filter=Q(resolved_at__isnull=False))
        )
        .order_by()
    )
    for row in rows:
        out["unresolved"] += row["n"] - row["resolved"]
        if row["provenance"] in out:
            out[row["provenance"]] += row["resolved"]
    return out


# The item browser's "provenance" filter (``annotation.item_filters``; registered in ``apps.py``):
# where the item's final preference came from, read from ``Preference.decided_by`` of resolved
# rows. ``decided_by`` is "human" (the people's majority, or a reliability-weighted vote of
# people), a judge's name (the judge decided), or "human+judge" / "judge" (a project-level method
# that counted judges' labels, e.g. bradley_terry); blank while unresolved.
PROVENANCE_CHOICES = (
    ("human", "People"),
    ("judge", "LLM judge"),
    ("mixed", "People and judges together"),
    ("none", "None yet"),
)
MIXED = "human+judge"


def preference_provenance_condition(value: str) -> Q:
    """Items whose preference came from ``value`` (``PROVENANCE_CHOICES``): one ``EXISTS`` on the
    preference table, which the item's id (its primary key) answers by an index probe; "none":
    no resolved preference (no row yet, or the labels do not decide)."""
    resolved = Preference.objects.filter(item_id=OuterRef("pk"), resolved_at__isnull=False)
    if value == "human":
        return Q(Exists(resolved.filter(decided_by="human")))
    if value == "judge":
        return Q(Exists(resolved.exclude(decided_by__in=["", "human", MIXED])))
    if value == "mixed":
        return Q(Exists(resolved.filter(decided_by=MIXED)))
    if value == "none":
        return ~Q(Exists(resolved))
    raise ValueError(f"unknown provenance {value!r}")
