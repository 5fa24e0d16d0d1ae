"""The router's data: policies, per-project budgets, stored item features, decisions and the
learned policy's fitted models. (Judges and judge runs live in ``judge_models.py``.)"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from annotation.models import Item, Project
from annotation.routes import TARGET_CHOICES


class RoutingPolicy(models.Model):
    """A project's routing policy: which policy, its params, the judges and the human budget.

    ``version`` goes up with every change, and each decision records the version it was made
    with. One policy per project is active.
    """

    class Name(models.TextChoices):
        ALL_HUMAN = "all_human", "All to people"
        ALL_JUDGE = "all_judge", "All to the judge"
        RANDOM = "random", "Random fraction"
        RULES = "rules", "Rules"
        JUDGE_UNCERTAINTY = "judge_uncertainty", "Judge uncertainty"
        LEARNED = "learned", "Learned"

    # Policies that send items to a judge by design (judge first, or all to the judge): they
    # must name one, or their items would wait for a verdict that never comes.
    JUDGE_NAMED = (Name.ALL_JUDGE, Name.JUDGE_UNCERTAINTY, Name.LEARNED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="routing_policies")
    name = models.CharField(max_length=32, choices=Name.choices)
    params = models.JSONField(default=dict, blank=True)
    judges = models.JSONField(
        default=list, blank=True, help_text="Judge names; the first gives the label."
    )
    budget_fraction = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Human budget as a share of the project's items.",
    )
    budget_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Human budget as a number of items."
    )
    tagging_judge = models.CharField(
        max_length=100,
        blank=True,
        help_text="Judge that tags the items' prompts (LLM tags for the features); blank: none.",
    )
    judge_cost_cap = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Cost cap (USD) of each automatic judge run; blank: no cap.",
    )
    calibration_share = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Random share of items that always get both a human and a judge label.",
    )
    active = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "routing policies"
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=Q(active=True), name="routing_one_active_policy"
            ),
            models.CheckConstraint(
                condition=Q(budget_fraction__isnull=True) | Q(budget_count__isnull=True),
                name="routing_budget_one_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.name} v{self.version}"

    def clean(self) -> None:
        from routing.router.policies import policy_build
        from tandem.errors import InvalidInput

        errors: dict[str, str] = {}
        if self.budget_fraction is not None and self.budget_count is not None:
            errors["budget_count"] = "give the budget as a fraction or as a count, not both"
        if not isinstance(self.judges, list) or not all(
            isinstance(j, str) and j for j in self.judges
        ):
            errors["judges"] = "must be a list of judge names"
        elif not self.judges and self.name in self.JUDGE_NAMED:
            errors["judges"] = (
                f"the {self.name} policy sends items to a judge: name at least one judge"
            )
        if self.tagging_judge:
            from routing.judges.models import Judge

            if not Judge.objects.filter(name=self.tagging_judge).exists():
                errors["tagging_judge"] = f"no judge named {self.tagging_judge!r}"
        try:
            policy_build(name=self.name, params=self.params)
        except InvalidInput as exc:
            errors["params"] = exc.message
        if errors:
            raise ValidationError(errors)

    def budget_limit(self, n_items: int) -> int | None:
        """How many items may go to people out of ``n_items``; None: no limit set."""
        if self.budget_count is not None:
            return self.budget_count
        if self.budget_fraction is not None:
            return int(self.budget_fraction * n_items + 1e-9)
        return None


class RoutingPolicyVersion(models.Model):
    """What a policy was at one version: written by ``routing_policy_set`` on every change, so a
    manager sees the history and a decision's ``policy_version`` can be read back."""

    policy = models.ForeignKey(RoutingPolicy, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    config = models.JSONField(help_text="The policy's fields at this version.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="routing_policy_version")
        ]

    def __str__(self) -> str:
        return f"{self.policy_id} v{self.version}"


class RoutingBudget(models.Model):
    """How much of a project's human budget is spent; locked while the router spends it."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="routing_budget")
    spent = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"budget of {self.project_id}: {self.spent} spent"


class ItemFeatures(models.Model):
    """Routing features of one item, per feature version; ``signature`` names the judge labels
    they were computed from, so new judge results make them stale, never silently reused."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="routing_features")
    version = models.CharField(max_length=16)
    judges = models.JSONField(default=list)
    signature = models.CharField(max_length=64)
    values = models.JSONField()
    language = models.CharField(
        max_length=8, blank=True, help_text="The prompt's language, ISO 639-1 ('und': unknown)."
    )
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "item features"
        constraints = [
            models.UniqueConstraint(fields=["item", "version"], name="item_features_unique")
        ]

    def __str__(self) -> str:
        return f"features v{self.version} of item {self.item_id}"


class RouterModel(models.Model):
    """A fitted learned policy (cross-fitted fold models), its version and metrics."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="router_models")
    version = models.PositiveIntegerField()
    feature_version = models.CharField(max_length=16)
    judges = models.JSONField(default=list)
    n_train = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    blob = models.BinaryField(help_text="The fitted LearnedPolicy, pickled by joblib.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="router_model_unique")
        ]

    def __str__(self) -> str:
        return f"router model v{self.version} of project {self.project_id}"


class RoutingDecision(models.Model):
    """Who labels an item and why. Append-only: a re-routing is a new decision that supersedes
    the previous one, with ``kind="reroute"``."""

    class Kind(models.TextChoices):
        INITIAL = "initial", "First routing"
        REROUTE = "reroute", "Re-routing (e.g. after judge results)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="routing_decisions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="routing_decisions")
    policy = models.ForeignKey(
        RoutingPolicy, null=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    policy_name = models.CharField(max_length=32)
    policy_version = models.PositiveIntegerField()
    model_version = models.PositiveIntegerField(null=True, blank=True)
    target = models.CharField(max_length=8, choices=TARGET_CHOICES)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.INITIAL)
    calibration = models.BooleanField(default=False)
    waiting = models.BooleanField(
        default=False,
        help_text="Judge first: with the judges until their verdicts are in, then re-routed.",
    )
    score = models.FloatField(null=True, blank=True)
    reason = models.TextField()
    budget_state = models.JSONField(default=dict)
    features = models.JSONField(default=dict)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "target"], name="decision_project_target")]

    def __str__(self) -> str:
        return f"item {self.item_id} -> {self.target} ({self.policy_name} v{self.policy_version})"


class RoutingWork(models.Model):
    """The router's background work on a project: one row per project, one lifecycle.

    ``status`` moves only through ``routing.router.loop`` (one transition function): a request
    makes an idle (or failed) project ``queued`` and enqueues one task; more requests while it
    is queued are coalesced; a request while it runs sets ``again`` so the task runs once more
    when it ends. A task that fails records its reason (``failed``, ``error``), so a project
    never looks busy forever; the next request starts afresh.
    """

    class Status(models.TextChoices):
        IDLE = "idle", "Idle"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed"

    BUSY = (Status.QUEUED, Status.RUNNING)

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="routing_work")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.IDLE)
    again = models.BooleanField(default=False, help_text="Requested again while running.")
    reason = models.CharField(max_length=200, blank=True, help_text="Why it was last requested.")
    error = models.TextField(blank=True, help_text="Why the last task failed.")
    runs = models.PositiveIntegerField(default=0, help_text="Tasks that ran.")
    requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"routing work of {self.project_id}: {self.status}"


class RewardFeature(models.Model):
    """A trained reward model registered on a project as a router feature (``rm_margin``).

    The model lives elsewhere (a training job of the exports app, which scores the items: see
    ``exports.training.routing_scores``); routing keeps only what it needs to read the margins:
    ``model_key`` names the scoring model (margins of another key are never read), and the
    progress of the scoring. One per project: registering another model replaces it.
    """

    class Status(models.TextChoices):
        SCORING = "scoring", "Scoring the items"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="reward_feature")
    model_key = models.CharField(max_length=100, help_text="Which model's margins to read.")
    training_job_id = models.PositiveIntegerField(
        help_text="The reward-model training job (exports); an id, so routing needs no exports."
    )
    description = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.SCORING)
    scored = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    registered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"reward feature {self.model_key} of project {self.project_id} ({self.status})"


class ItemRewardMargin(models.Model):
    """One item's reward-model margin: ``score(A) - score(B)`` in the item's own letters.

    Unique per (item, model): a scoring task that is retried or resumed overwrites, never adds.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="reward_margins")
    model_key = models.CharField(max_length=100)
    margin = models.FloatField()
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "model_key"], name="item_reward_margin_unique")
        ]

    def __str__(self) -> str:
        return f"rm margin {self.margin:.3f} of item {self.item_id} ({self.model_key})"
