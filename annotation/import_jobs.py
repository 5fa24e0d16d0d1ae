"""Imports that run on a worker: the upload waits on disk, the worker imports it, progress shows.

The web and the API hand big files here instead of importing inside the request.

Lifecycle (``ImportJob.Status``, changed only by ``import_job_transition``)::

    queued -> running -> done | failed | cancelled
    queued -> cancelled;  queued (stuck) -> queued (retry)
    running (stuck: no heartbeat for TANDEM_JOB_STALE_SECONDS) -> queued (retry) | cancelled
    running (stuck) -> running (a redelivered task takes it over)

Every job ends: ``done`` with its counts, ``failed`` with its reason (a file that cannot be read,
or any unexpected exception, recorded by the task's ``on_failure``), or ``cancelled``; the upload
is removed whichever way it ends. While it runs, the worker beats in the cache at every batch
(its writes are invisible until the import's transaction commits). A worker that died stops
beating: the job shows as stuck and a manager may retry or cancel it (page and API). A cancel of
a live job is seen by the worker at its next batch, which rolls the import back. The import and
its ``done`` transition commit together, so a job is never both cancelled and written.
"""

import logging
import uuid
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from tandem.errors import Conflict, InvalidInput
from tandem.heartbeats import heartbeat_beat, heartbeat_last, heartbeat_quiet

from .importer import items_import_file
from .models import ImportJob, Project
from .readers import UnreadableFile, count_rows, detect_format

logger = logging.getLogger(__name__)
PROGRESS_TTL = 24 * 3600
Status = ImportJob.Status
TRANSITIONS: dict[str, set[str]] = {
    Status.QUEUED: {Status.RUNNING, Status.CANCELLED, Status.QUEUED},
    Status.RUNNING: {Status.DONE, Status.FAILED, Status.CANCELLED, Status.QUEUED, Status.RUNNING},
    Status.DONE: set(),
    Status.FAILED: set(),
    Status.CANCELLED: set(),
}
TERMINAL = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})


class ImportCancelled(Exception):
    """Raised inside the worker's import when the job was cancelled: rolls the import back."""


def _progress_key(job_id: int) -> str:
    return f"tandem:import-job:{job_id}:rows"


def _beat_key(job_id: int) -> str:
    return f"tandem:import-job:{job_id}:beat"


def _cancel_key(job_id: int) -> str:
    return f"tandem:import-job:{job_id}:cancel"


def upload_format(name: str, fmt: str | None = None) -> str:
    """The format of an uploaded file: ``fmt`` if the uploader named one, else its extension."""
    try:
        return fmt or detect_format(name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def import_job_create(
    *,
    project: Project,
    user: User | None,
    upload: IO[bytes],
    name: str,
    fmt: str,
    partial: bool = False,
    preference_source: str = "none",
) -> ImportJob:
    """Store the upload and queue its import (after commit, so the worker finds the job)."""
    folder = Path(settings.MEDIA_ROOT) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.{fmt}"
    with open(path, "wb") as out:
        chunks = (
            upload.chunks()
            if hasattr(upload, "chunks")
            else iter(lambda: upload.read(1 << 20), b"")
        )
        for chunk in chunks:
            out.write(chunk)
    try:
        total_rows = count_rows(path, fmt)  # also opens a Parquet file: a corrupt one stops here
    except UnreadableFile as exc:
        path.unlink(missing_ok=True)
        raise InvalidInput(f"{name}: {exc}", code="unreadable_file") from None
    job = ImportJob.objects.create(
        project=project,
        created_by=user,
        source_name=name[:255],
        path=str(path),
        format=fmt,
        partial=partial,
        preference_source=preference_source,
        total_rows=total_rows,
        queued_at=timezone.now(),
    )
    transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from .tasks import import_job_run  # tasks import this module

    import_job_run.delay(job_id)


def import_job_transition(*, job_id: int, to: str, check=None, **fields: Any) -> ImportJob:
    """The one way an import job's status changes: load, lock, check the edge (and ``check``, a
    guard that raises Conflict), update. Raises Conflict for an edge ``TRANSITIONS`` lacks."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().select_related("project").get(pk=job_id)
        if to not in TRANSITIONS[job.status]:
            raise Conflict(f"This import is {job.status}; it cannot become {to}.", code="job_state")
        if check is not None:
            check(job)
        now = timezone.now()
        job.status = to
        for name, value in fields.items():
            setattr(job, name, value)
        if to == Status.QUEUED:
            job.queued_at = now
        elif to == Status.RUNNING:
            job.started_at, job.attempts = now, job.attempts + 1
        elif to in TERMINAL:
            job.finished_at = now
        job.save()
    return job


def import_job_is_stale(job: ImportJob, *, now=None) -> bool:
    """Whether a queued or running job has gone quiet: no worker picked it up, or its worker
    stopped beating, for TANDEM_JOB_STALE_SECONDS."""
    if job.status == Status.RUNNING:
        return heartbeat_quiet(job.started_at, heartbeat_last(_beat_key(job.pk)), now=now)
    if job.status == Status.QUEUED:
        return heartbeat_quiet(job.queued_at or job.created_at, now=now)
    return False


def _require_stale(job: ImportJob) -> None:
    if not import_job_is_stale(job):
        raise Conflict(
            f"This import is {job.status} and its worker is alive; wait, or cancel it.",
            code="job_alive",
        )


def _require_upload(job: ImportJob) -> None:
    if not job.path or not Path(job.path).exists():
        raise Conflict("The uploaded file is gone; upload it again.", code="upload_gone")


def import_job_execute(*, job_id: int) -> ImportJob:
    """Run the job's import (a worker's task); records the counts and every bad line, or why it
    failed. A repeated delivery does nothing unless the job is stuck, then it takes it over."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status in TERMINAL or (job.status == Status.RUNNING and not import_job_is_stale(job)):
        return job
    try:
        job = import_job_transition(
            job_id=job_id,
            to=Status.RUNNING,
            check=_require_stale if job.status == Status.RUNNING else None,
        )
    except Conflict:  # another worker got there first
        return ImportJob.objects.get(pk=job_id)

    cache.set(_progress_key(job.pk), 0, PROGRESS_TTL)
    _beat(job.pk)
    mine = job.attempts  # a retry while this worker was thought dead makes the job another's
    done = 0

    def progress(rows: int) -> None:
        nonlocal done
        done += rows
        cache.set(_progress_key(job.pk), done, PROGRESS_TTL)
        _beat(job.pk)
        if cache.get(_cancel_key(job.pk)):
            raise ImportCancelled

    def still_mine(locked: ImportJob) -> None:
        if locked.attempts != mine:
            raise Conflict("This import was handed to another worker.", code="job_taken")

    try:
        with transaction.atomic():  # the import and its "done" commit together
            result = items_import_file(
                project=job.project,
                source=Path(job.path),
                fmt=job.format,
                partial=job.partial,
                preference_source=job.preference_source,
                on_progress=progress,
            )
            job = import_job_transition(
                job_id=job.pk, to=Status.DONE, check=still_mine, result=result.as_dict()
            )
    except (ImportCancelled, Conflict):
        # Cancelled (or handed on) while it ran: the import was rolled back. A cancel not yet
        # recorded (its transaction waits behind ours) is recorded here.
        job = _end(job.pk, Status.CANCELLED, check=still_mine, error="cancelled")
    except (UnreadableFile, OSError) as exc:
        # An unreadable file (missing, corrupt Parquet, ...) is the uploader's to fix.
        logger.warning("import job %s failed: %s", job.pk, exc)
        job = _end(job.pk, Status.FAILED, check=still_mine, error=f"could not read the file: {exc}")
    # Anything else propagates: the task's on_failure records it through import_job_fail.
    _remove_upload(job)
    return job


