"""Preference counts for the project pipeline (``GET /api/v1/projects/{id}/pipeline/``).

The pipeline lives in routing, which must not import exports (DESIGN.md: exports -> routing ->
annotation); settings name this function (``TANDEM_PIPELINE_RESOLVED_COUNTS``) and routing loads
it by that name, so the dependency is wired in ``tandem/`` and points the right way in code.
"""

from django.db.models import Count

from .models import Preference


def preference_counts(*, project_id: int) -> dict[str, int]:
    """Resolved preferences by provenance (``human``, ``judge``, ``hybrid``) and ``unresolved``
    (items with a Preference row whose choice is still open)."""
    out = {choice: 0 for choice in Preference.Provenance.values}
    out["unresolved"] = 0
    rows = (
        Preference.objects.filter(project_id=project_id)
        .values("provenance", "resolved_at__isnull")
        .annotate(n=Count("item_id"))
        .order_by()
    )
    for row in rows:
        if row["resolved_at__isnull"]:
            out["unresolved"] += row["n"]
        elif row["provenance"] in out:
            out[row["provenance"]] += row["n"]
    return out
