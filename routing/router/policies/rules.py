"""Ordered conditions on metadata and features; the first that matches decides.

A rule is ``{"if": "<field> <op> <value>", "then": "human"|"judge"|"both"}`` or the same as text,
``"metadata.domain == 'medical' -> human"``. ``field`` is ``metadata.<key>`` or a feature name
(``router.features``); ``op`` is one of ``== != > >= < <= in contains``; ``value`` is a number,
quoted text, true/false/null or a list. Items that match no rule get ``default`` (judge).
Rules that send an item to people spend the budget in rule order; within a rule, the more
uncertain judge verdict first, then a stable hash of the item (never the table's order). Once it
is spent, such items fall back to the judge and their reason says so.

A feature that is missing for an item (NaN: no reward model registered or the item not scored
yet for ``rm_margin``, no tags, ...) matches no condition, ``!=`` included:
``rm_margin < 0.5 -> human`` sends people only the items the reward model scored and found close.
"""

import ast
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from routing.router.policies.base import (
    BOTH,
    HUMAN,
    JUDGE,
    TARGETS,
    Policy,
    RoutePlan,
    ranked_order,
)
from tandem.errors import InvalidInput

_INVALID = object()
OPS = ("==", "!=", ">=", "<=", ">", "<", "in", "contains")
_CONDITION = re.compile(
    r"^\s*(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>==|!=|>=|<=|>|<|\bin\b|\bcontains\b)\s*(?P<value>.+?)\s*$"
)


@dataclass(frozen=True)
class Rule:
    field: str
    op: str
    value: Any
    target: str
    text: str

    def matches(self, column: pd.Series) -> pd.Series:
        value, op = self.value, self.op
        if op == "==":
            return column == value
        if op == "!=":
            return column != value
        if op == "in":
            return column.isin(value)
        if op == "contains":
            return column.map(lambda v: isinstance(v, str | list) and value in v).astype(bool)
        numeric = pd.to_numeric(column, errors="coerce")
        return {
            ">": numeric > value,
            ">=": numeric >= value,
            "<": numeric < value,
            "<=": numeric <= value,
        }[op].fillna(False)


def _literal(text: str, where: str) -> Any:
    """A number, quoted text, true/false/null, or a list of those (JSON or Python spelling)."""
    candidate = text.strip()
    named = {"true": True, "false": False, "null": None, "none": None}
    if candidate.lower() in named:
        return named[candidate.lower()]
    try:
        value = ast.literal_eval(candidate)
    except (ValueError, SyntaxError):
        value = _INVALID
    if isinstance(value, tuple):
        value = list(value)
    if value is _INVALID or not isinstance(value, str | int | float | bool | list):
        raise InvalidInput(
            f"{where}: value {candidate!r} is not a number, quoted text, true/false/null or a list"
        )
    return value


def parse_rule(raw: Any, index: int, known_features: set[str] | None) -> Rule:
    where = f"rule {index + 1}"
    if isinstance(raw, str):
        if "->" not in raw:
            raise InvalidInput(
                f"{where}: write '<condition> -> <target>', e.g. "
                "\"metadata.domain == 'medical' -> human\""
            )
        condition, target = (part.strip() for part in raw.rsplit("->", 1))
        text = raw.strip()
    elif isinstance(raw, dict):
        unknown = set(raw) - {"if", "then"}
        if unknown or "if" not in raw or "then" not in raw:
            raise InvalidInput(f"{where}: a rule is {{'if': '<condition>', 'then': '<target>'}}")
        condition, target = raw["if"], raw["then"]
        if not isinstance(condition, str) or not isinstance(target, str):
            raise InvalidInput(f"{where}: 'if' and 'then' must be text")
        text = f"{condition} -> {target}"
    else:
        raise InvalidInput(f"{where}: a rule is text or an object with 'if' and 'then'")
    if target not in TARGETS:
        raise InvalidInput(f"{where}: target {target!r} is not one of {', '.join(TARGETS)}")
    match = _CONDITION.match(condition)
    if not match:
        raise InvalidInput(
            f"{where}: cannot read condition {condition!r}; expected '<field> <op> <value>' "
            f"with op one of {' '.join(OPS)}"
        )
    field, op = match["field"], match["op"]
    value = _literal(match["value"], where)
    if (
        not field.startswith("metadata.")
        and known_features is not None
        and field not in known_features
    ):
        raise InvalidInput(
            f"{where}: unknown field {field!r}; use metadata.<key> or a feature "
            f"({', '.join(sorted(known_features))})"
        )
    if op in (">", ">=", "<", "<=") and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise InvalidInput(f"{where}: {op} needs a number; got {value!r}")
    if op == "in" and not isinstance(value, list):
        raise InvalidInput(f"{where}: 'in' needs a list, e.g. ['medical', 'legal']")
    return Rule(field=field, op=op, value=value, target=target, text=text)


