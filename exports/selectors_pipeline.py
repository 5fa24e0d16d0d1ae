"""Preference counts for the project pipeline (``GET /api/v1/projects/{id}/pipeline/``).

The pipeline lives in routing, which must not import exports (DESIGN.md: exports -> routing ->
annotation): exports registers this function with routing at start-up (``apps.py``).
"""

from django.db.models import Count, Q

from .models import Preference


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
