"""A judge's test call: one item, one order, one request, the raw answer and its cost.

For the admin who configures a judge: it checks the key, the endpoint, the prompt templates and
the parsing in one go, without a run. The item is one of a project's (the first with the
project's task type, shown in its own order) or a built-in pairwise example.
"""

import asyncio
from dataclasses import dataclass
from decimal import Decimal

from annotation.models import Item
from annotation.schema import LabelSchema, TaskType
from routing.judges.models import Judge
from routing.judges.parsing import verdict_parse
from routing.judges.prompts import output_schema, prompt_render
from routing.judges.providers import (
    JudgeCallError,
    JudgeRequest,
    client_for_judge,
    resolve_output_mode,
)
from routing.judges.runner import call_cost
from tandem.errors import InvalidInput

EXAMPLE_PROMPT = "What is the boiling point of water at sea level, in degrees Celsius?"
EXAMPLE_CANDIDATES = ("100 °C.", "About 50 °C, depending on the kettle.")


@dataclass(frozen=True)
class TrialResult:
    ok: bool
    raw: str
    error: str
    payload: dict | None
    parse_status: str
    tokens_in: int
    tokens_out: int
    cost: Decimal
    system: str
    user: str


def judge_test_call(*, judge: Judge, item: Item | None = None, client_factory=None) -> TrialResult:
    """Send one item to ``judge`` and report what came back. Never writes anything."""
    if item is not None:
        project = item.project
        schema, guidelines = project.schema, project.guidelines
        prompt, messages = item.prompt, item.messages
        texts = [c.text for c in item.candidates.order_by("position")]
    else:
        schema, guidelines = LabelSchema.defaults(TaskType.PAIRWISE), ""
        prompt, messages, texts = EXAMPLE_PROMPT, None, list(EXAMPLE_CANDIDATES)
    if len(texts) < 1:
        raise InvalidInput("the item has no candidates")
    order = "".join(chr(ord("A") + i) for i in range(len(texts)))
    mode = resolve_output_mode(judge)
    system, user = prompt_render(
        templates=judge.templates,
        schema=schema,
        guidelines=guidelines,
        prompt=prompt,
        messages=messages,
        shown_texts=texts,
        output_mode=mode,
    )
    request = JudgeRequest(
        system=system,
        user=user,
        output_mode=mode,
        json_schema=output_schema(schema, len(texts)),
        sampling=dict(judge.sampling or {}),
        logprobs=judge.logprobs,
    )

    async def call():
        client = (client_factory or client_for_judge)(judge)
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    try:
        response = asyncio.run(call())
    except JudgeCallError as exc:
        return TrialResult(False, "", str(exc), None, "error", 0, 0, Decimal(0), system, user)
    verdict = verdict_parse(response=response, schema=schema, order=order, output_mode=mode)
    return TrialResult(
        ok=True,
        raw=response.text or (response.refusal or ""),
        error=verdict.error,
        payload=verdict.payload,
        parse_status=verdict.status,
        tokens_in=response.tokens_in,
        tokens_out=response.tokens_out,
        cost=call_cost(response.tokens_in, response.tokens_out, judge),
        system=system,
        user=user,
    )
