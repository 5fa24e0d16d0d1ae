"""Bulk import of items, candidates and their existing labels.

The import streams: rows are read, checked and written in batches inside one transaction, so
memory stays flat however large the file is. By default a file with any bad row writes nothing
(the transaction is rolled back at the end and every bad row is reported with its line);
``partial=True`` keeps the good rows. Rows whose ``external_id`` (or, without one, content hash)
is already in the project are skipped, so re-importing a file creates nothing new.

On PostgreSQL rows go in with ``COPY`` (ids reserved from the sequences first, so candidates and
labels can point at their items) on a helper thread, while the next batch is parsed; elsewhere
with ``bulk_create``.
"""

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from .models import Annotation, Candidate, Item, Project
from .readers import RowDecodeError, detect_format, read_rows
from .rows import ItemRow, RowError, RowOptions, parse_row
from .signals import send_items_added, send_labels_added

ProgressCallback = Callable[[int], None]


@dataclass
class RowProblem:
    line: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


@dataclass
class ImportResult:
    """What an import did. ``written`` is False when errors rolled the whole file back."""

    rows: int = 0
    created: int = 0
    skipped: int = 0
    failed: int = 0
    labels_created: int = 0
    written: bool = True
    errors: list[RowProblem] = field(default_factory=list)
    errors_truncated: bool = False

    def summary(self) -> str:
        state = "" if self.written else " (nothing written: fix the errors or import partially)"
        return (
            f"{self.created} created, {self.skipped} skipped, {self.failed} failed, "
            f"{self.labels_created} labels{state}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "skipped": self.skipped,
            "failed": self.failed,
            "labels_created": self.labels_created,
            "written": self.written,
            "errors": [e.as_dict() for e in self.errors],
            "errors_truncated": self.errors_truncated,
        }


class _Rollback(Exception):
    """Raised inside the import transaction to undo a file that had errors."""


