"""Forms of the judge pages: start a run, add or edit a judge."""

from django import forms

from routing.judges.models import Judge, JudgeRun
from routing.judges.services import JUDGE_FIELDS


class RunStartForm(forms.Form):
    judge = forms.ModelChoiceField(
        queryset=Judge.objects.filter(active=True).order_by("name"), to_field_name="name"
    )
    scope = forms.ChoiceField(
        choices=JudgeRun.Scope.choices, initial=JudgeRun.Scope.ROUTED, label="Items"
    )
    item_ids = forms.CharField(
        required=False,
        max_length=20_000,
        label="Item ids (a selection)",
        help_text="For 'A selection of items': ids separated by commas or spaces.",
    )
    order_mode = forms.ChoiceField(
        choices=JudgeRun.OrderMode.choices, initial=JudgeRun.OrderMode.BOTH, label="Orders"
    )
    permutations = forms.IntegerField(
        min_value=1, max_value=24, initial=2, help_text="Listwise: orders per item."
    )
    cost_cap = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=14,
        decimal_places=6,
        label="Cost cap (USD)",
        help_text="The run stops cleanly before spending more; empty: no cap.",
    )
    use_cache = forms.BooleanField(required=False, initial=True, label="Reuse cached answers")

    def clean_item_ids(self) -> list[int]:
        raw = self.cleaned_data["item_ids"].replace(",", " ").split()
        if not all(part.isdigit() for part in raw):
            raise forms.ValidationError("Item ids are whole numbers.")
        return sorted({int(part) for part in raw})

    def clean(self):
        data = super().clean()
        selection = data.get("scope") == JudgeRun.Scope.SELECTION
        if selection and not data.get("item_ids") and "item_ids" not in self.errors:
            self.add_error("item_ids", "Give the ids of the items to judge.")
        if not selection and data.get("item_ids"):
            self.add_error("item_ids", "Ids are for 'A selection of items' only.")
        return data

    def run_arguments(self) -> dict:
        data = dict(self.cleaned_data)
        if data["scope"] != JudgeRun.Scope.SELECTION:
            data.pop("item_ids", None)
        return data


class JudgeForm(forms.ModelForm):
    """A judge's configuration (admins). Saved through ``services.judge_create/update``."""

    class Meta:
        model = Judge
        fields = list(JUDGE_FIELDS)
        widgets = {
            "templates": forms.Textarea(attrs={"rows": 4}),
            "sampling": forms.Textarea(attrs={"rows": 2}),
        }


class TrialForm(forms.Form):
    item = forms.IntegerField(
        required=False,
        min_value=1,
        label="Item id",
        help_text="Any project's item; empty: a built-in pairwise example.",
    )
