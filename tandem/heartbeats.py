"""Heartbeats of jobs that run on a worker (import jobs, snapshots), kept in the cache.

A job's own transaction hides its writes until it ends, so a worker shows it is alive by beating
in the cache; a job whose last sign of life is older than ``TANDEM_JOB_STALE_SECONDS`` was left by
a dead worker (SIGKILL, OOM, a lost machine) and may be taken over.
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

BEAT_TTL = 24 * 3600


def heartbeat_beat(key: str) -> None:
    """Record a sign of life now under ``key``."""
    cache.set(key, timezone.now().timestamp(), BEAT_TTL)


def heartbeat_last(key: str) -> datetime | None:
    """The last beat under ``key``, if any."""
    value = cache.get(key)
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def heartbeat_quiet(*stamps: datetime | None, now: datetime | None = None) -> bool:
    """Whether the newest of ``stamps`` (signs of life: a start, a beat) is older than
    TANDEM_JOB_STALE_SECONDS. At least one stamp must be given."""
    last = max(stamp for stamp in stamps if stamp is not None)
    quiet = timedelta(seconds=settings.TANDEM_JOB_STALE_SECONDS)
    return (now or timezone.now()) - last > quiet
