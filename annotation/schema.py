"""Task types, a project's label schema, and validation of label payloads against it.

A label payload is plain JSON so that people, judges and imports share one shape:

- pairwise: ``{"choice": "A"|"B"|"tie"|"both_bad"|None, "strength": 1.., "aspects": {...},
  "rationale": "..."}``; ``choice`` is ``None`` only for a judge answer that could not be parsed;
- listwise: ``{"ranking": ["B", ["A", "C"]], ...}``: letters best first, a nested list is a tie;
- thumbs: ``{"thumb": "up"|"down", ...}``.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from tandem.inputs import UnsafeInput, check_text


class TaskType(models.TextChoices):
    PAIRWISE = "pairwise", "Pairwise"
    LISTWISE = "listwise", "Listwise ranking"
    THUMBS = "thumbs", "Thumbs up/down"


RATIONALE_MODES = ("off", "optional", "required")
PAIRWISE_CHOICES = ("A", "B", "tie", "both_bad")
THUMBS = ("up", "down")


def letters(n: int) -> list[str]:
    """Letters naming ``n`` candidates in the item's own order."""
    return [chr(ord("A") + i) for i in range(n)]


@dataclass(frozen=True)
class Aspect:
    name: str
    choices: tuple[str, ...]


@dataclass(frozen=True)
class LabelSchema:
    """How a project's labels look. Stored as JSON on the project; validated here."""

    task_type: str
    strength_scale: tuple[str, ...] = ()
    allow_tie: bool = True
    allow_both_bad: bool = False
    aspects: tuple[Aspect, ...] = ()
    rationale: str = "optional"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def defaults(cls, task_type: str) -> "LabelSchema":
        if task_type == TaskType.PAIRWISE:
            return cls(task_type=task_type, strength_scale=("better", "much better"))
        return cls(task_type=task_type, allow_tie=task_type != TaskType.LISTWISE)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, task_type: str) -> "LabelSchema":
        """Parse and validate; raises ValidationError naming each bad field."""
        if task_type not in TaskType.values:
            raise ValidationError({"task_type": f"unknown task type {task_type!r}"})
        base = cls.defaults(task_type)
        if data is not None and not isinstance(data, dict):
            raise ValidationError({"label_schema": ["must be an object"]})
        data = dict(data or {})
        errors: dict[str, str] = {}

        known = {"strength_scale", "allow_tie", "allow_both_bad", "aspects", "rationale"}
        extra = {k: v for k, v in data.items() if k not in known}

        scale = data.get("strength_scale", list(base.strength_scale))
        if not isinstance(scale, list) or not all(isinstance(s, str) and s for s in scale):
            errors["strength_scale"] = "must be a list of non-empty labels, weakest first"
            scale = []
        elif task_type != TaskType.PAIRWISE and scale:
            errors["strength_scale"] = "only pairwise projects have a strength scale"

        flags = {}
        for name in ("allow_tie", "allow_both_bad"):
            value = data.get(name, getattr(base, name))
            if not isinstance(value, bool):
                errors[name] = "must be true or false"
            flags[name] = bool(value)
        if flags["allow_both_bad"] and task_type != TaskType.PAIRWISE:
            errors["allow_both_bad"] = "only pairwise projects have 'both bad'"

        rationale = data.get("rationale", base.rationale)
        if rationale not in RATIONALE_MODES:
            errors["rationale"] = f"must be one of {', '.join(RATIONALE_MODES)}"

        aspects: list[Aspect] = []
        raw_aspects = data.get("aspects", [])
        if not isinstance(raw_aspects, list):
            errors["aspects"] = "must be a list of {name, choices}"
            raw_aspects = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_aspects):
            if isinstance(raw, str):
                raw = {"name": raw}
            name = raw.get("name") if isinstance(raw, dict) else None
            if not isinstance(name, str) or not name.strip():
                errors[f"aspects[{index}]"] = "needs a non-empty name"
                continue
            if name in seen:
                errors[f"aspects[{index}]"] = f"duplicate aspect {name!r}"
                continue
            seen.add(name)
            choices = raw.get("choices") or cls._default_aspect_choices(task_type, flags)
            if not isinstance(choices, list | tuple) or not all(
                isinstance(c, str) and c for c in choices
            ):
                errors[f"aspects[{index}]"] = "choices must be a list of non-empty strings"
                continue
            if len(set(choices)) < 2:
                errors[f"aspects[{index}]"] = "needs at least two distinct choices"
                continue
            aspects.append(Aspect(name=name.strip(), choices=tuple(choices)))

        if errors:
            raise ValidationError({"label_schema": [f"{k}: {v}" for k, v in errors.items()]})
        return cls(
            task_type=task_type,
            strength_scale=tuple(scale),
            allow_tie=flags["allow_tie"],
            allow_both_bad=flags["allow_both_bad"],
            aspects=tuple(aspects),
            rationale=rationale,
            extra=extra,
        )

    @staticmethod
    def _default_aspect_choices(task_type: str, flags: dict[str, bool]) -> list[str]:
        if task_type == TaskType.THUMBS:
            return list(THUMBS)
        choices = ["A", "B"]
        if flags.get("allow_tie"):
            choices.append("tie")
        return choices

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("task_type")
        data.pop("extra")
        data["strength_scale"] = list(self.strength_scale)
        data["aspects"] = [{"name": a.name, "choices": list(a.choices)} for a in self.aspects]
        return {**self.extra, **data}

    @property
    def pairwise_choices(self) -> list[str]:
        choices = ["A", "B"]
        if self.allow_tie:
            choices.append("tie")
        if self.allow_both_bad:
            choices.append("both_bad")
        return choices

    def validate_label(
        self, payload: Any, *, n_candidates: int, strict: bool = True
    ) -> dict[str, Any]:
        """Check a label payload; return it normalised. Raises ValidationError with reasons.

        ``strict`` applies the project's rules for new human labels (required rationale, ties
        only where allowed, a choice always made). Imported and judge labels are recorded as
        they were given, so ``strict=False`` only checks their shape.
        """
        if not isinstance(payload, dict):
            raise ValidationError("a label must be a JSON object")
        out: dict[str, Any] = {}
        if self.task_type == TaskType.PAIRWISE:
            out.update(self._validate_pairwise(payload, strict=strict))
        elif self.task_type == TaskType.LISTWISE:
            out["ranking"] = self.validate_ranking(
                payload.get("ranking"), n_candidates=n_candidates, strict=strict
            )
        else:
            thumb = payload.get("thumb")
            if thumb not in THUMBS and not (thumb is None and not strict):
                raise ValidationError("thumb must be 'up' or 'down'")
            out["thumb"] = thumb

        aspects = payload.get("aspects") or {}
        if not isinstance(aspects, dict):
            raise ValidationError("aspects must be an object of aspect name to choice")
        if aspects:
            by_name = {a.name: a for a in self.aspects}
            clean: dict[str, str] = {}
            for name, choice in aspects.items():
                aspect = by_name.get(name)
                if aspect is None:
                    if strict:
                        raise ValidationError(f"unknown aspect {name!r}")
                    clean[name] = choice
                    continue
                if choice not in aspect.choices:
                    raise ValidationError(
                        f"aspect {name!r}: {choice!r} is not one of {', '.join(aspect.choices)}"
                    )
                clean[name] = choice
            out["aspects"] = clean
        if strict:
            missing = [a.name for a in self.aspects if a.name not in aspects]
            if missing:
                raise ValidationError(f"aspects missing an answer: {', '.join(missing)}")

        rationale = payload.get("rationale") or ""
        if not isinstance(rationale, str):
            raise ValidationError("rationale must be text")
        try:
            check_text(rationale, "rationale", max_chars=settings.TANDEM_MAX_RATIONALE_CHARS)
        except UnsafeInput as exc:
            raise ValidationError(str(exc)) from None
        if strict and self.rationale == "required" and not rationale.strip():
            raise ValidationError("a rationale is required")
        if strict and self.rationale == "off" and rationale:
            raise ValidationError("this project takes no rationale")
        if rationale:
            out["rationale"] = rationale
        return out

    def _validate_pairwise(self, payload: dict[str, Any], *, strict: bool) -> dict[str, Any]:
        choice = payload.get("choice")
        allowed = self.pairwise_choices if strict else list(PAIRWISE_CHOICES)
        if choice is None and not strict:
            return {"choice": None}
        if choice not in allowed:
            raise ValidationError(f"choice must be one of {', '.join(allowed)}; got {choice!r}")
        out: dict[str, Any] = {"choice": choice}
        strength = payload.get("strength")
        if strength is not None:
            if choice in ("tie", "both_bad"):
                raise ValidationError(f"a {choice} takes no strength")
            if isinstance(strength, bool) or not isinstance(strength, int):
                raise ValidationError("strength must be a whole number")
            top = len(self.strength_scale)
            if strict and not 1 <= strength <= max(top, 1):
                raise ValidationError(f"strength must be between 1 and {max(top, 1)}")
            out["strength"] = strength
        return out

    def validate_ranking(self, ranking: Any, *, n_candidates: int, strict: bool) -> list[Any]:
        if ranking is None and not strict:
            return None  # type: ignore[return-value]
        if not isinstance(ranking, list) or not ranking:
            raise ValidationError("ranking must be a list of letters, best first")
        expected = set(letters(n_candidates))
        seen: list[str] = []
        for entry in ranking:
            group = entry if isinstance(entry, list) else [entry]
            if len(group) > 1 and strict and not self.allow_tie:
                raise ValidationError("this project does not allow ties in a ranking")
            for letter in group:
                if not isinstance(letter, str) or letter not in expected:
                    raise ValidationError(f"ranking names {letter!r}, not a candidate here")
                if letter in seen:
                    raise ValidationError(f"ranking names {letter!r} twice")
                seen.append(letter)
        if set(seen) != expected:
            missing = sorted(expected - set(seen))
            raise ValidationError(f"ranking leaves out {', '.join(missing)}")
        return ranking


def validate_order(order: str, n_candidates: int) -> str:
    """A presentation order is a permutation of the item's letters, e.g. ``"BA"``."""
    if sorted(order) != letters(n_candidates):
        raise ValidationError(
            f"order {order!r} is not an arrangement of {''.join(letters(n_candidates))}"
        )
    return order
