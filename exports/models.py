"""Exports: the final preference of each item, and (their issues add them) snapshots and
training jobs.

A ``Preference`` is derived data: ``exports.preferences.preferences_recompute`` rebuilds it from
the item's annotations at any time, so nothing here is ever the only copy of a label.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Item, Project


class Preference(models.Model):
    """The aggregate label of one item, computed from its annotations (DESIGN.md "Preference").

    ``choice`` is the final label in the item's own letters: pairwise ``"A"`` / ``"B"`` /
    ``"tie"`` / ``"both_bad"``, listwise a ranking (letters, best first), thumbs ``"up"`` /
    ``"down"``; ``None`` while the item is unresolved.
    """

    class Provenance(models.TextChoices):
        HUMAN = "human", "People"
        JUDGE = "judge", "LLM judge"
        HYBRID = "hybrid", "People and LLM judge"

    #: What a resolution decides, named once: the resolver compares and writes these columns,
    #: the API shows them and the snapshot builder reads them (all but the listwise pair
    #: ``margins``, which no training format carries).
    DECIDED_FIELDS = (
        "choice",
        "margins",
        "strength",
        "margin",
        "provenance",
        "agreement",
        "n_human",
        "n_judge",
        "method",
        "decided_by",
        "confidence",
    )

    # The item is the key: one preference per item, and keyset pages follow item ids.
    item = models.OneToOneField(
        Item, primary_key=True, on_delete=models.CASCADE, related_name="preference"
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="preferences", db_index=False
    )  # indexed by the (project, ...) indexes below
    choice = models.JSONField(null=True, blank=True)
    strength = models.FloatField(
        null=True, blank=True, help_text="Mean strength of the labels behind the choice."
    )
    margin = models.FloatField(
        null=True,
        blank=True,
        help_text="majority: (votes for the choice - votes for the runner-up) / labels counted; "
        "other methods: agreement x normalised strength (docs/quality.md).",
    )
    margins = models.JSONField(
        null=True,
        blank=True,
        help_text='Listwise (bradley_terry): {"A>B": P(A beats B), ...} for each pair ranked.',
    )
    provenance = models.CharField(
        max_length=8,
        choices=Provenance.choices,
        blank=True,
        help_text="Which kinds of label the item has (blank: none yet).",
    )
    agreement = models.FloatField(
        null=True,
        blank=True,
        help_text="Share of the deciding source's labels that give the choice.",
    )
    n_human = models.PositiveIntegerField(default=0, help_text="Current (not superseded) labels.")
    n_judge = models.PositiveIntegerField(default=0)
    method = models.CharField(max_length=32, default="majority")
    decided_by = models.CharField(
        max_length=200,
        blank=True,
        help_text="'human', or the name of the judge whose label was taken; blank if unresolved.",
    )
    confidence = models.FloatField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["item_id"]
        indexes = [
            # Keyset pages of a project (and the ``resolved`` filter, by its partial twin).
            models.Index(fields=["project", "item"], name="preference_project_item"),
            models.Index(
                fields=["project", "item"],
                name="preference_project_resolved",
                condition=Q(resolved_at__isnull=False),
            ),
            models.Index(
                fields=["project", "provenance", "item"], name="preference_project_provenance"
            ),
            models.Index(fields=["project", "agreement"], name="preference_project_agreement"),
        ]

    def __str__(self) -> str:
        return f"preference of item {self.item_id}: {self.choice!r} ({self.provenance})"

    @property
    def resolved(self) -> bool:
        return self.choice is not None


class Aggregation(models.Model):
    """A project's aggregation method (``exports.aggregation``) and the state of its latest
    recompute. Owned by exports, keyed by project: ``annotation`` knows nothing of it.

    ``status`` goes through ``aggregation.aggregation_transition`` only. ``generation`` counts
    the recomputes asked for; a run ends the row ``done`` / ``failed`` only while it is the run
    of the latest generation (labels that arrived during a run queue the next one)."""

    class Status(models.TextChoices):
        IDLE = "idle", "Not run yet"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Recomputing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="aggregation"
    )
    method = models.CharField(max_length=32, default="majority")
    include_judges = models.BooleanField(
        null=True, blank=True, help_text="Count the judges' labels; null: the method's default."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    generation = models.PositiveIntegerField(default=0)
    run_generation = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True, help_text="items, written, resolved")
    error = models.TextField(blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"aggregation of {self.project_id}: {self.method} ({self.status})"


class Snapshot(models.Model):
    """An immutable export: parameters, files under ``EXPORTS_ROOT``, counts, checksums.

    Built once by a Celery task (``exports.snapshots.snapshot_build``); every status change
    goes through ``snapshots.snapshot_transition``. Nothing changes after ``done``; deleting the
    snapshot deletes its files.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Building"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    format = models.CharField(max_length=32)
    file_format = models.CharField(max_length=16)
    params = models.JSONField(
        default=dict, help_text="filters, splits, seed, style, pairs (as checked)."
    )
    folder = models.CharField(
        max_length=200, blank=True, help_text="Relative to EXPORTS_ROOT; set once built."
    )
    files = models.JSONField(default=list, help_text="[{path, bytes, sha256}]")
    rows = models.JSONField(default=dict, help_text="Rows per split.")
    items_total = models.PositiveIntegerField(null=True, blank=True)
    manifest = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "id"], name="snapshot_project_id")]

    def __str__(self) -> str:
        return f"snapshot {self.pk} of {self.project_id} ({self.format}/{self.file_format})"


# Training jobs live in their own room (exports/training/); Django finds them here.
from exports.training.models import TrainingJob  # noqa: E402, F401
