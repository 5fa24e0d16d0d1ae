"""Projects, items, candidates, leases and labels: the data every other app builds on.

Letters name candidates in the item's own order (``A`` = position 0), never in the order a person
or judge was shown; the shown order is stored beside each lease and label (e.g. ``"BA"``), so
position bias can be measured and undone.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Func, Q

from .routes import HUMAN_ROUTES, Route
from .schema import LabelSchema, TaskType


class Project(models.Model):
    """A labelling campaign: what is judged, how, and by how many people."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=16, choices=TaskType.choices)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    label_schema = models.JSONField(default=dict, blank=True)
    overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Human labels wanted per item.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=900, validators=[MinValueValidator(30), MaxValueValidator(7 * 24 * 3600)]
    )
    max_open_leases = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Open leases one annotator may hold at once.",
    )
    gold_ratio = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served tasks drawn from gold items (items with a known answer).",
    )
    archived = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.slug

    @property
    def schema(self) -> LabelSchema:
        return LabelSchema.from_dict(self.label_schema, task_type=self.task_type)

    def clean(self) -> None:
        # Normalise and validate the schema so a bad one never reaches the database.
        self.label_schema = LabelSchema.from_dict(
            self.label_schema, task_type=self.task_type
        ).to_dict()


class Membership(models.Model):
    class Role(models.TextChoices):
        MANAGER = "manager", "Manager"
        ANNOTATOR = "annotator", "Annotator"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.project_id}:{self.role}"


