"""Writing an export: items from PostgreSQL, through a format, into split files + manifest.json.

The one code path behind snapshots (``snapshots.py``) and ``manage.py export``:

1. items without a preference row get one (``preferences_recompute`` of those items only;
   labels keep the rest fresh through ``labels_added``);
2. in one read-only REPEATABLE READ transaction on PostgreSQL (every chunk sees the same data),
   the filtered items are read in keyset chunks of ``CHUNK_ITEMS`` ids, with their candidates,
   preferences and (raw format) labels: memory holds one chunk, whatever the project's size;
3. each item goes to its prompt's split and through the format; rows go to the split's writer
   in item order, so the same data and parameters give byte-identical files;
4. ``manifest.json``: the parameters, row counts, schema, sha256 of each file, Tandem's version
   and git revision, routing policy versions, licenses and label-flip-rate estimates.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, TextField
from django.db.models.functions import Cast

from annotation.models import Annotation, Candidate, Item, Project
from annotation.rows import LABEL_FIELDS
from routing.models import RoutingPolicy

from .filters import ExportFilters, items_filtered
from .flip_rates import flip_rates_estimate
from .formats import PAIR_MODES, ExportFormat, ExportItem, FormatOptions, format_get
from .models import Preference
from .preferences import preferences_recompute
from .splits import Splitter, prompt_key, splits_parse
from .writers import ExportWriter, check_file_format, file_sha256

CHUNK_ITEMS = 2000
STYLES = ("auto", "standard", "conversational")
MANIFEST = "manifest.json"

Progress = Callable[[int, int], None]  # (items done, items in all)


@dataclass(frozen=True)
class ExportSpec:
    """What to export and how: checked once by ``export_spec``."""

    format: str
    file_format: str
    filters: ExportFilters = field(default_factory=ExportFilters)
    splits: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    seed: int = 0
    style: str = "auto"  # prompts/completions as text, messages, or messages for chat data
    pairs: str = "all"  # listwise-pairs: all pairs, or best versus the rest

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "file_format": self.file_format,
            "filters": self.filters.to_dict(),
            "splits": self.splits,
            "seed": self.seed,
            "style": self.style,
            "pairs": self.pairs,
        }


def export_spec(
    *,
    project: Project,
    format: str,
    file_format: str,
    filters: dict[str, Any] | ExportFilters | None = None,
    splits: str | dict[str, Any] | None = None,
    seed: int = 0,
    style: str = "auto",
    pairs: str = "all",
) -> ExportSpec:
    """Parse and check an export's parameters against the project (InvalidInput if bad)."""
    from tandem.errors import InvalidInput

    format_get(format, task_type=project.task_type)
    check_file_format(file_format)
    if style not in STYLES:
        raise InvalidInput(f"style must be one of {', '.join(STYLES)}", details={"style": style})
    if pairs not in PAIR_MODES:
        raise InvalidInput(
            f"pairs must be one of {', '.join(PAIR_MODES)}", details={"pairs": pairs}
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InvalidInput("seed must be a whole number from 0", details={"seed": seed})
    if not isinstance(filters, ExportFilters):
        filters = ExportFilters.from_dict(filters)
    return ExportSpec(
        format=format,
        file_format=file_format,
        filters=filters,
        splits=splits_parse(splits),
        seed=seed,
        style=style,
        pairs=pairs,
    )


# --- reading ----------------------------------------------------------------------------------

_PREFERENCE_FIELDS = tuple(f for f in Preference.DECIDED_FIELDS if f != "margins")
_ITEM_FIELDS = ("id", "external_id", "prompt")
_JSON_ITEM_FIELDS = ("messages", "metadata", "gold")


def _as_text(name: str) -> Cast:
    """A JSON column read as its text: decoded here by orjson, several times faster than the
    JSON field's own decoding (which dominated the export's time)."""
    return Cast(name, output_field=TextField())


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    if text == "{}":
        return {}
    return orjson.loads(text)


def _chunks(items, size: int) -> Iterator[list[dict[str, Any]]]:
    """The items in id order, ``size`` at a time, by keyset (``id > last``)."""
    last = 0
    text_columns = {f"_{name}": _as_text(name) for name in _JSON_ITEM_FIELDS}
    text_columns["_choice"] = _as_text("preference__choice")
    columns = [
        *_ITEM_FIELDS,
        *text_columns,
        *(f"preference__{f}" for f in _PREFERENCE_FIELDS if f != "choice"),
    ]
    items = items.annotate(**text_columns)
    while True:
        chunk = list(items.filter(pk__gt=last).order_by("pk").values(*columns)[:size])
        if not chunk:
            return
        for row in chunk:
            for name in _JSON_ITEM_FIELDS:
                row[name] = _loads(row.pop(f"_{name}"))
            row["preference__choice"] = _loads(row.pop("_choice"))
        yield chunk
        last = chunk[-1]["id"]


def _of_items(ids: list[int]) -> Q:
    """``item_id`` among ``ids`` (sorted): a range when they are dense (the usual case: an
    import's items have consecutive ids), which PostgreSQL plans and psycopg binds far faster
    than 2,000 parameters; the caller drops rows of other items."""
    if ids[-1] - ids[0] < 2 * len(ids):
        return Q(item_id__gte=ids[0], item_id__lte=ids[-1])
    return Q(item_id__in=ids)


def _candidates(ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    wanted = set(ids)
    rows = (
        Candidate.objects.filter(_of_items(ids))
        .annotate(_metadata=_as_text("metadata"))
        .order_by("item_id", "position")
        .values_list("item_id", "text", "model", "_metadata")
    )
    for item_id, text, model, meta in rows:
        if item_id not in wanted:
            continue
        candidate: dict[str, Any] = {"text": text}
        if model:
            candidate["model"] = model
        meta = _loads(meta)
        if meta:
            candidate["metadata"] = meta
        out[item_id].append(candidate)
    return out


def _labels(ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Current labels in the row format (DESIGN.md), oldest first."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    wanted = set(ids)
    rows = (
        Annotation.objects.filter(_of_items(ids), superseded_by__isnull=True)
        .annotate(_payload=_as_text("payload"), _metadata=_as_text("metadata"))
        .order_by("item_id", "id")
        .values_list(
            "item_id",
            "source",
            "annotator__username",
            "external_annotator",
            "judge",
            "order",
            "_payload",
            "confidence",
            "time_spent_ms",
            "raw_output",
            "_metadata",
        )
    )
    for item_id, source, username, external, judge, order, payload, conf, spent, raw, meta in rows:
        if item_id not in wanted:
            continue
        label: dict[str, Any] = {"source": source}
        if source == Annotation.Source.JUDGE:
            label["judge"] = judge
        elif username or external:
            label["annotator"] = username or external
        if order:
            label["order"] = order
        label.update(_loads(payload) or {})
        if conf is not None:
            label["confidence"] = conf
        if spent is not None:
            label["time_spent_ms"] = spent
        if raw:
            label["raw_output"] = raw
        for key, value in (_loads(meta) or {}).items():
            if key not in LABEL_FIELDS:
                label.setdefault(key, value)
        out[item_id].append(label)
    return out


def _export_items(chunk: list[dict[str, Any]], needs_labels: bool) -> list[ExportItem]:
    ids = [row["id"] for row in chunk]
    candidates = _candidates(ids)
    labels = _labels(ids) if needs_labels else {}
    out = []
    for row in chunk:
        has_preference = row["preference__method"] is not None
        out.append(
            ExportItem(
                id=row["id"],
                external_id=row["external_id"],
                prompt=row["prompt"],
                messages=row["messages"],
                metadata=row["metadata"] or {},
                gold=row["gold"],
                candidates=candidates.get(row["id"], []),
                preference={f: row[f"preference__{f}"] for f in _PREFERENCE_FIELDS}
                if has_preference
                else None,
                labels=labels.get(row["id"], []),
            )
        )
    return out


@contextmanager
def _consistent_read():
    """One REPEATABLE READ, read-only transaction on PostgreSQL when none is open (every chunk
    then reads the same data); otherwise the caller's transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _fill_missing_preferences(project: Project) -> None:
    missing = list(
        Item.objects.filter(project=project, preference__isnull=True).values_list("pk", flat=True)
    )
    if missing:
        preferences_recompute(project=project, item_ids=missing)


def _options(spec: ExportSpec, items) -> FormatOptions:
    if spec.style == "auto":
        conversational = items.filter(messages__isnull=False).exists()
    else:
        conversational = spec.style == "conversational"
    return FormatOptions(conversational=conversational, pairs=spec.pairs)


# --- writing ----------------------------------------------------------------------------------


def export_write(
    *, project: Project, spec: ExportSpec, out_dir: Path, on_progress: Progress | None = None
) -> dict[str, Any]:
    """Write the export's files and manifest.json into ``out_dir``; return the manifest."""
    fmt = format_get(spec.format, task_type=project.task_type)
    out_dir.mkdir(parents=True, exist_ok=True)
    _fill_missing_preferences(project)
    with _consistent_read():
        items = items_filtered(project=project, filters=spec.filters)
        total = items.count()
        options = _options(spec, items)
        schema = fmt.schema(options)
        writer = ExportWriter(out_dir, spec.file_format, spec.splits, schema, fmt.json_columns)
        splitter = Splitter(spec.splits, spec.seed)
        licenses: Counter[str] = Counter()
        done = 0
        try:
            for chunk in _chunks(items, CHUNK_ITEMS):
                by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for item in _export_items(chunk, fmt.needs_labels):
                    rows = list(fmt.rows(item, options))
                    if not rows:
                        continue
                    licenses[str(item.metadata.get("license") or "unknown")] += 1
                    split = splitter.split_of(prompt_key(item.prompt, item.messages))
                    by_split[split].extend(rows)
                for split in spec.splits:
                    writer.write(split, by_split.get(split, []))
                done += len(chunk)
                if on_progress:
                    on_progress(done, total)
        finally:
            files = writer.close()
        flip_rates = flip_rates_estimate(project=project, items=items)
        policies = list(
            RoutingPolicy.objects.filter(project=project)
            .order_by("pk")
            .values("name", "version", "active", "judges")
        )
    manifest = _manifest(
        project=project,
        spec=spec,
        fmt=fmt,
        options=options,
        schema=schema,
        rows=writer.rows(),
        items=total,
        files=files,
        out_dir=out_dir,
        licenses=dict(sorted(licenses.items())),
        flip_rates=flip_rates,
        policies=policies,
    )
    (out_dir / MANIFEST).write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    return manifest


def _manifest(
    *,
    project: Project,
    spec: ExportSpec,
    fmt: ExportFormat,
    options: FormatOptions,
    schema,
    rows: dict[str, int],
    items: int,
    files: list[Path],
    out_dir: Path,
    licenses: dict[str, int],
    flip_rates: dict[str, Any],
    policies: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "tandem": {"version": tandem_version(), "git_revision": git_revision()},
        "project": {"id": project.pk, "slug": project.slug, "task_type": project.task_type},
        **spec.to_dict(),
        "conversational": options.conversational,
        "items": items,
        "rows": rows,
        "rows_total": sum(rows.values()),
        "schema": [{"name": f.name, "type": str(f.type)} for f in schema],
        "json_columns": sorted(fmt.json_columns & set(schema.names)),
        "files": [
            {
                "path": path.relative_to(out_dir).as_posix(),
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
            for path in sorted(files)
        ],
        "routing_policies": policies,
        "licenses": licenses,
        "label_flip_rates": flip_rates,
    }


def tandem_version() -> str:
    try:
        return importlib_metadata.version("tandem")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def git_revision() -> str:
    """``TANDEM_GIT_REVISION`` (images without .git), else ``git rev-parse HEAD``."""
    if os.environ.get("TANDEM_GIT_REVISION"):
        return os.environ["TANDEM_GIT_REVISION"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


# --- preview ----------------------------------------------------------------------------------


def export_preview(*, project: Project, spec: ExportSpec) -> dict[str, Any]:
    """How many items pass the filters and how many rows the export would have (all splits).

    Counts from the stored preferences: one grouped query, whatever the project's size."""
    fmt = format_get(spec.format, task_type=project.task_type)
    items = items_filtered(project=project, filters=spec.filters)
    options = FormatOptions(pairs=spec.pairs)
    groups = items.values("preference__choice").annotate(n=Count("pk")).order_by()
    total = resolved = rows = 0
    for group in groups:
        choice, n = group["preference__choice"], group["n"]
        total += n
        resolved += n if choice is not None else 0
        rows += n * fmt.rows_per_item(choice, 0, options)
    return {"items": total, "resolved": resolved, "rows": rows}
