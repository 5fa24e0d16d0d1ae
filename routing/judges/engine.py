"""The one LLM-call engine: every call Tandem makes to a judge's model goes through here.

A judge run (``runner.py``) and the tagging of prompts (``routing.router.tagging``) — and any later
caller — ask for their calls the same way, so they share one set of behaviours: the judge's
concurrency and requests/tokens-per-minute limits, retries with backoff that honour
``Retry-After``, a cost meter with a cap that stops dispatching, and a stop flag (cancel). The
response cache (``cache.py``) and the store sit beside it; what a caller does with an answer is
its own business.

- :func:`judge_limits` turns a judge (and an optional cost cap) into the dispatcher's limits.
- :func:`dispatcher_for` starts the right dispatcher (a thread, or forked shards for high
  concurrency) for a long, streamed run, as ``runner.py`` drives it.
- :func:`calls_complete` runs a known list of calls to the end and hands back each result, for
  callers that have their whole batch in hand (tagging, a test call).
- :func:`call_cost`, :func:`estimate_tokens` and :func:`prompt_sha256`: the helpers every caller
  records the same way.
"""

import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial

from django.conf import settings

from routing.judges.models import Judge
from routing.judges.network import (
    Call,
    Fatal,
    Finished,
    Limits,
    ProcessDispatcher,
    Result,
    ThreadDispatcher,
    shards_for,
)
from routing.judges.providers import JudgeClient, JudgeRequest, client_for_judge, judge_api_key

MILLION = Decimal(1_000_000)
ClientFactory = Callable[[Judge], JudgeClient]
Dispatcher = ThreadDispatcher | ProcessDispatcher


def call_cost(tokens_in: int, tokens_out: int, judge: Judge) -> Decimal:
    """What one answer cost, at the judge's prices (per million tokens), exactly."""
    return (
        Decimal(tokens_in) * judge.price_input_per_mtok
        + Decimal(tokens_out) * judge.price_output_per_mtok
    ) / MILLION


def estimate_tokens(request: JudgeRequest, *, max_tokens: int) -> int:
    """Tokens a call may use, before it is made: the prompt at ~4 characters a token plus the
    answer's ceiling. The token bucket takes this up front and gives back the difference."""
    return (len(request.system) + len(request.user)) // 4 + max_tokens


def prompt_sha256(request: JudgeRequest) -> str:
    """A fingerprint of the rendered prompt, stored with each answer (which prompt gave it)."""
    return hashlib.sha256(f"{request.system}\x00{request.user}".encode()).hexdigest()


def judge_limits(judge: Judge, *, cost_cap: Decimal | None = None) -> Limits:
    return Limits(
        max_concurrency=judge.max_concurrency,
        requests_per_minute=float(judge.requests_per_minute or 0),
        tokens_per_minute=float(judge.tokens_per_minute or 0),
        max_attempts=judge.max_attempts,
        backoff_base=float(getattr(settings, "TANDEM_JUDGE_BACKOFF_BASE", 0.5)),
        backoff_max=float(getattr(settings, "TANDEM_JUDGE_BACKOFF_MAX", 30.0)),
        price_input_per_mtok=float(judge.price_input_per_mtok),
        price_output_per_mtok=float(judge.price_output_per_mtok),
        cost_cap=None if cost_cap is None else float(cost_cap),
    )


def dispatcher_for(
    judge: Judge,
    *,
    client_factory: ClientFactory = client_for_judge,
    cost_so_far: Decimal = Decimal(0),
    cost_cap: Decimal | None = None,
    shards: int | None = None,
) -> Dispatcher:
    """A dispatcher for the judge's calls (not started). Raises ``JudgeConfigError`` (e.g. the
    key's variable is unset) before anything starts."""
    limits = judge_limits(judge, cost_cap=cost_cap)
    if shards is None:
        shards = shards_for(judge.max_concurrency) if client_factory is client_for_judge else 1
    shards = max(1, min(shards, judge.max_concurrency))
    if shards == 1:
        return ThreadDispatcher(
            client=client_factory(judge),
            limits=limits,
            cost_so_far=float(cost_so_far),
            name=judge.name,
        )
    judge_api_key(judge)  # a configuration error is reported here, not by each shard
    return ProcessDispatcher(
        make_client=partial(client_factory, judge),
        limits=limits,
        cost_so_far=float(cost_so_far),
        shards=shards,
        name=judge.name,
    )


def calls_complete(
    judge: Judge,
    calls: Sequence[Call],
    *,
    on_result: Callable[[Result], None],
    client_factory: ClientFactory = client_for_judge,
    cost_so_far: Decimal = Decimal(0),
    cost_cap: Decimal | None = None,
    stop: threading.Event | None = None,
) -> Finished:
    """Make ``calls`` within the judge's limits; ``on_result`` gets each answer or failure in
    this thread as it arrives. Returns how dispatching ended (capped, stopped). Calls left
    undispatched by a cap or a stop get no result. A failure of the engine itself is raised."""
    dispatcher = dispatcher_for(
        judge,
        client_factory=client_factory,
        cost_so_far=cost_so_far,
        cost_cap=cost_cap,
        shards=1,
    )
    dispatcher.start()
    ended: list[Finished] = []
    try:
        dispatcher.feed(list(calls))
        dispatcher.close()
        while len(ended) < dispatcher.shards:
            if stop is not None and stop.is_set():
                dispatcher.stop.set()
            try:
                message = dispatcher.results.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(message, Result):
                on_result(message)
            elif isinstance(message, Fatal):
                if message.exc is not None:
                    raise message.exc
                raise RuntimeError(f"judge {judge.name}: the call engine failed: {message.message}")
            else:
                ended.append(message)
    finally:
        dispatcher.stop.set()
        dispatcher.join()
    return Finished(capped=any(f.capped for f in ended), stopped=any(f.stopped for f in ended))
