"""TrainingJob: a reward model, DPO or KTO run over a snapshot, on the ``gpu`` Celery queue.

Lives in the exports app (``exports.models`` imports it, as ``routing.models`` does its rooms').
Every status change goes through ``exports.training.jobs.training_job_transition``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class TrainingJob(models.Model):
    class Kind(models.TextChoices):
        REWARD = "reward", "Reward model"
        DPO = "dpo", "DPO"
        KTO = "kto", "KTO"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="training_jobs"
    )
    # A deleted snapshot leaves its jobs (their artifacts hold a copy of its manifest).
    snapshot = models.ForeignKey(
        "exports.Snapshot",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_jobs",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_model = models.CharField(max_length=500, help_text="A local folder (or .gguf file).")
    hyperparameters = models.JSONField(default=dict, blank=True, help_text="As checked, in full.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    log = models.TextField(blank=True, help_text="The run's log, newest last (the tail is kept).")
    metrics = models.JSONField(
        default=dict, blank=True, help_text="curve, last point, training figures, evaluation."
    )
    artifacts = models.CharField(max_length=500, blank=True, help_text="Relative to TRAINING_ROOT.")
    reason = models.TextField(blank=True, help_text="Why it failed or was cancelled.")
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid that ran it.")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "exports"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "id"], name="trainingjob_project_id"),
            # The reaper's scan: running jobs by heartbeat.
            models.Index(
                fields=["heartbeat_at"],
                name="trainingjob_running_beat",
                condition=Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.kind}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.TERMINAL