class MembershipChange(models.Model):
    """One change of someone's role on a project: who changed it, when, from what to what.

    Append-only, written by ``services.membership_set`` / ``membership_remove`` in the transaction
    that makes the change. An empty ``old_role`` is an addition, an empty ``new_role`` a removal.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="member_changes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when a command or the system made the change.",
    )
    old_role = models.CharField(max_length=16, blank=True)
    new_role = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "id"], name="membership_change_project")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.project_id}: {self.old_role or '-'} -> {self.new_role or '-'}"


class Item(models.Model):
    """One thing to judge: a prompt or a conversation, with its candidates."""

    Route = Route  # who labels the item (annotation.routes: the names, defined once)

    # Indexed by the unique (project, external_id) constraint; a second index only slows writes.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    external_id = models.CharField(max_length=255)
    prompt = models.TextField(blank=True)
    messages = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    gold = models.JSONField(null=True, blank=True)
    content_hash = models.CharField(max_length=64)
    route = models.CharField(max_length=16, choices=Route.choices, default=Route.UNROUTED)
    # Denormalised counters, kept by the assignment service in the transaction that changes them
    # (db_default so that COPY imports start them at zero). ``human_done + open_leases`` is the
    # item's load: a person is given the item only while its load is below the project's overlap.
    human_done = models.PositiveSmallIntegerField(
        db_default=0, editable=False, help_text="Human labels submitted through leases."
    )
    open_leases = models.PositiveSmallIntegerField(
        db_default=0, editable=False, help_text="Leases open now (expired ones until reclaimed)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="item_unique_external_id"
            ),
        ]
        indexes = [
            # The human queue: items people may label, fullest first, so next-task reads the
            # head of this index instead of scanning the project.
            models.Index(
                F("project"),
                (F("human_done") + F("open_leases")).desc(),
                F("id"),
                name="item_human_pool",
                condition=Q(route__in=HUMAN_ROUTES, gold__isnull=True),
            ),
            models.Index(
                fields=["project", "id"],
                name="item_gold_pool",
                condition=Q(route__in=HUMAN_ROUTES, gold__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.external_id}"


class OctetLength(Func):
    """A text's length in UTF-8 bytes (PostgreSQL reads it from the value's header)."""

    function = "OCTET_LENGTH"
    output_field = models.PositiveIntegerField()

    def as_sqlite(self, compiler, connection, **extra_context):
        template = "LENGTH(CAST(%(expressions)s AS BLOB))"
        return self.as_sql(compiler, connection, template=template, **extra_context)


class Candidate(models.Model):
    """A response of an item. ``position`` 0 is letter A in the item's own order.

    ``text_bytes`` (the text's length in UTF-8 bytes) is a stored generated column: the database
    computes it on every write path (ORM, bulk_create, the importer's COPY), so nothing has to
    remember it; the quality page's length bias reads it (with the covering index of migration
    0008) instead of the texts."""

    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="candidates", db_index=False
    )  # indexed by the unique (item, position) constraint
    position = models.PositiveSmallIntegerField()
    text = models.TextField()
    text_bytes = models.GeneratedField(
        expression=OctetLength("text"), output_field=models.PositiveIntegerField(), db_persist=True
    )
    model = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["item_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="candidate_unique_position")
        ]

    def __str__(self) -> str:
        return f"{self.item_id}:{self.letter}"

    @property
    def letter(self) -> str:
        return chr(ord("A") + self.position)


class Assignment(models.Model):
    """A lease of one item to one annotator, with the presentation order it showed."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )  # indexed by the unique (item, annotator) constraint
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    order = models.CharField(max_length=32, help_text="Letters in the order shown, e.g. 'BA'.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    is_gold = models.BooleanField(default=False)
    skip_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # An item is never leased twice to the same person.
            models.UniqueConstraint(fields=["item", "annotator"], name="assignment_unique_person")
        ]
        indexes = [
            models.Index(
                fields=["annotator", "status", "expires_at"], name="assignment_open_by_person"
            ),
            models.Index(fields=["item", "status"], name="assignment_item_status"),
            # Reclaiming expired leases reads only the open ones.
            models.Index(
                fields=["project", "expires_at"],
                name="assignment_open_expiry",
                condition=Q(status="open"),
            ),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk} of item {self.item_id} to {self.annotator_id}"


class Annotation(models.Model):
    """One label, from a person or a judge. Append-only: a correction supersedes, never edits."""

    class Source(models.TextChoices):
        HUMAN = "human", "Human"
        JUDGE = "judge", "LLM judge"

    # Both indexed by the (project, source) and (item, source) indexes below.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="annotations", db_index=False
    )
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="annotations", db_index=False
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="annotations",
    )
    external_annotator = models.CharField(
        max_length=150, blank=True, help_text="Who labelled it outside Tandem (imported labels)."
    )
    judge = models.CharField(max_length=200, blank=True, help_text="Judge name, e.g. gpt-4o/v1.")
    judge_run_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    payload = models.JSONField(
        help_text="choice/strength/aspects/rationale (pairwise), ranking (listwise) or thumb."
    )
    order = models.CharField(max_length=32, blank=True, help_text="Order shown; blank if unknown.")
    raw_output = models.TextField(blank=True, help_text="A judge's answer, word for word.")
    confidence = models.FloatField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    # NULL (not "") when absent, so the unique constraint only binds keys that were given.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    imported = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="annotation_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(source="human") | Q(annotator__isnull=True),
                name="annotation_judge_has_no_user",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "source"], name="annotation_project_source"),
            models.Index(fields=["item", "source"], name="annotation_item_source"),
            models.Index(
                fields=["annotator", "project", "created_at"], name="annotation_by_person"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} label {self.pk} on item {self.item_id}"


class ImportJob(models.Model):
    """A file import run by a worker, for files too big to import inside a request.

    Progress (rows read so far) and the worker's heartbeat live in the cache while the job runs,
    because the import's own transaction hides its writes until the end; the final counts and
    errors land in ``result``. Status changes only through ``import_jobs.import_job_transition``
    along ``TRANSITIONS``.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_name = models.CharField(max_length=255, help_text="The uploaded file's name.")
    path = models.CharField(max_length=500, help_text="Where the upload waits for the worker.")
    format = models.CharField(max_length=16)
    partial = models.BooleanField(default=False)
    preference_source = models.CharField(max_length=8, default="none")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Times a worker started it (a retry after a dead worker adds one)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"import {self.pk} of {self.source_name} ({self.status})"
