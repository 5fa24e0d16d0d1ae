"""Reads of the exports app."""

from django.db.models import F, QuerySet

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
