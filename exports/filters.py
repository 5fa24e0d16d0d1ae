"""Which items an export takes: the filters, parsed once from the API, the form or the CLI.

Filters apply to items: ``provenance`` (any of), ``agreement_min`` and ``method`` (of the item's
preference), ``annotators`` / ``judges`` (the item has a current label by any of them; an
annotator is a user name or an imported label's annotator name), ``labelled_from`` /
``labelled_to`` (the item has a current label made in that range, dates inclusive),
``metadata`` (every key has that value, compared as text) and ``gold`` (gold items only, or
none of them).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from annotation.models import Annotation, Item, Project
from tandem.errors import InvalidInput

from .models import Preference

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ExportFilters:
    provenance: tuple[str, ...] = ()
    agreement_min: float | None = None
    method: str | None = None
    annotators: tuple[str, ...] = ()
    judges: tuple[str, ...] = ()
    labelled_from: date | None = None
    labelled_to: date | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    gold: bool | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExportFilters:
        """Parse and check; raises InvalidInput naming each bad filter."""
        data = dict(data or {})
        errors: dict[str, str] = {}
        unknown = set(data) - set(cls.__dataclass_fields__)
        for name in sorted(unknown):
            errors[name] = "unknown filter"
        out: dict[str, Any] = {}
        for name in ("provenance", "annotators", "judges"):
            value = _names(data.get(name))
            if value is None:
                errors[name] = "a list of names (or one comma-separated text)"
            else:
                out[name] = value
        bad = set(out.get("provenance", ())) - set(Preference.Provenance.values)
        if bad:
            errors["provenance"] = f"one of {', '.join(Preference.Provenance.values)}"
        if data.get("agreement_min") not in (None, ""):
            try:
                out["agreement_min"] = float(data["agreement_min"])
                if not 0.0 <= out["agreement_min"] <= 1.0:
                    raise ValueError
            except (TypeError, ValueError):
                errors["agreement_min"] = "a number from 0 to 1"
        if data.get("method") not in (None, ""):
            out["method"] = str(data["method"])
        for name in ("labelled_from", "labelled_to"):
            if data.get(name) not in (None, ""):
                try:
                    value = data[name]
                    out[name] = value if isinstance(value, date) else date.fromisoformat(value)
                except (TypeError, ValueError):
                    errors[name] = "a date, YYYY-MM-DD"
        metadata = data.get("metadata") or {}
        if isinstance(metadata, str):
            metadata = dict(p.split("=", 1) for p in metadata.split(",") if "=" in p)
        if not isinstance(metadata, dict) or not all(
            _KEY.match(str(k)) and "__" not in str(k) for k in metadata
        ):
            errors["metadata"] = "key=value pairs; keys of letters, digits, _ and - (no __)"
        else:
            out["metadata"] = {str(k): str(v) for k, v in sorted(metadata.items())}
        gold = data.get("gold")
        if gold not in (None, ""):
            if isinstance(gold, bool):
                out["gold"] = gold
            elif str(gold).lower() in ("true", "false", "1", "0", "yes", "no"):
                out["gold"] = str(gold).lower() in ("true", "1", "yes")
            else:
                errors["gold"] = "true or false"
        if errors:
            raise InvalidInput("Invalid export filters.", details=errors)
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, only the filters that are set (what the manifest records)."""
        out = {}
        for name, value in asdict(self).items():
            if value in (None, (), {}, []):
                continue
            if isinstance(value, date):
                value = value.isoformat()
            if isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


def _names(value: Any) -> tuple[str, ...] | None:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(sorted({v.strip() for v in value if v.strip()}))


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def items_filtered(*, project: Project, filters: ExportFilters) -> QuerySet[Item]:
    """The project's items that pass the filters (unordered)."""
    items = Item.objects.filter(project=project)
    if filters.provenance:
        items = items.filter(preference__provenance__in=filters.provenance)
    if filters.agreement_min is not None:
        items = items.filter(preference__agreement__gte=filters.agreement_min)
    if filters.method:
        items = items.filter(preference__method=filters.method)
    if filters.gold is not None:
        items = items.filter(gold__isnull=not filters.gold)
    for key, value in filters.metadata.items():
        items = items.filter(Q(**{f"metadata__{key}": value}) | _number_match(key, value))
    labels = Annotation.objects.filter(item=OuterRef("pk"), superseded_by__isnull=True)
    if filters.annotators:
        names = filters.annotators
        items = items.filter(
            Exists(
                labels.filter(source=Annotation.Source.HUMAN).filter(
                    Q(annotator__username__in=names) | Q(external_annotator__in=names)
                )
            )
        )
    if filters.judges:
        items = items.filter(
            Exists(labels.filter(source=Annotation.Source.JUDGE, judge__in=filters.judges))
        )
    if filters.labelled_from or filters.labelled_to:
        when = labels
        if filters.labelled_from:
            when = when.filter(created_at__gte=_day_start(filters.labelled_from))
        if filters.labelled_to:
            when = when.filter(created_at__lt=_day_start(filters.labelled_to + timedelta(days=1)))
        items = items.filter(Exists(when))
    return items


def _number_match(key: str, value: str) -> Q:
    """``metadata.key`` stored as a number or boolean matches its text too (``year=2024``)."""
    for parse in (int, float):
        try:
            return Q(**{f"metadata__{key}": parse(value)})
        except ValueError:
            continue
    if value in ("true", "false"):
        return Q(**{f"metadata__{key}": value == "true"})
    return Q(pk__in=[])