class RulesPolicy(Policy):
    name = "rules"
    score_meaning = "rule"

    def __init__(
        self, *, rules: Any = None, default: str = JUDGE, known_features: Any = None, **extra: Any
    ) -> None:
        super().__init__(**extra)
        if not isinstance(rules, list) or not rules:
            raise InvalidInput("rules: give a non-empty list of rules")
        if default not in TARGETS:
            raise InvalidInput(f"rules: default {default!r} is not one of {', '.join(TARGETS)}")
        if known_features is None:
            from routing.router.features import (
                MODEL_FEATURES,
                REWARD_MODEL_FEATURES,
                ItemView,
                item_features,
            )

            known_features = (
                set(item_features(ItemView(key="x", prompt="", candidates=["", ""]), ["j", "k"]))
                | {"embed_cosine"}
                | set(REWARD_MODEL_FEATURES)
                | set(MODEL_FEATURES)
            )
        self.rules = [parse_rule(raw, i, set(known_features)) for i, raw in enumerate(rules)]
        self.default = default
        self.params = {"rules": [r.text for r in self.rules], "default": default}

    def scores(self, table: pd.DataFrame) -> pd.Series:
        """The score is the 1-based index of the first rule that matches (0: none)."""
        return self._scores_with(table, pd.DataFrame(index=table.index))

    def _scores_with(self, table: pd.DataFrame, metadata: pd.DataFrame) -> pd.Series:
        first = pd.Series(0, index=table.index, dtype=int)
        for number, rule in enumerate(self.rules, start=1):
            source = metadata if rule.field.startswith("metadata.") else table
            if rule.field not in source:
                continue
            column = source[rule.field]
            hit = rule.matches(column)
            if source is table:  # a missing feature (NaN: e.g. not scored yet) never matches
                hit = hit & column.notna()
            hit = hit.reindex(table.index, fill_value=False)
            first = first.mask((first == 0) & hit.astype(bool), number)
        return first

    def route(self, table: pd.DataFrame, budget: int, *, metadata: pd.DataFrame | None = None):
        first = self._scores_with(table, metadata if metadata is not None else pd.DataFrame())
        spent, rows = 0, {}
        # Budget goes to human-bound matches in rule order, then by the tie-breakers of ranking.
        rank_key = pd.Series(
            np.where(first.to_numpy() > 0, -first.to_numpy(dtype=float), -np.inf), index=first.index
        )
        ranked = first.index[ranked_order(rank_key, self.secondary(table), seed=self.seed)]
        for key in ranked:
            number = int(first[key])
            rule = self.rules[number - 1] if number else None
            target = rule.target if rule else self.default
            why = f"rule {number} ({rule.text})" if rule else "no rule matched; default"
            if target in (HUMAN, BOTH):
                if spent < budget:
                    spent += 1
                    rows[key] = (target, float(number), f"{why}: {target}")
                else:
                    rows[key] = (JUDGE, float(number), f"{why}: {target}, but the budget is spent")
            else:
                rows[key] = (target, float(number), f"{why}: {target}")
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=["target", "score", "reason"])
        return RoutePlan(frame.reindex(table.index))
