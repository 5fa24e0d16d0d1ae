"""Imports that run on a worker: the upload waits on disk, the worker imports it, progress shows.

The web and the API hand big files here instead of importing inside the request. The job is
idempotent: a redelivered task (a worker died mid-import, so its transaction was rolled back) runs
the import again, and a finished job is never run twice.
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
from tandem.errors import InvalidInput

from .importer import items_import_file
from .models import ImportJob, Project
from .readers import count_rows, detect_format

logger = logging.getLogger(__name__)
PROGRESS_TTL = 24 * 3600


def _progress_key(job_id: int) -> str:
    return f"tandem:import-job:{job_id}:rows"


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
    job = ImportJob.objects.create(
        project=project,
        created_by=user,
        source_name=name[:255],
        path=str(path),
        format=fmt,
        partial=partial,
        preference_source=preference_source,
        total_rows=count_rows(path, fmt),
    )
    from .tasks import import_job_run  # tasks import this module

    transaction.on_commit(lambda: import_job_run.delay(job.pk))
    return job


def import_job_execute(*, job_id: int) -> ImportJob:
    """Run the job's import; records the counts and every bad line, or why it failed."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().select_related("project").get(pk=job_id)
        if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
            return job
        job.status = ImportJob.Status.RUNNING
        job.started_at = timezone.now()
        job.save(update_fields=["status", "started_at"])

    key = _progress_key(job.pk)
    cache.set(key, 0, PROGRESS_TTL)
    done = 0

    def progress(rows: int) -> None:
        nonlocal done
        done += rows
        cache.set(key, done, PROGRESS_TTL)

    try:
        result = items_import_file(
            project=job.project,
            source=Path(job.path),
            fmt=job.format,
            partial=job.partial,
            preference_source=job.preference_source,
            on_progress=progress,
        )
    except (OSError, ValueError) as exc:
        # Unreadable files (missing, corrupt Parquet, ...) are the uploader's to fix, not retried.
        logger.warning("import job %s failed: %s", job.pk, exc)
        job.status, job.error = ImportJob.Status.FAILED, f"could not read the file: {exc}"
    else:
        job.status, job.result = ImportJob.Status.DONE, result.as_dict()
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error", "result", "finished_at"])
    Path(job.path).unlink(missing_ok=True)
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
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }
