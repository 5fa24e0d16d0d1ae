"""Training jobs: create, run on a worker, cancel, and end the ones whose worker died.

Lifecycle (``TrainingJob.Status``), every change through ``training_job_transition`` under a row
lock:

    queued -> running -> succeeded
       \\         \\-> failed | cancelled
        \\-> failed | cancelled

Races: the worker is the only writer of ``log``, ``metrics`` and ``heartbeat_at`` while the job
runs (at most once a second, ``FLUSH_SECONDS``), and only while the row is still ``running``; a
person only sets ``cancel_requested`` (a queued job is cancelled at once). The worker reads the
flag at its flushes and the trainer stops at the next step. A worker that dies stops beating:
``training_jobs_fail_stale`` (Celery beat, every minute) fails running jobs whose heartbeat is
older than ``TRAINING_HEARTBEAT_TIMEOUT``, and a redelivered task (``acks_late``) that finds its
job running with a stale heartbeat fails it at once; with a fresh heartbeat another worker holds
it, and the duplicate leaves it alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from exports.models import Snapshot
from tandem.errors import Conflict, InvalidInput

from .data import KIND_FORMATS
from .models import TrainingJob
from .trainer import (
    HyperparameterError,
    TrainingError,
    TrainingHooks,
    hyperparameters_check,
    training_run,
)

logger = logging.getLogger(__name__)

J = TrainingJob.Status
EDGES: dict[str, set[str]] = {
    J.QUEUED: {J.RUNNING, J.FAILED, J.CANCELLED},
    J.RUNNING: {J.SUCCEEDED, J.FAILED, J.CANCELLED},
    J.SUCCEEDED: set(),
    J.FAILED: set(),
    J.CANCELLED: set(),
}
FLUSH_SECONDS = 1.0
LOG_MAX_CHARS = 64_000


def training_root() -> Path:
    return Path(settings.TRAINING_ROOT)


def training_job_transition(*, job_id: int, to: str, **fields: Any) -> TrainingJob:
    """Move the job to ``to`` (setting ``fields``) if the lifecycle allows; else Conflict."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if to not in EDGES[job.status]:
            raise Conflict(f"A {job.status} training job cannot become {to}.")
        job.status = to
        if to in TrainingJob.TERMINAL:
            fields.setdefault("finished_at", timezone.now())
        for name, value in fields.items():
            setattr(job, name, value)
        job.save(update_fields=["status", *fields])
    return job


def base_model_default() -> str:
    return settings.TRAINING_BASE_MODEL


def training_job_create(
    *,
    snapshot: Snapshot,
    user: User | None,
    kind: str,
    base_model: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> TrainingJob:
    """Check and queue a job on the ``gpu`` queue (after commit, so the worker finds it);
    ``enqueue=False`` leaves it queued for the caller to run (``manage.py train``)."""
    if kind not in KIND_FORMATS:
        raise InvalidInput(
            f"unknown kind {kind!r}; choose one of {', '.join(KIND_FORMATS)}",
            details={"kind": kind},
        )
    if snapshot.status != Snapshot.Status.DONE:
        raise Conflict(f"snapshot {snapshot.pk} is {snapshot.status}: train on a finished one")
    if snapshot.format not in KIND_FORMATS[kind]:
        raise InvalidInput(
            f"a {kind} job trains on a {' or '.join(KIND_FORMATS[kind])} snapshot; "
            f"snapshot {snapshot.pk} is {snapshot.format}",
            details={"kind": kind, "format": snapshot.format},
        )
    base_model = (base_model or base_model_default()).strip()
    if not base_model:
        raise InvalidInput(
            "give a base model: a local folder (TRAINING_BASE_MODEL sets a default)",
            details={"base_model": "required"},
        )
    if not (Path(base_model).is_absolute() or Path(base_model).exists()):
        raise InvalidInput(
            f"base model {base_model!r}: an absolute path to a local model folder or .gguf file "
            "(hub names are not downloaded)",
            details={"base_model": base_model},
        )
    try:
        checked = hyperparameters_check(kind, hyperparameters)
    except HyperparameterError as exc:
        raise InvalidInput("bad hyperparameters", details=exc.details) from None
    job = TrainingJob.objects.create(
        project_id=snapshot.project_id,
        snapshot=snapshot,
        created_by=user,
        kind=kind,
        base_model=base_model,
        hyperparameters=checked,
    )
    if enqueue:
        from .tasks import training_job_run  # tasks import this module

        transaction.on_commit(lambda: training_job_run.delay(job.pk))
    return job


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """A queued job is cancelled now; a running one at its next step. Idempotent while it
    runs; a finished job answers Conflict."""
    with transaction.atomic():
        locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if locked.status == J.QUEUED:
            locked.status = J.CANCELLED
            locked.cancel_requested = True
            locked.reason = "cancelled before it started"
            locked.finished_at = timezone.now()
            locked.save(update_fields=["status", "cancel_requested", "reason", "finished_at"])
        elif locked.status == J.RUNNING:
            locked.cancel_requested = True
            locked.save(update_fields=["cancel_requested"])
        else:
            raise Conflict(f"training job {job.pk} is {locked.status}: nothing to cancel")
    return locked


def training_job_fail(*, job_id: int, reason: str) -> TrainingJob | None:
    """End the job failed with ``reason`` unless it already ended (then leave it as it is)."""
    try:
        return training_job_transition(job_id=job_id, to=J.FAILED, reason=reason[:4000])
    except (Conflict, TrainingJob.DoesNotExist):
        return None


def training_jobs_fail_stale(*, timeout: float | None = None) -> int:
    """Fail running jobs whose worker stopped beating ``timeout`` seconds ago; how many."""
    timeout = settings.TRAINING_HEARTBEAT_TIMEOUT if timeout is None else timeout
    cutoff = timezone.now() - timedelta(seconds=timeout)
    stale = TrainingJob.objects.filter(status=J.RUNNING, heartbeat_at__lt=cutoff)
    failed = 0
    for job in stale.only("pk", "heartbeat_at", "worker"):
        if training_job_fail(job_id=job.pk, reason=_worker_lost(job)):
            failed += 1
    return failed


def _worker_lost(job: TrainingJob) -> str:
    quiet = (timezone.now() - job.heartbeat_at).total_seconds() if job.heartbeat_at else 0
    return (
        f"worker lost: {job.worker or 'the worker'} stopped beating {quiet:.0f} s ago "
        f"(killed, or out of memory); the job's log shows how far it got"
    )


def _stale(job: TrainingJob) -> bool:
    if job.heartbeat_at is None:
        return True
    age = (timezone.now() - job.heartbeat_at).total_seconds()
    return age > settings.TRAINING_HEARTBEAT_TIMEOUT


class JobReporter:
    """The trainer's reports, written to the job row at most once a second (and at the end)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.lines: list[str] = []
        self.current: dict[str, Any] = {}
        self.cancel = False
        self.last_flush = 0.0

    def hooks(self) -> TrainingHooks:
        return TrainingHooks(
            log=self.log, metrics=self.metrics, beat=self.flush, should_stop=lambda: self.cancel
        )

    def log(self, line: str) -> None:
        self.lines.append(f"{timezone.now():%H:%M:%S} {line}")
        self.flush()

    def metrics(self, metrics: dict[str, Any]) -> None:
        self.current = {**self.current, **metrics}
        self.flush()

    def text(self) -> str:
        return "\n".join(self.lines)[-LOG_MAX_CHARS:]

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_flush < FLUSH_SECONDS:
            return
        self.last_flush = now
        running = TrainingJob.objects.filter(pk=self.job_id, status=J.RUNNING)
        running.update(log=self.text(), metrics=self.current, heartbeat_at=timezone.now())
        row = (
            TrainingJob.objects.filter(pk=self.job_id)
            .values_list("cancel_requested", "status")
            .first()
        )
        cancel, status = row or (True, J.FAILED)
        # Cancelled by a person, or ended by someone else (the reaper): stop either way.
        self.cancel = cancel or status != J.RUNNING


def training_job_execute(*, job_id: int) -> TrainingJob | None:
    """Run the job (the ``gpu`` worker). Idempotent: a finished job is left as it is."""
    job = TrainingJob.objects.select_related("snapshot").filter(pk=job_id).first()
    if job is None or job.is_finished:
        return job
    if job.status == J.RUNNING:
        # A redelivered task: its first worker died (stale heartbeat), or still runs it.
        if _stale(job):
            return training_job_fail(job_id=job_id, reason=_worker_lost(job))
        return job
    job = training_job_transition(
        job_id=job_id,
        to=J.RUNNING,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        attempts=job.attempts + 1,
    )
    reporter = JobReporter(job_id)
    out_dir = training_root() / f"project-{job.project_id}" / f"job-{job.pk}"
    try:
        result = training_run(
            snapshot_dir=_snapshot_folder(job),
            kind=job.kind,
            base_model=job.base_model,
            hyperparameters=job.hyperparameters,
            output_dir=out_dir,
            hooks=reporter.hooks(),
        )
    except (TrainingError, HyperparameterError) as exc:
        reporter.log(f"failed: {exc}")
        reporter.flush(force=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        return training_job_fail(job_id=job_id, reason=str(exc))
    except BaseException as exc:
        # A bug or the machine (out of memory, ...): end failed with the reason, then let the
        # task see the error too. The log keeps how far it got.
        reason = f"{type(exc).__name__}: {exc}"
        reporter.log(f"failed: {reason}")
        reporter.flush(force=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        training_job_fail(job_id=job_id, reason=reason)
        raise
    reporter.flush(force=True)
    if result.cancelled:
        shutil.rmtree(out_dir, ignore_errors=True)
        steps = result.metrics.get("training", {}).get("steps", 0)
        return _end(job_id, J.CANCELLED, reason=f"cancelled at step {steps}", reporter=reporter)
    artifacts = str(out_dir.relative_to(training_root()))
    return _end(job_id, J.SUCCEEDED, artifacts=artifacts, reporter=reporter)


def _end(job_id: int, to: str, *, reporter: JobReporter, **fields: Any) -> TrainingJob | None:
    try:
        return training_job_transition(
            job_id=job_id, to=to, log=reporter.text(), metrics=reporter.current, **fields
        )
    except Conflict:  # ended meanwhile (the reaper): leave it as it is
        return TrainingJob.objects.filter(pk=job_id).first()


def _snapshot_folder(job: TrainingJob) -> Path:
    snapshot = job.snapshot
    if snapshot is None:
        raise TrainingError("the job's snapshot was deleted")
    if snapshot.status != Snapshot.Status.DONE or not snapshot.folder:
        raise TrainingError(f"snapshot {snapshot.pk} is {snapshot.status}, not built")
    return Path(settings.EXPORTS_ROOT) / snapshot.folder


def training_job_artifacts(job: TrainingJob) -> Path | None:
    return training_root() / job.artifacts if job.artifacts else None
