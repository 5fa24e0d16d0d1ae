"""Snapshots: immutable exports built by a worker, with progress, files and a manifest.

Lifecycle (``Snapshot.Status``), every change through ``snapshot_transition`` under a row lock:

    queued -> running -> done
       \\         \\-> failed
        \\-> failed
    running -> running   (a redelivered task: the worker died; the build starts over)
    running (stuck) -> queued   (resumed by a manager: its worker stopped beating)
    queued (stuck) -> queued    (no worker took it: sent again)

While it builds, the worker beats in the cache at every chunk; a build that has not beaten for
``TANDEM_JOB_STALE_SECONDS`` (its worker died: SIGKILL, OOM, a lost machine) shows as stuck, and
``snapshot_resume`` (API and page) queues it again. A live worker's build is never taken over.

The build writes into a private folder under ``EXPORTS_ROOT/.building/`` and renames it into
place when complete, so a snapshot's folder either holds every file or does not exist. A
snapshot is never rebuilt once done or failed; deleting it deletes its folder (after commit).
Progress (items read) lives in the cache while the build runs, as for import jobs.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import User
from annotation.models import Project
from tandem.errors import ApplicationError, Conflict, NotFound
from tandem.heartbeats import heartbeat_beat, heartbeat_last, heartbeat_quiet

from .builder import MANIFEST, ExportSpec, export_spec, export_write
from .filters import ExportFilters
from .models import Snapshot

logger = logging.getLogger(__name__)
PROGRESS_TTL = 24 * 3600
MAX_ATTEMPTS = 3

S = Snapshot.Status
EDGES: dict[str, set[str]] = {
    S.QUEUED: {S.RUNNING, S.FAILED, S.QUEUED},
    S.RUNNING: {S.RUNNING, S.DONE, S.FAILED, S.QUEUED},
    S.DONE: set(),
    S.FAILED: set(),
}
TERMINAL = {S.DONE, S.FAILED}


def exports_root() -> Path:
    return Path(settings.EXPORTS_ROOT)


def _progress_key(snapshot_id: int) -> str:
    return f"tandem:snapshot:{snapshot_id}:items"


def _beat_key(snapshot_id: int) -> str:
    return f"tandem:snapshot:{snapshot_id}:beat"


def _beat(snapshot_id: int) -> None:
    heartbeat_beat(_beat_key(snapshot_id))


def snapshot_is_stale(snapshot: Snapshot, *, now=None) -> bool:
    """Whether a queued or building snapshot has gone quiet for TANDEM_JOB_STALE_SECONDS: no
    worker took it, or its worker stopped beating (it died)."""
    if snapshot.status == S.RUNNING:
        beat = heartbeat_last(_beat_key(snapshot.pk))
        return heartbeat_quiet(snapshot.created_at, snapshot.started_at, beat, now=now)
    if snapshot.status == S.QUEUED:
        return heartbeat_quiet(snapshot.created_at, now=now)
    return False


def snapshot_resume(*, snapshot: Snapshot) -> Snapshot:
    """Queue a stuck snapshot again (its worker died, or its message was lost); Conflict while a
    live worker builds it or once it has ended. The build starts over from the data."""
    from .tasks import snapshot_build_task  # tasks import this module

    with transaction.atomic():
        locked = Snapshot.objects.select_for_update().get(pk=snapshot.pk)
        if locked.status in TERMINAL:
            raise Conflict(f"This snapshot is {locked.status}; nothing to resume.")
        if not snapshot_is_stale(locked):
            raise Conflict("A worker is building this snapshot; wait for it.", code="job_alive")
        locked = snapshot_transition(snapshot_id=locked.pk, to=S.QUEUED, attempts=0, error="")
        transaction.on_commit(lambda: snapshot_build_task.delay(locked.pk))
    return locked


def snapshot_transition(*, snapshot_id: int, to: str, **fields: Any) -> Snapshot:
    """Move the snapshot to ``to`` (setting ``fields``) if the lifecycle allows; else Conflict.
    Raises Snapshot.DoesNotExist when it was deleted meanwhile."""
    with transaction.atomic():
        snapshot = Snapshot.objects.select_for_update().get(pk=snapshot_id)
        if to not in EDGES[snapshot.status]:
            raise Conflict(f"A {snapshot.status} snapshot cannot become {to}.")
        snapshot.status = to
        for name, value in fields.items():
            setattr(snapshot, name, value)
        snapshot.save(update_fields=["status", *fields])
    return snapshot


def snapshot_create(
    *,
    project: Project,
    user: User | None,
    format: str,
    file_format: str,
    filters: dict[str, Any] | None = None,
    splits: str | dict[str, Any] | None = None,
    seed: int = 0,
    style: str = "auto",
    pairs: str = "all",
) -> Snapshot:
    """Check the parameters and queue the build (after commit, so the worker finds the row)."""
    spec = export_spec(
        project=project,
        format=format,
        file_format=file_format,
        filters=filters,
        splits=splits,
        seed=seed,
        style=style,
        pairs=pairs,
    )
    params = {k: v for k, v in spec.to_dict().items() if k not in ("format", "file_format")}
    snapshot = Snapshot.objects.create(
        project=project,
        created_by=user,
        format=spec.format,
        file_format=spec.file_format,
        params=params,
    )
    from .tasks import snapshot_build_task  # tasks import this module

    transaction.on_commit(lambda: snapshot_build_task.delay(snapshot.pk))
    return snapshot


def snapshot_spec(snapshot: Snapshot) -> ExportSpec:
    params = snapshot.params
    return ExportSpec(
        format=snapshot.format,
        file_format=snapshot.file_format,
        filters=ExportFilters.from_dict(params.get("filters")),
        splits=dict(params.get("splits") or {"train": 1.0}),
        seed=int(params.get("seed", 0)),
        style=params.get("style", "auto"),
        pairs=params.get("pairs", "all"),
    )


def snapshot_build(*, snapshot_id: int) -> Snapshot | None:
    """Build the snapshot's files. Idempotent: a done or failed snapshot is returned as is."""
    snapshot = Snapshot.objects.select_related("project").filter(pk=snapshot_id).first()
    if snapshot is None or snapshot.status in TERMINAL:
        return snapshot
    if snapshot.status == S.RUNNING and not snapshot_is_stale(snapshot):
        return snapshot  # a live worker builds it (a duplicate delivery): leave it alone
    if snapshot.attempts >= MAX_ATTEMPTS:
        return snapshot_transition(
            snapshot_id=snapshot_id,
            to=S.FAILED,
            error=f"gave up after {snapshot.attempts} attempts (the worker stopped each time)",
            finished_at=timezone.now(),
        )
    snapshot = snapshot_transition(
        snapshot_id=snapshot_id,
        to=S.RUNNING,
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    building = exports_root() / ".building" / f"{snapshot_id}-{uuid.uuid4().hex}"
    key = _progress_key(snapshot_id)
    cache.set(key, 0, PROGRESS_TTL)
    _beat(snapshot_id)

    def progress(done: int, total: int) -> None:
        cache.set_many({key: done, key + ":total": total}, PROGRESS_TTL)
        _beat(snapshot_id)

    try:
        project = Project.objects.get(pk=snapshot.project_id)
        manifest = export_write(
            project=project,
            spec=snapshot_spec(snapshot),
            out_dir=building,
            on_progress=progress,
        )
    except ApplicationError as exc:
        shutil.rmtree(building, ignore_errors=True)
        return _fail(snapshot_id, exc.message)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise  # the task's on_failure records the reason
    folder = f"project-{snapshot.project_id}/snapshot-{snapshot_id}"
    final = exports_root() / folder
    shutil.rmtree(final, ignore_errors=True)  # a half-moved earlier attempt
    final.parent.mkdir(parents=True, exist_ok=True)
    building.rename(final)
    try:
        return snapshot_transition(
            snapshot_id=snapshot_id,
            to=S.DONE,
            folder=folder,
            files=[*manifest["files"], _manifest_entry(final)],
            rows=manifest["rows"],
            items_total=manifest["items"],
            manifest=manifest,
            finished_at=timezone.now(),
        )
    except Snapshot.DoesNotExist:  # deleted while it was built
        shutil.rmtree(final, ignore_errors=True)
        return None


def _manifest_entry(folder: Path) -> dict[str, Any]:
    from .writers import file_sha256

    path = folder / MANIFEST
    return {"path": MANIFEST, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _fail(snapshot_id: int, reason: str) -> Snapshot | None:
    try:
        return snapshot_transition(
            snapshot_id=snapshot_id, to=S.FAILED, error=reason[:2000], finished_at=timezone.now()
        )
    except Snapshot.DoesNotExist:
        return None


def snapshot_fail(*, snapshot_id: int, reason: str) -> Snapshot | None:
    """End a snapshot failed with its reason (the task's on_failure); no-op once it ended."""
    snapshot = Snapshot.objects.filter(pk=snapshot_id).first()
    if snapshot is None or snapshot.status in TERMINAL:
        return snapshot
    return _fail(snapshot_id, reason)


def snapshot_delete(*, snapshot: Snapshot) -> None:
    """Delete the snapshot; its folder goes once the deletion commits (``receivers``)."""
    snapshot.delete()


def snapshot_files_remove(snapshot: Snapshot) -> None:
    """Remove the snapshot's folder after the current transaction commits."""
    if not snapshot.folder:
        return
    folder = exports_root() / snapshot.folder
    transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


# --- reads ------------------------------------------------------------------------------------


def snapshot_list(*, project: Project) -> QuerySet[Snapshot]:
    return Snapshot.objects.filter(project=project)


def snapshot_get(*, project: Project, snapshot_id: int | str) -> Snapshot:
    snapshot = Snapshot.objects.filter(project=project, pk=snapshot_id).first()
    if snapshot is None:
        raise NotFound("No such snapshot.")
    return snapshot


def snapshot_file(*, snapshot: Snapshot, path: str) -> Path:
    """The file ``path`` of a done snapshot (only names its manifest lists)."""
    names = {f["path"] for f in snapshot.files}
    if snapshot.status != S.DONE or path not in names:
        raise NotFound("No such file in this snapshot.")
    return exports_root() / snapshot.folder / path


def snapshot_state(snapshot: Snapshot) -> dict[str, Any]:
    """What a person polling the snapshot sees."""
    if snapshot.status == S.DONE:
        items_done = snapshot.items_total or 0
    elif snapshot.status == S.RUNNING:
        items_done = cache.get(_progress_key(snapshot.pk), 0)
    else:
        items_done = 0
    total = snapshot.items_total
    if snapshot.status == S.RUNNING:
        total = cache.get(_progress_key(snapshot.pk) + ":total", total)
    return {
        "id": snapshot.pk,
        "project": snapshot.project_id,
        "status": snapshot.status,
        "format": snapshot.format,
        "file_format": snapshot.file_format,
        "params": snapshot.params,
        "items_done": items_done,
        "items_total": total,
        "percent": round(100 * items_done / total, 1) if total else None,
        "rows": snapshot.rows,
        "files": [
            {"path": f["path"], "bytes": f["bytes"], "sha256": f["sha256"]} for f in snapshot.files
        ],
        "error": snapshot.error,
        "stuck": snapshot_is_stale(snapshot),
        "created_at": snapshot.created_at,
        "started_at": snapshot.started_at,
        "finished_at": snapshot.finished_at,
    }