def items_import_file(
    *,
    project: Project,
    source: Path | IO[bytes],
    fmt: str | None = None,
    name: str | None = None,
    partial: bool = False,
    preference_source: str = "none",
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import a JSONL, CSV or Parquet file (format from ``fmt``, else from the file name)."""
    fmt = fmt or detect_format(name or str(source))
    return items_import(
        project=project,
        rows=read_rows(source, fmt),
        partial=partial,
        preference_source=preference_source,
        on_progress=on_progress,
    )


def items_import(
    *,
    project: Project,
    rows: Iterable[tuple[int, dict[str, Any] | RowDecodeError]],
    partial: bool = False,
    preference_source: str = "none",
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import ``(line, row)`` pairs into ``project``; see the module docstring for the rules."""
    if preference_source not in ("human", "judge", "none"):
        raise ValueError("preference_source must be human, judge or none")
    options = RowOptions(
        task_type=project.task_type, schema=project.schema, preference_source=preference_source
    )
    result = ImportResult()
    seen: dict[str, tuple[int, str]] = {}  # external_id -> (line, content hash), within this file
    # A project with no items yet needs no lookups: only the file can repeat itself.
    check_existing = Item.objects.filter(project=project).exists()
    writer = _writer_for(project, check_existing)

    try:
        with transaction.atomic():
            try:
                for batch in _batches(rows, settings.TANDEM_IMPORT_BATCH_SIZE):
                    parsed = _parse_batch(batch, options, result, seen)
                    if parsed and (partial or not result.errors):
                        writer.write(parsed)
                    if on_progress:
                        on_progress(len(batch))
            finally:
                counts = writer.close()
            result.created, result.labels_created = counts.created, counts.labels
            result.skipped += counts.existing
            if result.errors and not partial:
                raise _Rollback
            send_items_added(project_id=project.pk, count=result.created)
            if result.labels_created:
                send_labels_added(project_id=project.pk, source="import", item_ids=None)
    except _Rollback:
        result.written = False
        result.created = result.labels_created = 0
    return result


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _record_error(result: ImportResult, line: int, message: str) -> None:
    result.failed += 1
    if len(result.errors) < settings.TANDEM_IMPORT_MAX_REPORTED_ERRORS:
        result.errors.append(RowProblem(line=line, message=message))
    else:
        result.errors_truncated = True


def _parse_batch(
    batch: list[tuple[int, dict[str, Any] | RowDecodeError]],
    options: RowOptions,
    result: ImportResult,
    seen: dict[str, tuple[int, str]],
) -> list[ItemRow]:
    parsed: list[ItemRow] = []
    for line, raw in batch:
        result.rows += 1
        if isinstance(raw, RowDecodeError):
            _record_error(result, line, raw.message)
            continue
        try:
            row = parse_row(raw, options)
        except RowError as exc:
            _record_error(result, line, str(exc))
            continue
        first = seen.get(row.external_id)
        if first is not None:
            if first[1] == row.content_hash:
                result.skipped += 1  # the same item twice in one file
            else:
                _record_error(
                    result,
                    line,
                    f"external_id {row.external_id!r} was already used on line {first[0]} "
                    "for a different item",
                )
            continue
        seen[row.external_id] = (line, row.content_hash)
        parsed.append(row)
    return parsed


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class _Counts:
    created: int = 0
    labels: int = 0
    existing: int = 0


class _Writer(Protocol):
    def write(self, rows: list[ItemRow]) -> None: ...

    def close(self) -> _Counts: ...


class _OrmWriter:
    """Portable writer (SQLite in the embedded shape): ``bulk_create``."""

    def __init__(self, project: Project, check_existing: bool) -> None:
        self.project = project
        self.check_existing = check_existing
        self.counts = _Counts()

    def close(self) -> _Counts:
        return self.counts

    def _fresh(self, rows: list[ItemRow]) -> list[ItemRow]:
        if not self.check_existing:
            return rows
        existing = set(
            Item.objects.filter(
                project=self.project, external_id__in=[r.external_id for r in rows]
            ).values_list("external_id", flat=True)
        )
        self.counts.existing += len(existing)
        return [r for r in rows if r.external_id not in existing]

    def write(self, rows: list[ItemRow]) -> None:
        rows = self._fresh(rows)
        items = Item.objects.bulk_create(
            [
                Item(
                    project=self.project,
                    external_id=r.external_id,
                    prompt=r.prompt,
                    messages=r.messages,
                    metadata=r.metadata,
                    gold=r.gold,
                    content_hash=r.content_hash,
                )
                for r in rows
            ]
        )
        candidates, annotations = [], []
        for item, row in zip(items, rows, strict=True):
            candidates.extend(
                Candidate(item=item, position=i, text=c.text, model=c.model, metadata=c.metadata)
                for i, c in enumerate(row.candidates)
            )
            annotations.extend(
                Annotation(
                    project=self.project,
                    item=item,
                    source=label.source,
                    external_annotator=label.annotator,
                    judge=label.judge,
                    payload=label.payload,
                    order=label.order,
                    raw_output=label.raw_output,
                    confidence=label.confidence,
                    time_spent_ms=label.time_spent_ms,
                    imported=True,
                    metadata=label.metadata,
                )
                for label in row.labels
            )
        Candidate.objects.bulk_create(candidates, batch_size=2000)
        Annotation.objects.bulk_create(annotations, batch_size=2000)
        self.counts.created += len(items)
        self.counts.labels += len(annotations)


class _CopyWriter:
    """PostgreSQL writer: ``COPY`` into each table, with item ids reserved up front.

    It talks to the database only through ``self.db`` (Django's connection, shared with the
    importing thread), never through the ORM, so it may run on a helper thread inside the
    importer's transaction.
    """

    def __init__(self, project: Project, check_existing: bool) -> None:
        self.db = connections[DEFAULT_DB_ALIAS]
        self.project = project
        self.check_existing = check_existing
        self.counts = _Counts()
        quote = self.db.ops.quote_name
        self.item_table = quote(Item._meta.db_table)
        self.candidate_table = quote(Candidate._meta.db_table)
        self.annotation_table = quote(Annotation._meta.db_table)

    def close(self) -> _Counts:
        return self.counts

    def _fresh(self, cursor: Any, rows: list[ItemRow]) -> list[ItemRow]:
        if not self.check_existing:
            return rows
        cursor.execute(
            f"SELECT external_id FROM {self.item_table} "
            "WHERE project_id = %s AND external_id = ANY(%s)",
            [self.project.pk, [r.external_id for r in rows]],
        )
        existing = {row[0] for row in cursor.fetchall()}
        self.counts.existing += len(existing)
        return [r for r in rows if r.external_id not in existing]

    def _reserve_ids(self, cursor: Any, n: int) -> list[int]:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [Item._meta.db_table, n],
        )
        return [row[0] for row in cursor.fetchall()]

    def write(self, rows: list[ItemRow]) -> None:
        now = timezone.now()
        project_id = self.project.pk
        labels = 0
        with self.db.cursor() as cursor:
            rows = self._fresh(cursor, rows)
            if not rows:
                return
            ids = self._reserve_ids(cursor, len(rows))
            raw = cursor.cursor  # psycopg's own cursor, for COPY
            with raw.copy(
                f"COPY {self.item_table} (id, project_id, external_id, prompt, messages, "
                "metadata, gold, content_hash, route, created_at) FROM STDIN"
            ) as copy:
                for item_id, r in zip(ids, rows, strict=True):
                    copy.write_row(
                        (
                            item_id,
                            project_id,
                            r.external_id,
                            r.prompt,
                            None if r.messages is None else _dumps(r.messages),
                            _dumps(r.metadata),
                            None if r.gold is None else _dumps(r.gold),
                            r.content_hash,
                            Item.Route.UNROUTED,
                            now,
                        )
                    )
            with raw.copy(
                f"COPY {self.candidate_table} (item_id, position, text, model, metadata) FROM STDIN"
            ) as copy:
                for item_id, r in zip(ids, rows, strict=True):
                    for position, c in enumerate(r.candidates):
                        copy.write_row((item_id, position, c.text, c.model, _dumps(c.metadata)))
            if any(r.labels for r in rows):
                with raw.copy(
                    f"COPY {self.annotation_table} (project_id, item_id, source, "
                    'external_annotator, judge, payload, "order", raw_output, confidence, '
                    "time_spent_ms, imported, metadata, created_at) FROM STDIN"
                ) as copy:
                    for item_id, r in zip(ids, rows, strict=True):
                        for label in r.labels:
                            labels += 1
                            copy.write_row(
                                (
                                    project_id,
                                    item_id,
                                    label.source,
                                    label.annotator,
                                    label.judge,
                                    _dumps(label.payload),
                                    label.order,
                                    label.raw_output,
                                    label.confidence,
                                    label.time_spent_ms,
                                    True,
                                    _dumps(label.metadata),
                                    now,
                                )
                            )
        self.counts.created += len(rows)
        self.counts.labels += labels


def _writer_for(project: Project, check_existing: bool) -> _Writer:
    if connection.vendor == "postgresql":
        return _BackgroundWriter(_CopyWriter(project, check_existing))
    return _OrmWriter(project, check_existing)


class _BackgroundWriter:
    """Runs another writer on a helper thread, so parsing the next batch overlaps the database's
    work on this one. Both threads use one connection (hence one transaction), never at once:
    the importing thread only parses while the helper writes. A write error surfaces on the
    next ``write`` or on ``close``, and rolls the whole import back.
    """

    def __init__(self, inner: _CopyWriter) -> None:
        self.inner = inner
        self.queue: queue.Queue[list[ItemRow] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        inner.db.inc_thread_sharing()
        self.thread = threading.Thread(target=self._run, name="import-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (rows := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.inner.write(rows)
                except BaseException as exc:  # handed to the importing thread, not swallowed
                    self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def write(self, rows: list[ItemRow]) -> None:
        self._raise()
        self.queue.put(rows)

    def close(self) -> _Counts:
        self.queue.put(None)
        self.thread.join()
        self.inner.db.dec_thread_sharing()
        self._raise()
        return self.inner.close()