def _beat(job_id: int) -> None:
    heartbeat_beat(_beat_key(job_id))


def _end(job_id: int, to: str, check=None, **fields: Any) -> ImportJob:
    """End the job unless it has already ended or is another's (then leave it as it is)."""
    try:
        return import_job_transition(job_id=job_id, to=to, check=check, **fields)
    except Conflict:
        return ImportJob.objects.get(pk=job_id)


def _remove_upload(job: ImportJob) -> None:
    if job.status in TERMINAL and job.path:
        Path(job.path).unlink(missing_ok=True)


def import_job_fail(*, job_id: int, reason: str) -> ImportJob | None:
    """Record why the job failed (an unexpected exception in its task) and remove its upload."""
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:
        return None
    logger.error("import job %s failed: %s", job_id, reason)
    job = _end(job_id, Status.FAILED, error=reason[:2000])
    _remove_upload(job)
    return job


def import_job_retry(*, job: ImportJob) -> ImportJob:
    """Queue a stuck job again (its worker died, or no worker took it); 409 otherwise."""

    def check(locked: ImportJob) -> None:
        _require_stale(locked)
        _require_upload(locked)

    job = import_job_transition(job_id=job.pk, to=Status.QUEUED, check=check, error="")
    cache.delete(_cancel_key(job.pk))
    transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def import_job_cancel(*, job: ImportJob, user: User | None = None) -> ImportJob:
    """Cancel a queued or running job. A live worker sees it at its next batch and rolls its
    import back; the upload is removed."""
    cache.set(_cancel_key(job.pk), 1, PROGRESS_TTL)
    who = f" by {user.username}" if user is not None else ""
    job = import_job_transition(job_id=job.pk, to=Status.CANCELLED, error=f"cancelled{who}")
    transaction.on_commit(lambda: _remove_upload(job))
    return job


def import_job_state(job: ImportJob) -> dict[str, Any]:
    """What a person polling the job sees: status, rows read so far of the total, the result."""
    if job.status == ImportJob.Status.DONE and job.result:
        rows_done = job.result["rows"]
    elif job.status == ImportJob.Status.QUEUED:
        rows_done = 0
    else:
        rows_done = cache.get(_progress_key(job.pk), 0)
    total = job.total_rows or 0
    stale = import_job_is_stale(job)
    # A file rejected as a whole (bad rows, nothing written) ran to its end but failed its
    # purpose: people see it as failed, not as a green "done".
    rejected = job.status == ImportJob.Status.DONE and not (job.result or {}).get("written", True)
    return {
        "id": job.pk,
        "project": job.project_id,
        "source_name": job.source_name,
        "status": job.status,
        "outcome": "rejected" if rejected else job.status,
        "finished": job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED),
        "rows_done": rows_done,
        "total_rows": job.total_rows,
        "percent": round(100 * rows_done / total, 1) if total else None,
        "result": job.result,
        "error": job.error,
        "stuck": stale,
        "can_retry": stale,
        "can_cancel": job.status in (Status.QUEUED, Status.RUNNING),
        "attempts": job.attempts,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }
