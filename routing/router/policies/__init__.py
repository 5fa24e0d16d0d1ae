"""Routing policies, one module each, behind one interface (``base.Policy``)."""

from typing import Any

from routing.router.policies.all_human import AllHumanPolicy
from routing.router.policies.all_judge import AllJudgePolicy
from routing.router.policies.base import BOTH, HUMAN, JUDGE, TARGETS, Policy, RoutePlan
from routing.router.policies.judge_uncertainty import JudgeUncertaintyPolicy
from routing.router.policies.learned import LearnedPolicy
from routing.router.policies.random import RandomPolicy
from routing.router.policies.rules import RulesPolicy
from tandem.errors import InvalidInput

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        AllHumanPolicy,
        AllJudgePolicy,
        RandomPolicy,
        RulesPolicy,
        JudgeUncertaintyPolicy,
        LearnedPolicy,
    )
}


def policy_build(*, name: str, params: dict[str, Any] | None = None) -> Policy:
    """A policy by name, its params validated; raises InvalidInput with the reason."""
    cls = POLICIES.get(name)
    if cls is None:
        raise InvalidInput(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("policy params must be an object")
    try:
        return cls(**(params or {}))
    except TypeError as exc:
        raise InvalidInput(f"{name}: {exc}") from None


__all__ = [
    "BOTH",
    "HUMAN",
    "JUDGE",
    "POLICIES",
    "TARGETS",
    "LearnedPolicy",
    "Policy",
    "RoutePlan",
    "policy_build",
]
