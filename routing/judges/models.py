"""LLM judges: a judge's configuration, its runs, their per-item signals, and the response cache.

A judge's labels are ``annotation.Annotation`` rows with ``source="judge"``; these models hold what
sits around them: how the judge is configured (never its API key: only the name of the environment
variable that holds it), what a run did (counts, tokens, cost, why it stopped), and per item whether
the presentation orders agreed (the signal the router reads).
"""

import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import Q

from routing.judges import guards

ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI_COMPATIBLE = (
        "openai_compatible",
        "OpenAI-compatible server (vLLM, llama.cpp, Ollama, TGI)",
    )


class OutputMode(models.TextChoices):
    AUTO = "auto", "Best the provider supports"
    JSON_SCHEMA = "json_schema", "JSON schema (structured output)"
    JSON_OBJECT = "json_object", "JSON mode"
    TOOL = "tool", "Tool / function call"
    TEXT = "text", "Tagged text"


DEFAULT_KEY_ENV = {Provider.OPENAI: "OPENAI_API_KEY", Provider.ANTHROPIC: "ANTHROPIC_API_KEY"}


class Judge(models.Model):
    """A judge configuration: provider, model, prompts, sampling, output mode, price and limits."""

    name = models.SlugField(max_length=100, unique=True, help_text="e.g. gpt-4o-mini-v1")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    model = models.CharField(max_length=200)
    base_url = models.CharField(
        max_length=500,
        blank=True,
        help_text="API base URL; required for OpenAI-compatible servers (e.g. http://host:8000/v1).",
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of the environment variable holding the API key (never the key itself).",
    )
    templates = models.JSONField(
        default=dict,
        blank=True,
        help_text='Per task type {"system": ..., "user": ...}; missing ones use shipped defaults.',
    )
    sampling = models.JSONField(
        default=dict,
        blank=True,
        help_text="temperature, top_p, max_tokens, seed (provider parameters).",
    )
    output_mode = models.CharField(
        max_length=16, choices=OutputMode.choices, default=OutputMode.AUTO
    )
    logprobs = models.BooleanField(
        default=True, help_text="Ask for log-probabilities (confidence) where the API gives them."
    )
    price_input_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(0), validators=[MinValueValidator(0)]
    )
    price_output_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(0), validators=[MinValueValidator(0)]
    )
    max_concurrency = models.PositiveIntegerField(
        default=8, validators=[MinValueValidator(1), MaxValueValidator(1024)]
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Blank: no limit."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Blank: no limit."
    )
    timeout_seconds = models.FloatField(
        default=60.0, validators=[MinValueValidator(0.1), MaxValueValidator(3600)]
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=6,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Tries per call for transient failures (429, 5xx, timeouts, lost connections).",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def key_env(self) -> str:
        """The environment variable the API key is read from ("" for keyless local servers)."""
        return self.api_key_env or DEFAULT_KEY_ENV.get(self.provider, "")

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.provider == Provider.OPENAI_COMPATIBLE and not self.base_url:
            errors["base_url"] = "an OpenAI-compatible server needs its base URL"
        if self.base_url:
            try:
                URLValidator(schemes=["http", "https"])(self.base_url)
            except ValidationError:
                errors["base_url"] = "must be an http(s) URL"
            else:
                if problem := guards.base_url_problem(self.base_url):
                    errors["base_url"] = problem
        if self.api_key_env and not ENV_VAR_NAME.match(self.api_key_env):
            errors["api_key_env"] = "must be the NAME of an environment variable, not a key"
        elif problem := guards.key_env_problem(self.api_key_env):
            errors["api_key_env"] = problem
        if self.output_mode in (OutputMode.JSON_SCHEMA, OutputMode.JSON_OBJECT) and (
            self.provider == Provider.ANTHROPIC
        ):
            errors["output_mode"] = "Anthropic has tool use or text, not a JSON response format"
        if not isinstance(self.sampling, dict):
            errors["sampling"] = "must be an object"
        else:
            unknown = set(self.sampling) - {
                "temperature",
                "top_p",
                "max_tokens",
                "seed",
                "top_logprobs",
            }
            if unknown:
                errors["sampling"] = f"unknown parameters: {', '.join(sorted(unknown))}"
        if not isinstance(self.templates, dict):
            errors["templates"] = "must be an object of task type to {system, user}"
        else:
            for task_type, tpl in self.templates.items():
                if task_type not in ("pairwise", "listwise", "thumbs"):
                    errors["templates"] = f"unknown task type {task_type!r}"
                elif not isinstance(tpl, dict) or not set(tpl) <= {"system", "user"}:
                    errors["templates"] = f"{task_type}: must be {{system, user}} texts"
        if errors:
            raise ValidationError(errors)


class JudgeRun(models.Model):
    """One run of a judge over a set of items of a project."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        INCOMPLETE = "incomplete", "Finished with failed calls"
        CANCELLED = "cancelled", "Cancelled"
        CAPPED = "capped", "Stopped at the cost cap"

    TERMINAL = (Status.COMPLETED, Status.INCOMPLETE, Status.CANCELLED, Status.CAPPED)
    OPEN = (Status.PENDING, Status.RUNNING)

    class Scope(models.TextChoices):
        ROUTED = "routed", "Items routed to judges"
        ALL = "all", "Every item"
        SELECTION = "selection", "A selection of items"

    class OrderMode(models.TextChoices):
        BOTH = "both", "Every order (pairwise: AB and BA)"
        RANDOM = "random", "One random order"

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="judge_runs"
    )
    judge = models.ForeignKey(Judge, on_delete=models.PROTECT, related_name="runs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ROUTED)
    item_ids = models.JSONField(default=list, blank=True, help_text="Items of a selection run.")
    order_mode = models.CharField(max_length=16, choices=OrderMode.choices, default=OrderMode.BOTH)
    permutations = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(24)],
        help_text="Listwise: presentation orders per item (rotations of a shuffled order).",
    )
    seed = models.BigIntegerField(default=0, help_text="Seeds the random orders (reproducible).")
    use_cache = models.BooleanField(default=True)
    cost_cap = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Stop when the run has cost this much (USD); blank: no cap.",
    )
    # Snapshot of the judge configuration the run used (audit: which model, which prompt).
    judge_config = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="Calls planned (items x orders).")
    done = models.PositiveIntegerField(default=0, help_text="Calls answered and stored.")
    failed = models.PositiveIntegerField(default=0, help_text="Calls that failed in the last go.")
    cached = models.PositiveIntegerField(default=0, help_text="Answers taken from the cache.")
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    stop_reason = models.TextField(blank=True)
    errors = models.JSONField(default=list, blank=True, help_text="The last failures, newest last.")
    cancel_requested = models.BooleanField(default=False)
    automatic = models.BooleanField(
        default=False,
        help_text="Started by the router for the items it sent to the judge, not by a person.",
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker picked it up.")
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Last sign of life of the worker executing it; a running run whose heartbeat is "
        "older than TANDEM_JOB_STALE_SECONDS was left by a dead worker and may be resumed.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "status"], name="judgerun_project_status")]
        constraints = [
            # Automatic runs coalesce: at most one open (pending or running) per (project,
            # judge); items routed meanwhile join the pending one or wait for the next.
            models.UniqueConstraint(
                fields=["project", "judge"],
                condition=Q(automatic=True, status__in=["pending", "running"]),
                name="judgerun_one_open_automatic",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.judge_id} on project {self.project_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.TERMINAL


class JudgeItemResult(models.Model):
    """Per (run, item): did the presentation orders agree? The router's judge signal.

    ``label`` is the judge's label (item letters) when every order was parsed and they agree;
    otherwise it is null and ``needs_human`` says the item should go to people, with ``reason``.
    """

    class Reason(models.TextChoices):
        NONE = "", "Consistent"
        INCONSISTENT = "inconsistent", "Orders disagree"
        UNPARSED = "unparsed", "An answer could not be parsed"
        REFUSAL = "refusal", "The judge refused"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="item_results")
    item = models.ForeignKey(
        "annotation.Item", on_delete=models.CASCADE, related_name="judge_results"
    )
    orders = models.PositiveSmallIntegerField(default=0, help_text="Verdicts stored.")
    parsed = models.PositiveSmallIntegerField(default=0, help_text="Verdicts parsed.")
    consistent = models.BooleanField(null=True, help_text="Null with fewer than two parsed.")
    label = models.JSONField(null=True, blank=True)
    needs_human = models.BooleanField(default=False)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "item"], name="judgeitemresult_unique")
        ]
        indexes = [models.Index(fields=["item", "needs_human"], name="judgeitemresult_item")]

    def __str__(self) -> str:
        return f"run {self.run_id} item {self.item_id}: {self.reason or 'consistent'}"


class JudgeResponseCache(models.Model):
    """A provider's answer keyed by provider, base URL, model, rendered prompt and parameters."""

    key = models.CharField(max_length=64, unique=True)
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=200)
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="judgecache_created")]
        constraints = [
            models.CheckConstraint(condition=~Q(key=""), name="judgecache_key_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} {self.key[:12]}"
