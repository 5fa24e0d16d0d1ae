"""Server-validated forms of the HTML pages. Fields carry their own errors; views stay thin."""

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import User

from .item_browser import ItemFilters, valid_metadata_key
from .item_filters import item_filters
from .models import Item, Membership, Project
from .schema import RATIONALE_MODES, LabelSchema, TaskType

# Project settings the form edits besides the schema (a subset of services.PROJECT_SETTINGS).
PROJECT_FIELDS = (
    "name",
    "description",
    "guidelines",
    "overlap",
    "lease_seconds",
    "max_open_leases",
    "gold_ratio",
)

YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]


class ItemFilterForm(forms.Form):
    """The item browser's filters (GET). Empty fields do not filter."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    route = forms.ChoiceField(required=False, choices=[("", "any"), *Item.Route.choices])
    human = forms.ChoiceField(required=False, choices=YES_NO, label="Human labels")
    judge = forms.ChoiceField(required=False, choices=YES_NO, label="Judge labels")
    disagreement = forms.BooleanField(required=False, label="Judge order disagreement")
    gold = forms.ChoiceField(required=False, choices=YES_NO)
    annotator = forms.CharField(required=False, max_length=150)
    meta_key = forms.CharField(required=False, max_length=64, label="Metadata key")
    meta_value = forms.CharField(required=False, max_length=200, label="= value")
    created_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The filters other apps registered (exports: provenance), before the hidden cursor.
        after = self.fields.pop("after")
        self.extra_names = []
        for registered in item_filters():
            self.fields[registered.name] = forms.ChoiceField(
                required=False, choices=[("", "any"), *registered.choices], label=registered.label
            )
            self.extra_names.append(registered.name)
        self.fields["after"] = after

    def clean_meta_key(self) -> str:
        key = self.cleaned_data["meta_key"].strip()
        if key and not valid_metadata_key(key):
            raise forms.ValidationError("Letters, digits, '_', '.' and '-' only.")
        return key

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "Must not be before the start.")
        return data

    def filters(self) -> ItemFilters:
        data = self.cleaned_data
        extra = {name: data.get(name) or "" for name in self.extra_names}
        own = {k: v for k, v in data.items() if k != "after" and k not in extra}
        return ItemFilters(**own, extra=extra)


class ProjectForm(forms.Form):
    """A project's settings and label schema, as people type them. ``settings()`` gives what
    ``services.project_create`` / ``project_update`` take; the schema is checked here, field by
    field, with the rules of ``LabelSchema``."""

    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=100, help_text="In URLs and the CLI; cannot change later.")
    task_type = forms.ChoiceField(choices=TaskType.choices)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    guidelines = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown, shown to annotators.",
    )
    overlap = forms.IntegerField(
        min_value=1, max_value=50, initial=1, help_text="Human labels wanted per item."
    )
    lease_seconds = forms.IntegerField(
        min_value=30, max_value=7 * 24 * 3600, initial=900, label="Lease (seconds)"
    )
    max_open_leases = forms.IntegerField(
        min_value=1, max_value=100, initial=1, label="Open leases per annotator"
    )
    gold_ratio = forms.FloatField(
        min_value=0.0, max_value=1.0, initial=0.0, help_text="Share of tasks drawn from gold items."
    )
    strength_scale = forms.CharField(
        required=False,
        max_length=500,
        help_text="Pairwise: labels of the strength scale, weakest first, comma-separated.",
    )
    allow_tie = forms.BooleanField(required=False, initial=True, label="Ties allowed")
    allow_both_bad = forms.BooleanField(required=False, label="'Both bad' allowed (pairwise)")
    rationale = forms.ChoiceField(
        choices=[(m, m) for m in RATIONALE_MODES], initial="optional", label="Rationale"
    )
    aspects = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line: a name, or 'name: choice, choice, ...'.",
    )

    SCHEMA_FIELDS = ("strength_scale", "allow_tie", "allow_both_bad", "rationale", "aspects")

    def __init__(self, *args, project: Project | None = None, **kwargs) -> None:
        self.project = project
        if project is not None:  # bound forms too: disabled fields show their initial value
            kwargs["initial"] = self.initial_for(project)
        super().__init__(*args, **kwargs)
        if project is not None:  # fixed once the project exists
            for name in ("slug", "task_type"):
                self.fields[name].disabled = True
                self.fields[name].required = False

    @staticmethod
    def initial_for(project: Project) -> dict[str, Any]:
        schema = project.schema
        return {
            **{f: getattr(project, f) for f in PROJECT_FIELDS},
            "slug": project.slug,
            "task_type": project.task_type,
            "strength_scale": ", ".join(schema.strength_scale),
            "allow_tie": schema.allow_tie,
            "allow_both_bad": schema.allow_both_bad,
            "rationale": schema.rationale,
            "aspects": "\n".join(f"{a.name}: {', '.join(a.choices)}" for a in schema.aspects),
        }

    def clean(self):
        data = super().clean()
        task_type = self.project.task_type if self.project else data.get("task_type")
        if not task_type or any(f in self.errors for f in self.SCHEMA_FIELDS):
            return data
        raw = {
            "strength_scale": [s.strip() for s in data["strength_scale"].split(",") if s.strip()],
            "allow_tie": data["allow_tie"],
            "allow_both_bad": data["allow_both_bad"],
            "rationale": data["rationale"],
            "aspects": self._aspects(data["aspects"]),
        }
        if task_type != TaskType.PAIRWISE:
            raw["strength_scale"] = []
        if self.project is not None:  # keep keys this form does not edit
            raw = {**self.project.label_schema, **raw}
        try:
            data["label_schema"] = LabelSchema.from_dict(raw, task_type=task_type).to_dict()
        except ValidationError as exc:
            for message in exc.message_dict.get("label_schema", exc.messages):
                key, _, text = message.partition(": ")
                field = key.split("[")[0]
                self.add_error(field if field in self.fields else None, text or message)
        return data

    @staticmethod
    def _aspects(text: str) -> list[dict[str, Any]]:
        aspects = []
        for line in text.splitlines():
            if not line.strip():
                continue
            name, _, choices = line.partition(":")
            aspect: dict[str, Any] = {"name": name.strip()}
            if choices.strip():
                aspect["choices"] = [c.strip() for c in choices.split(",") if c.strip()]
            aspects.append(aspect)
        return aspects

    def settings(self) -> dict[str, Any]:
        """The project settings to write (schema included)."""
        data = self.cleaned_data
        return {**{f: data[f] for f in PROJECT_FIELDS}, "label_schema": data["label_schema"]}


class MemberAddForm(forms.Form):
    """Add an existing user to the project, or create one (then the password is shown once)."""

    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)
    create = forms.BooleanField(required=False, label="Create this user (a new account)")
    password = forms.CharField(
        required=False,
        max_length=128,
        widget=forms.PasswordInput(render_value=False),
        help_text="For a new user; empty: one is made up and shown once.",
    )

    def clean(self):
        data = super().clean()
        username = data.get("username")
        if not username:
            return data
        exists = User.objects.filter(username=username).exists()
        if data.get("create") and exists:
            self.add_error("username", "A user with this name exists; untick 'create'.")
        elif not data.get("create") and not exists:
            self.add_error("username", "No such user. Tick 'create' to make the account.")
        return data
