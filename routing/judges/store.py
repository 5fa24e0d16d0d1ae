"""Storing a batch of verdicts and their cache entries, exactly once each.

A judge run writes a few hundred verdicts a second from the same process that keeps the calls in
flight, so the write path's CPU comes straight out of the call rate. On PostgreSQL the rows go
through ``COPY`` into session-temporary staging tables and from there into the real tables with
``INSERT … ON CONFLICT DO NOTHING``: the unique idempotency key (and the cache key) still decide,
in the database, what is new, and ``RETURNING`` says which verdicts this batch created. That costs
about a sixth of the CPU of ``bulk_create`` (model instances, per-field adaptation, array dumping
for ``UNNEST``). Other databases (the embedded SQLite shape) use ``bulk_create``.

Both functions run inside the caller's transaction.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection

from annotation.models import Annotation
from annotation.signals import send_labels_added
from routing.judges.cache import CacheEntry, cache_put_many
from routing.judges.models import JudgeResponseCache


@dataclass(frozen=True)
class Verdict:
    """One judge answer as it will be stored (an Annotation with source ``judge``)."""

    item_id: int
    order: str
    key: str  # idempotency key: judge:{run}:{item}:{order}
    payload: dict[str, Any] | None
    raw_output: str
    confidence: float | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RunRef:
    """What every verdict of a run shares."""

    project_id: int
    run_id: int
    judge: str


def verdicts_store(
    ref: RunRef, verdicts: list[Verdict], cache: list[CacheEntry], *, now: datetime
) -> set[str]:
    """Store what is not stored yet; return the idempotency keys this call created."""
    if connection.vendor == "postgresql":
        created = _store_copy(ref, verdicts, cache, now=now)
    else:
        created = _store_orm(ref, verdicts, cache)
    if created:
        send_labels_added(
            project_id=ref.project_id,
            source="judge",
            item_ids={v.item_id for v in verdicts if v.key in created},
        )
    return created


def _store_orm(ref: RunRef, verdicts: list[Verdict], cache: list[CacheEntry]) -> set[str]:
    keys = [v.key for v in verdicts]
    existing = set(
        Annotation.objects.filter(idempotency_key__in=keys).values_list(
            "idempotency_key", flat=True
        )
    )
    Annotation.objects.bulk_create(
        [
            Annotation(
                project_id=ref.project_id,
                item_id=v.item_id,
                source=Annotation.Source.JUDGE,
                judge=ref.judge,
                judge_run_id=ref.run_id,
                payload=v.payload,
                order=v.order,
                raw_output=v.raw_output,
                confidence=v.confidence,
                idempotency_key=v.key,
                metadata=v.metadata,
            )
            for v in verdicts
            if v.key not in existing
        ],
        ignore_conflicts=True,
    )
    cache_put_many(cache)
    return {key for key in keys if key not in existing}


_STAGE_VERDICTS = "tandem_stage_verdict"
_STAGE_CACHE = "tandem_stage_judge_cache"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _store_copy(
    ref: RunRef, verdicts: list[Verdict], cache: list[CacheEntry], *, now: datetime
) -> set[str]:
    annotation_table = connection.ops.quote_name(Annotation._meta.db_table)
    cache_table = connection.ops.quote_name(JudgeResponseCache._meta.db_table)
    created: set[str] = set()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        # Temporary tables live as long as the session and empty themselves at each commit.
        if verdicts:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE_VERDICTS} ("
                'item_id bigint, "order" text, idempotency_key text, payload jsonb, '
                "raw_output text, confidence double precision, metadata jsonb"
                ") ON COMMIT DELETE ROWS"
            )
            with raw.copy(
                f'COPY {_STAGE_VERDICTS} (item_id, "order", idempotency_key, payload, '
                "raw_output, confidence, metadata) FROM STDIN"
            ) as copy:
                for v in verdicts:
                    copy.write_row(
                        (
                            v.item_id,
                            v.order,
                            v.key,
                            None if v.payload is None else _dumps(v.payload),
                            v.raw_output,
                            v.confidence,
                            _dumps(v.metadata),
                        )
                    )
            cursor.execute(
                f"INSERT INTO {annotation_table} (project_id, item_id, source, "
                'external_annotator, judge, judge_run_id, payload, "order", raw_output, '
                "confidence, idempotency_key, imported, metadata, created_at) "
                "SELECT %s, item_id, %s, '', %s, %s, payload, \"order\", raw_output, "
                f"confidence, idempotency_key, false, metadata, %s FROM {_STAGE_VERDICTS} "
                "ON CONFLICT DO NOTHING RETURNING idempotency_key",
                [ref.project_id, Annotation.Source.JUDGE, ref.judge, ref.run_id, now],
            )
            created = {row[0] for row in cursor.fetchall()}
            cursor.execute(f"TRUNCATE {_STAGE_VERDICTS}")
        if cache:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE_CACHE} ("
                "key text, provider text, model text, response jsonb"
                ") ON COMMIT DELETE ROWS"
            )
            with raw.copy(
                f"COPY {_STAGE_CACHE} (key, provider, model, response) FROM STDIN"
            ) as copy:
                for key, provider, model, resp in cache:
                    copy.write_row((key, provider, model, _dumps(resp.to_dict())))
            cursor.execute(
                f"INSERT INTO {cache_table} (key, provider, model, response, created_at) "
                f"SELECT key, provider, model, response, %s FROM {_STAGE_CACHE} "
                "ON CONFLICT DO NOTHING",
                [now],
            )
            cursor.execute(f"TRUNCATE {_STAGE_CACHE}")
    return created
