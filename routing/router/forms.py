"""The routing page's form: a policy with its own parameters, the budget, the judges.

Each policy's parameters are read from its constructor's keyword-only arguments (their types
and defaults), so a new policy gets its fields without touching this module. Validation is the
router's own (``RoutingPolicy.clean``); its errors land on the fields they name.
"""

import inspect
from typing import Any

from django import forms

from routing.judges.models import Judge
from routing.router.models import RoutingPolicy
from routing.router.policies import POLICIES

HIDDEN_PARAMS = {"known_features"}  # filled by the router, not by people


def _param_field(parameter: inspect.Parameter) -> forms.Field:
    default = parameter.default
    kind = parameter.annotation
    annotation = kind.__name__ if isinstance(kind, type) else str(kind)
    label = parameter.name.replace("_", " ")
    if isinstance(default, bool) or annotation == "bool":
        return forms.BooleanField(required=False, initial=default, label=label)
    if isinstance(default, int) and annotation == "int":
        return forms.IntegerField(required=False, initial=default, label=label)
    if isinstance(default, float) or "float" in annotation:
        return forms.FloatField(required=False, initial=default, label=label)
    if isinstance(default, str) and "str" in annotation:
        return forms.CharField(required=False, initial=default, label=label)
    return forms.JSONField(
        required=False,
        initial=default,
        label=f"{label} (JSON)",
        widget=forms.Textarea(attrs={"rows": 4}),
    )


def policy_parameters() -> dict[str, list[inspect.Parameter]]:
    out = {}
    for name, cls in POLICIES.items():
        signature = inspect.signature(cls.__init__)
        out[name] = [
            p
            for p in signature.parameters.values()
            if p.kind == p.KEYWORD_ONLY and p.name not in HIDDEN_PARAMS
        ]
    return out


class RoutingPolicyForm(forms.Form):
    name = forms.ChoiceField(choices=RoutingPolicy.Name.choices, label="Policy")
    budget_fraction = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Human budget (share of items)",
        help_text="e.g. 0.3; or give a count instead.",
    )
    budget_count = forms.IntegerField(
        required=False, min_value=0, label="Human budget (items)", help_text="Empty: no limit."
    )
    calibration_share = forms.FloatField(
        min_value=0, max_value=1, initial=0.05, help_text="Items that always get both labels."
    )
    judges = forms.CharField(
        required=False,
        max_length=500,
        help_text="Judge names, comma-separated; the first gives the label.",
    )
    tagging_judge = forms.ChoiceField(required=False, label="Tagging judge")

    def __init__(self, *args, policy: RoutingPolicy | None = None, **kwargs) -> None:
        bound = (args and args[0] is not None) or kwargs.get("data") is not None
        if policy is not None and not bound:
            kwargs["initial"] = self.initial_for(policy)
        super().__init__(*args, **kwargs)
        names = list(Judge.objects.order_by("name").values_list("name", flat=True))
        self.judge_names = names
        self.fields["tagging_judge"].choices = [("", "none"), *[(n, n) for n in names]]
        self.param_fields: dict[str, list[str]] = {}
        for policy_name, parameters in policy_parameters().items():
            self.param_fields[policy_name] = []
            for parameter in parameters:
                key = f"param__{policy_name}__{parameter.name}"
                self.fields[key] = _param_field(parameter)
                self.param_fields[policy_name].append(key)

    @staticmethod
    def initial_for(policy: RoutingPolicy) -> dict[str, Any]:
        initial: dict[str, Any] = {
            "name": policy.name,
            "budget_fraction": policy.budget_fraction,
            "budget_count": policy.budget_count,
            "calibration_share": policy.calibration_share,
            "judges": ", ".join(policy.judges or []),
            "tagging_judge": policy.tagging_judge,
        }
        for key, value in (policy.params or {}).items():
            initial[f"param__{policy.name}__{key}"] = value
        return initial

    def parameter_groups(self) -> list[tuple[str, str, list]]:
        """(policy name, label, bound fields) for the template."""
        labels = dict(RoutingPolicy.Name.choices)
        return [
            (name, labels.get(name, name), [self[key] for key in keys])
            for name, keys in self.param_fields.items()
        ]

    def clean_judges(self) -> list[str]:
        names = [n.strip() for n in self.cleaned_data["judges"].split(",") if n.strip()]
        unknown = [n for n in names if n not in self.judge_names]
        if unknown:
            raise forms.ValidationError(f"No judge named {', '.join(unknown)}.")
        return names

    def policy_values(self) -> dict[str, Any]:
        """What ``routing_policy_set`` takes."""
        data = self.cleaned_data
        name = data["name"]
        params = {}
        for key in self.param_fields.get(name, []):
            value = data.get(key)
            if value is None or value == "":
                continue
            params[key.rsplit("__", 1)[1]] = value
        return {
            "name": name,
            "params": params,
            "judges": data["judges"],
            "budget_fraction": data["budget_fraction"],
            "budget_count": data["budget_count"],
            "calibration_share": data["calibration_share"],
            "tagging_judge": data["tagging_judge"] or "",
        }

    def add_policy_errors(self, errors: dict[str, list[str]]) -> None:
        """Errors of ``RoutingPolicy.clean`` on the fields they name (params: the policy's)."""
        name = self.cleaned_data.get("name")
        for field, messages in errors.items():
            target = field if field in self.fields and field != "name" else None
            if field == "params":
                keys = self.param_fields.get(name or "", [])
                target = keys[0] if len(keys) == 1 else None
            for message in messages:
                self.add_error(target, message)
