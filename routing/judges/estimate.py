"""What a judge run would cost, before it starts: calls, tokens and dollars.

The calls are counted exactly (``judge_run_size``). Input tokens are estimated from the prompts
of a sample of the run's first items, rendered as the run would render them (4 characters a
token, the engine's own estimate); output tokens are bounded by the judge's ``max_tokens``. The
figure is a range: input only (a floor) to input plus every answer at ``max_tokens`` (a ceiling).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from annotation.models import Project
from routing.judges.models import Judge, JudgeRun
from routing.judges.runner import call_cost, judge_run_size, judge_run_units

SAMPLE_ITEMS = 50


@dataclass(frozen=True)
class RunEstimate:
    calls: int
    skipped_items: int
    tokens_in_per_call: int
    max_tokens_out_per_call: int
    cost_floor: Decimal
    cost_ceiling: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "skipped_items": self.skipped_items,
            "tokens_in_per_call": self.tokens_in_per_call,
            "max_tokens_out_per_call": self.max_tokens_out_per_call,
            "cost_floor": str(self.cost_floor.quantize(Decimal("0.0001"))),
            "cost_ceiling": str(self.cost_ceiling.quantize(Decimal("0.0001"))),
        }


def judge_run_estimate(
    *,
    project: Project,
    judge: Judge,
    scope: str = JudgeRun.Scope.ROUTED,
    item_ids: list[int] | None = None,
    order_mode: str = JudgeRun.OrderMode.BOTH,
    permutations: int = 2,
    **_: Any,
) -> RunEstimate:
    """The estimate of the run ``judge_run_create`` would start with these arguments."""
    run = JudgeRun(
        project=project,
        judge=judge,
        scope=scope,
        item_ids=sorted(set(item_ids or [])),
        order_mode=order_mode,
        permutations=permutations,
        seed=0,
    )
    calls, skipped = judge_run_size(run=run)
    sample = next(judge_run_units(run=run, stored_keys=set(), chunk_items=SAMPLE_ITEMS), [])
    max_out = int((judge.sampling or {}).get("max_tokens", 512))
    tokens_in = round(sum(u.est_tokens - max_out for u in sample) / len(sample)) if sample else 0
    return RunEstimate(
        calls=calls,
        skipped_items=len(skipped),
        tokens_in_per_call=tokens_in,
        max_tokens_out_per_call=max_out,
        cost_floor=call_cost(tokens_in, 0, judge) * calls,
        cost_ceiling=call_cost(tokens_in, max_out, judge) * calls,
    )
