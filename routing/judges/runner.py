"""The judge run loop: many calls in flight, within the judge's limits, each verdict stored once.

The caller's thread (a Celery worker, the CLI, a test) owns every database access: it plans the
calls a chunk of items at a time, answers what it can from the response cache, hands the rest to
a dispatcher (``network.py``: an asyncio loop with the provider SDK's async client on a thread,
or several in forked processes for high concurrency), writes the answers in batches, keeps the
run's counters live and watches for cancellation. Planning streams: the first calls leave while
later items are still being rendered, and memory holds only the calls in flight or queued (a few
times ``max_concurrency``), not the whole run.

Every verdict is written with the idempotency key ``judge:{run}:{item}:{order}``, unique in the
database, so a run killed at any point and resumed (``judge_run_execute`` again) skips what is
stored and never writes a verdict twice.
"""

import logging
import math
import queue
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, DecimalField, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from annotation.models import Annotation, Item
from annotation.schema import LabelSchema, TaskType, letters
from routing.judges import parsing
from routing.judges.cache import CacheEntry, cache_get_many, cache_key
from routing.judges.engine import call_cost, dispatcher_for, estimate_tokens, prompt_sha256
from routing.judges.lifecycle import judge_run_transition
from routing.judges.models import Judge, JudgeItemResult, JudgeRun
from routing.judges.network import (
    Call,
    Fatal,
    Finished,
    ProcessDispatcher,
    ThreadDispatcher,
)
from routing.judges.prompts import output_schema, prompt_render
from routing.judges.providers import (
    JudgeClient,
    JudgeConfigError,
    JudgeRequest,
    JudgeResponse,
    client_for_judge,
    resolve_output_mode,
)
from routing.judges.store import RunRef, Verdict, verdicts_store

logger = logging.getLogger(__name__)

MAX_STORED_ERRORS = 50
FLUSH_EVERY_SECONDS = 0.5
FLUSH_EVERY_RESULTS = 512
CANCEL_CHECK_SECONDS = 0.5
HEARTBEAT_SECONDS = 5.0
# How long an executor waits for the lock of a worker that just died: PostgreSQL frees a
# session's advisory locks once it sees the client gone, which takes up to the query in flight.
# A live holder is recognised sooner, by its heartbeat moving on.
LOCK_WAIT_SECONDS = 20.0

ClientFactory = Callable[[Judge], JudgeClient]
ProgressCallback = Callable[[JudgeRun], None]


@dataclass
class Unit:
    """One call: an item shown in one order."""

    seq: int
    item_id: int
    order: str
    key: str
    request: JudgeRequest
    cache_key: str
    est_tokens: int
    prompt_sha256: str


@dataclass
class Outcome:
    unit: Unit
    response: JudgeResponse | None
    error: str = ""
    status: int | None = None
    attempts: int = 0
    latency_ms: int = 0
    cached: bool = False


def presentation_orders(
    n: int, *, order_mode: str, permutations: int, rng: random.Random
) -> list[str]:
    """The orders an item is shown in, in the item's letters (``"BA"`` shows B first).

    Pairwise ``both``: AB and BA. Listwise: ``permutations`` rotations of a shuffled order (each
    candidate in each position once when ``permutations == n``), then further distinct shuffles.
    ``random``: one shuffled order. Deterministic per seed, so a resumed run plans the same calls.
    """
    base = letters(n)
    if n == 1:
        return ["A"]
    shuffled = base[:]
    rng.shuffle(shuffled)
    if order_mode == JudgeRun.OrderMode.RANDOM:
        return ["".join(shuffled)]
    wanted = 2 if n == 2 else permutations
    if n == 2:
        return ["AB", "BA"]
    orders = ["".join(shuffled[i:] + shuffled[:i]) for i in range(n)][:wanted]
    limit = 1
    for k in range(2, n + 1):
        limit *= k
    while len(orders) < min(wanted, limit):
        candidate = base[:]
        rng.shuffle(candidate)
        if "".join(candidate) not in orders:
            orders.append("".join(candidate))
    return orders


def orders_count(n: int, *, order_mode: str, permutations: int) -> int:
    """``len(presentation_orders(n, ...))`` without drawing them."""
    if n == 1 or order_mode == JudgeRun.OrderMode.RANDOM:
        return 1
    if n == 2:
        return 2
    return min(permutations, math.factorial(n))


# --- planning -------------------------------------------------------------------------------


PLAN_CHUNK_ITEMS = 200


def judge_run_items(*, run: JudgeRun):
    items = Item.objects.filter(project_id=run.project_id)
    if run.scope == JudgeRun.Scope.ROUTED:
        items = items.filter(route__in=[Item.Route.JUDGE, Item.Route.BOTH])
    elif run.scope == JudgeRun.Scope.SELECTION:
        items = items.filter(pk__in=run.item_ids or [])
    return items


def _expected_candidates(task_type: str) -> int | None:
    return {TaskType.PAIRWISE: 2, TaskType.THUMBS: 1}.get(task_type)


def _judgeable(n: int, expected: int | None) -> bool:
    return n > 0 and (n == expected if expected is not None else n >= 2)


def judge_run_size(*, run: JudgeRun) -> tuple[int, list[dict[str, Any]]]:
    """How many calls the whole run makes, and the items it cannot judge (with why).

    One light query (item ids and candidate counts), so progress shows a true total from the
    start while the prompts are rendered chunk by chunk as the calls go out.
    """
    expected = _expected_candidates(run.project.task_type)
    total = 0
    skipped: list[dict[str, Any]] = []
    rows = (
        judge_run_items(run=run)
        .annotate(n=Count("candidates"))
        .order_by("id")
        .values_list("id", "n")
    )
    for item_id, n in rows.iterator(chunk_size=5000):
        if not _judgeable(n, expected):
            skipped.append({"item": item_id, "error": f"{n} candidates; cannot judge"})
            continue
        total += orders_count(n, order_mode=run.order_mode, permutations=run.permutations)
    return total, skipped


def judge_run_units(
    *, run: JudgeRun, stored_keys: set[str], chunk_items: int | None = None
) -> Iterator[list[Unit]]:
    """The calls still to make, a chunk of items at a time (keyset over item ids)."""
    chunk_items = chunk_items or PLAN_CHUNK_ITEMS
    judge, project = run.judge, run.project
    schema = project.schema
    mode = resolve_output_mode(judge)
    sampling = dict(judge.sampling or {})
    max_tokens = int(sampling.get("max_tokens", 512))
    expected = _expected_candidates(schema.task_type)
    items = judge_run_items(run=run).order_by("id").prefetch_related("candidates")
    seq = 0
    last_id = 0
    while True:
        chunk = list(items.filter(id__gt=last_id)[:chunk_items])
        if not chunk:
            return
        last_id = chunk[-1].pk
        units: list[Unit] = []
        for item in chunk:
            candidates = sorted(item.candidates.all(), key=lambda c: c.position)
            n = len(candidates)
            if not _judgeable(n, expected):
                continue
            rng = random.Random(f"{run.seed}:{item.pk}")
            orders = presentation_orders(
                n, order_mode=run.order_mode, permutations=run.permutations, rng=rng
            )
            json_schema = output_schema(schema, n)
            for order in orders:
                key = f"judge:{run.pk}:{item.pk}:{order}"
                if key in stored_keys:
                    continue
                shown = [candidates[ord(letter) - ord("A")].text for letter in order]
                system, user = prompt_render(
                    templates=judge.templates,
                    schema=schema,
                    guidelines=project.guidelines,
                    prompt=item.prompt,
                    messages=item.messages,
                    shown_texts=shown,
                    output_mode=mode,
                )
                request = JudgeRequest(
                    system=system,
                    user=user,
                    output_mode=mode,
                    json_schema=json_schema,
                    sampling=sampling,
                    logprobs=judge.logprobs,
                )
                units.append(
                    Unit(
                        seq=seq,
                        item_id=item.pk,
                        order=order,
                        key=key,
                        request=request,
                        cache_key=cache_key(
                            provider=judge.provider,
                            base_url=judge.base_url,
                            model=judge.model,
                            request=request,
                        ),
                        est_tokens=estimate_tokens(request, max_tokens=max_tokens),
                        prompt_sha256=prompt_sha256(request),
                    )
                )
                seq += 1
        if units:
            yield units


# --- writing --------------------------------------------------------------------------------


@dataclass
class Tally:
    done: int = 0
    cached: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)


# Per-call costs are exact decimals (tokens x price per million: at most 12 places).
_EXACT_COST = DecimalField(max_digits=30, decimal_places=12)


def judge_run_tally(*, run: JudgeRun) -> Tally:
    """Counters recomputed from the stored verdicts (the truth after a crash), summed by the
    database: a run's end costs one aggregate, not a pass over every verdict's metadata."""
    rows = Annotation.objects.filter(judge_run_id=run.pk, source=Annotation.Source.JUDGE)
    paid = Q(metadata__cached=False)
    sums = rows.aggregate(
        done=Count("id"),
        cached=Count("id", filter=Q(metadata__cached=True)),
        tokens_in=Sum(Cast(KT("metadata__tokens_in"), BigIntegerField()), filter=paid),
        tokens_out=Sum(Cast(KT("metadata__tokens_out"), BigIntegerField()), filter=paid),
        cost=Sum(Cast(KT("metadata__cost"), _EXACT_COST), filter=paid),
    )
    return Tally(
        done=sums["done"],
        cached=sums["cached"],
        tokens_in=sums["tokens_in"] or 0,
        tokens_out=sums["tokens_out"] or 0,
        cost=Decimal(sums["cost"] or 0),
    )


def _verdict_for(run: JudgeRun, schema: LabelSchema, outcome: Outcome) -> Verdict:
    judge = run.judge
    response = outcome.response
    assert response is not None
    unit = outcome.unit
    verdict = parsing.verdict_parse(
        response=response, schema=schema, order=unit.order, output_mode=unit.request.output_mode
    )
    cost = (
        Decimal(0) if outcome.cached else call_cost(response.tokens_in, response.tokens_out, judge)
    )
    metadata = {
        "parse_status": verdict.status,
        "tokens_in": response.tokens_in,
        "tokens_out": response.tokens_out,
        "cost": str(cost),
        "cached": outcome.cached,
        "model": response.model,
        "provider": judge.provider,
        "output_mode": unit.request.output_mode,
        "finish_reason": response.finish_reason,
        "attempts": outcome.attempts,
        "latency_ms": outcome.latency_ms,
        # The run's judge_config holds the templates; this proves which rendering was sent.
        "prompt_sha256": unit.prompt_sha256,
    }
    if verdict.error:
        metadata["parse_error"] = verdict.error
    return Verdict(
        item_id=unit.item_id,
        order=unit.order,
        key=unit.key,
        payload=verdict.payload,
        raw_output=response.text or response.refusal or "",
        confidence=verdict.confidence,
        metadata=metadata,
    )


class _Writer:
    """Writes outcomes in batches and keeps the run row's counters current."""

    def __init__(self, run: JudgeRun, tally: Tally) -> None:
        self.run = run
        self.ref = RunRef(project_id=run.project_id, run_id=run.pk, judge=run.judge.name)
        self.schema = run.project.schema
        self.tally = tally
        self.failed = 0
        self.errors: list[dict[str, Any]] = list(run.errors or [])

    def write(self, outcomes: list[Outcome]) -> None:
        verdicts: list[Verdict] = []
        cache_entries: list[CacheEntry] = []
        judge = self.run.judge
        now = timezone.now()
        for outcome in outcomes:
            if outcome.response is None:
                self.failed += 1
                self.errors.append(
                    {
                        "item": outcome.unit.item_id,
                        "order": outcome.unit.order,
                        "status": outcome.status,
                        "error": outcome.error,
                        "at": now.isoformat(),
                    }
                )
                continue
            verdicts.append(_verdict_for(self.run, self.schema, outcome))
            if not outcome.cached:
                cache_entries.append(
                    (outcome.unit.cache_key, judge.provider, judge.model, outcome.response)
                )
        with transaction.atomic():
            created = verdicts_store(self.ref, verdicts, cache_entries, now=now)
            touched = {v.item_id for v in verdicts if v.key in created}
            if touched:
                judge_item_results_update(run=self.run, item_ids=touched)
            for verdict in verdicts:
                if verdict.key not in created:
                    continue
                meta = verdict.metadata
                self.tally.done += 1
                if meta["cached"]:
                    self.tally.cached += 1
                else:
                    self.tally.tokens_in += meta["tokens_in"]
                    self.tally.tokens_out += meta["tokens_out"]
                    self.tally.cost += Decimal(meta["cost"])
            self.save_counters()

    def counters(self) -> dict[str, Any]:
        """The run's progress columns as this writer knows them."""
        self.errors = self.errors[-MAX_STORED_ERRORS:]
        return {
            "done": self.tally.done,
            "cached": self.tally.cached,
            "failed": self.failed,
            "tokens_in": self.tally.tokens_in,
            "tokens_out": self.tally.tokens_out,
            "cost": self.tally.cost,
            "errors": self.errors,
        }

    def save_counters(self, **extra: Any) -> None:
        fields = {**self.counters(), **extra}
        JudgeRun.objects.filter(pk=self.run.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.run, name, value)


# --- per-item signals ----------------------------------------------------------------------


def _agreed_label(task_type: str, payloads: list[dict[str, Any]]) -> tuple[bool, dict | None]:
    key = parsing.VERDICT_KEY[task_type]
    verdicts = [p.get(key) for p in payloads]
    if any(v != verdicts[0] for v in verdicts):
        return False, None
    label: dict[str, Any] = {key: verdicts[0]}
    strengths = [p.get("strength") for p in payloads]
    if task_type == TaskType.PAIRWISE and all(s is not None for s in strengths):
        label["strength"] = min(strengths)  # the orders agree at least this strongly
    return True, label


def judge_item_results_update(*, run: JudgeRun, item_ids: Iterable[int] | None = None) -> None:
    """Per item of the run (or of ``item_ids``): orders stored and parsed, whether they agree,
    the agreed label. The writer calls it for the items of each batch, in the batch's
    transaction, so an item's result always matches its stored verdicts."""
    by_item: dict[int, list[tuple[str, dict[str, Any], str]]] = {}
    rows = Annotation.objects.filter(judge_run_id=run.pk, source=Annotation.Source.JUDGE)
    if item_ids is not None:
        rows = rows.filter(item_id__in=list(item_ids))
    for item_id, order, payload, status in rows.values_list(
        "item_id", "order", "payload", KT("metadata__parse_status")
    ).iterator(chunk_size=2000):
        by_item.setdefault(item_id, []).append((order, payload, status or ""))
    task_type = run.project.task_type
    results = []
    for item_id, verdicts in by_item.items():
        parsed = [payload for _, payload, status in verdicts if status == parsing.OK]
        statuses = {status for _, _, status in verdicts}
        consistent, label = (None, None)
        reason = ""
        if parsing.REFUSAL in statuses:
            reason = JudgeItemResult.Reason.REFUSAL
        elif len(parsed) < len(verdicts):
            reason = JudgeItemResult.Reason.UNPARSED
        if parsed:
            agree, agreed = _agreed_label(task_type, parsed)
            consistent = agree if len(parsed) >= 2 else None
            if not reason:
                label = agreed
                if not agree:
                    reason = JudgeItemResult.Reason.INCONSISTENT
        results.append(
            JudgeItemResult(
                run_id=run.pk,
                item_id=item_id,
                orders=len(verdicts),
                parsed=len(parsed),
                consistent=consistent,
                label=label,
                needs_human=bool(reason),
                reason=reason,
            )
        )
    for start in range(0, len(results), 1000):
        JudgeItemResult.objects.bulk_create(
            results[start : start + 1000],
            update_conflicts=True,
            unique_fields=["run", "item"],
            update_fields=["orders", "parsed", "consistent", "label", "needs_human", "reason"],
        )


# --- the service ----------------------------------------------------------------------------


def _run_start(run_id: int) -> JudgeRun | None:
    with transaction.atomic():
        run = JudgeRun.objects.select_for_update().select_related("judge").get(pk=run_id)
        if run.is_finished:
            return None
        if run.cancel_requested:
            judge_run_transition(
                run, JudgeRun.Status.CANCELLED, reason="cancelled before it started"
            )
            return None
        judge_run_transition(
            run,
            JudgeRun.Status.RUNNING,
            heartbeat_at=timezone.now(),
            started_at=run.started_at or timezone.now(),
            attempts=run.attempts + 1,
            failed=0,
        )
    return JudgeRun.objects.select_related("judge", "project").get(pk=run_id)


def _run_finish(run: JudgeRun, writer: _Writer, *, status: str, reason: str) -> JudgeRun:
    judged = (
        Annotation.objects.filter(judge_run_id=run.pk, source=Annotation.Source.JUDGE)
        .values("item_id")
        .distinct()
        .count()
    )
    if JudgeItemResult.objects.filter(run_id=run.pk).count() != judged:
        judge_item_results_update(run=run)  # verdicts stored by a version without the above
    writer.tally = judge_run_tally(run=run)  # authoritative after any crash or race
    return judge_run_transition(run, status, reason=reason, **writer.counters())


def judge_run_fail(*, run_id: int, reason: str) -> JudgeRun | None:
    """A run whose worker task failed (an unexpected error, not a failed call): mark it
    incomplete with the reason, unless it ended or another worker executes it. Resume retries
    it. The judge task's ``on_failure`` calls this, so a run never stays "running" forever."""
    with _run_lock(run_id) as locked:
        # Elsewhere than PostgreSQL the "lock" is the heartbeat, still fresh from the failing
        # executor itself (on_failure runs in its worker): that is no other worker.
        if not locked and connection.vendor == "postgresql":
            return None
        with transaction.atomic():
            run = JudgeRun.objects.select_for_update().select_related("judge").get(pk=run_id)
            if run.is_finished:
                return run
            return judge_run_transition(
                run, JudgeRun.Status.INCOMPLETE, reason=f"worker error: {reason}"
            )


LOCK_NAMESPACE = 0x7A4D  # advisory lock namespace of judge runs


def _stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.TANDEM_JOB_STALE_SECONDS)


@contextmanager
def _run_lock(
    run_id: int, *, wait: float = 0.0, holder_alive: Callable[[], bool] | None = None
) -> Iterator[bool]:
    """One executor per run.

    PostgreSQL: a session advisory lock, released when this worker ends the run or dies (its
    connection closes). While another session holds it, try again for up to ``wait`` seconds
    (a worker killed a moment ago still holds it until the server notices), unless
    ``holder_alive()`` says the holder is alive (its heartbeat moved on); then give up: False,
    the run is left to its live worker.

    Other databases (the embedded SQLite shape): the run is claimed by its heartbeat, atomically:
    a running run whose heartbeat is fresh belongs to a live worker (False); one whose heartbeat
    is older than ``TANDEM_JOB_STALE_SECONDS`` was left by a dead worker and is taken over.
    """
    if connection.vendor != "postgresql":
        yield judge_run_claim(run_id=run_id)
        return
    key = (LOCK_NAMESPACE, run_id & 0x7FFFFFFF)
    deadline = time.monotonic() + wait
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
            locked = cursor.fetchone()[0]
            if locked or time.monotonic() >= deadline:
                break
            if holder_alive is not None and holder_alive():
                break
            time.sleep(0.2)
    try:
        yield locked
    finally:
        if locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def judge_run_claim(*, run_id: int) -> bool:
    """Claim a run by its heartbeat, atomically (one UPDATE): True unless it is running with a
    fresh heartbeat (a live worker has it). The lock of databases without advisory locks."""
    claimed = (
        JudgeRun.objects.filter(pk=run_id)
        .filter(
            ~Q(status=JudgeRun.Status.RUNNING)
            | Q(heartbeat_at__isnull=True)
            | Q(heartbeat_at__lt=_stale_before())
        )
        .update(heartbeat_at=timezone.now())
    )
    return bool(claimed)


def judge_run_has_heartbeat(*, run_id: int) -> bool:
    """Running, with a heartbeat fresher than TANDEM_JOB_STALE_SECONDS."""
    return JudgeRun.objects.filter(
        pk=run_id, status=JudgeRun.Status.RUNNING, heartbeat_at__gte=_stale_before()
    ).exists()


def judge_run_is_executing(*, run_id: int) -> bool:
    """Whether a live worker holds the run: on PostgreSQL its session holds the run's lock;
    elsewhere the run is running with a fresh heartbeat."""
    if connection.vendor != "postgresql":
        return judge_run_has_heartbeat(run_id=run_id)
    key = (LOCK_NAMESPACE, run_id & 0x7FFFFFFF)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        locked = cursor.fetchone()[0]
        if locked:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
    return not locked


def _heartbeat_moves(run_id: int) -> Callable[[], bool]:
    """A test of whether the run's heartbeat has moved since now: a live executor beats every
    HEARTBEAT_SECONDS; a killed one never again, whatever its lock still says."""
    first = JudgeRun.objects.filter(pk=run_id).values_list("heartbeat_at", flat=True).first()
    checked = [time.monotonic()]

    def moved() -> bool:
        if time.monotonic() - checked[0] < 1.0:  # ask the database once a second
            return False
        checked[0] = time.monotonic()
        now = JudgeRun.objects.filter(pk=run_id).values_list("heartbeat_at", flat=True).first()
        return now is not None and now != first

    return moved


def judge_run_execute(
    *,
    run_id: int,
    client_factory: ClientFactory = client_for_judge,
    on_progress: ProgressCallback | None = None,
    shards: int | None = None,
) -> JudgeRun:
    """Run (or resume) a judge run to its end. Idempotent: a finished run is left as it is, and
    a run another worker is executing right now is left to it.

    ``shards``: how many network loops carry the calls (``network.py``); by default one per 64
    calls in flight, at most one per core, and more than one only for the SDK clients (a shard
    in another process builds its own client with ``client_factory``).
    """
    with _run_lock(run_id, wait=LOCK_WAIT_SECONDS, holder_alive=_heartbeat_moves(run_id)) as locked:
        if not locked:
            logger.info("judge run %s is being executed by another worker", run_id)
            return JudgeRun.objects.get(pk=run_id)
        return _execute(run_id, client_factory, on_progress, shards)


def _dispatcher(
    run: JudgeRun, client_factory: ClientFactory, shards: int | None, cost_so_far: Decimal
) -> ThreadDispatcher | ProcessDispatcher:
    """Raises JudgeConfigError (e.g. the key's variable is unset) before anything starts."""
    return dispatcher_for(
        run.judge,
        client_factory=client_factory,
        cost_so_far=cost_so_far,
        cost_cap=run.cost_cap,
        shards=shards,
    )


def _execute(
    run_id: int,
    client_factory: ClientFactory,
    on_progress: ProgressCallback | None,
    shards: int | None,
) -> JudgeRun:
    run = _run_start(run_id)
    if run is None:
        return JudgeRun.objects.get(pk=run_id)
    stored = set(
        Annotation.objects.filter(judge_run_id=run.pk).values_list("idempotency_key", flat=True)
    )
    total, skipped = judge_run_size(run=run)
    writer = _Writer(run, judge_run_tally(run=run))
    writer.errors.extend(skipped)
    writer.save_counters(total=total)
    if on_progress:
        on_progress(run)

    cap = run.cost_cap
    if total > writer.tally.done and cap is not None and writer.tally.cost >= cap:
        return _run_finish(
            run,
            writer,
            status=JudgeRun.Status.CAPPED,
            reason=f"cost cap reached: ${writer.tally.cost:.6f} >= ${cap}",
        )
    feed = _Feed(run, writer, judge_run_units(run=run, stored_keys=stored))
    first = feed.next_fresh()
    if not first:  # everything stored or answered from the cache
        return _run_finish(run, writer, status=JudgeRun.Status.COMPLETED, reason="")

    try:
        dispatcher = _dispatcher(run, client_factory, shards, writer.tally.cost)
    except JudgeConfigError as exc:
        return _run_finish(run, writer, status=JudgeRun.Status.INCOMPLETE, reason=exc.message)
    dispatcher.start()
    try:
        finished = _drive(run, writer, dispatcher, feed, first, on_progress)
    finally:
        dispatcher.stop.set()
        dispatcher.close()
        dispatcher.join()

    if isinstance(finished, Fatal):
        _run_finish(
            run,
            writer,
            status=JudgeRun.Status.INCOMPLETE,
            reason=f"worker error: {finished.message}"[:1000],
        )
        if finished.exc is not None:
            raise finished.exc
        raise RuntimeError(f"judge run {run.pk}: a network shard failed: {finished.message}")
    tally = judge_run_tally(run=run)
    if tally.done >= total:
        status, reason = JudgeRun.Status.COMPLETED, ""
    elif finished.stopped:
        status, reason = JudgeRun.Status.CANCELLED, "cancelled"
    elif finished.capped:
        status = JudgeRun.Status.CAPPED
        reason = f"cost cap reached: ${tally.cost:.6f} >= ${cap}"
    else:
        status = JudgeRun.Status.INCOMPLETE
        reason = f"{total - tally.done} of {total} calls failed; resume to retry them"
    run = _run_finish(run, writer, status=status, reason=reason)
    if on_progress:
        on_progress(run)
    return run


class _Feed:
    """The planned calls, a chunk at a time, with cache hits written on the way."""

    def __init__(self, run: JudgeRun, writer: _Writer, chunks: Iterator[list[Unit]]) -> None:
        self.run = run
        self.writer = writer
        self.chunks = chunks
        self.exhausted = False

    def next_fresh(self) -> list[Unit]:
        """The next calls to make ([] once planning is done)."""
        while not self.exhausted:
            units = next(self.chunks, None)
            if units is None:
                self.exhausted = True
                break
            if self.run.use_cache:
                hits = cache_get_many(u.cache_key for u in units)
                if hits:
                    self.writer.write(
                        [
                            Outcome(u, hits[u.cache_key], cached=True)
                            for u in units
                            if u.cache_key in hits
                        ]
                    )
                    units = [u for u in units if u.cache_key not in hits]
            if units:
                return units
        return []


def _drive(
    run: JudgeRun,
    writer: _Writer,
    dispatcher: ThreadDispatcher | ProcessDispatcher,
    feed: _Feed,
    first: list[Unit],
    on_progress: ProgressCallback | None,
) -> Finished | Fatal:
    """Feed calls while fewer than a few rounds are queued; write answers as they come back."""
    queued_max = max(4 * run.judge.max_concurrency, 2 * PLAN_CHUNK_ITEMS)
    pending: dict[int, Unit] = {}
    results = dispatcher.results
    ended: list[Finished] = []
    batch: list[Outcome] = []
    last_flush = last_check = last_beat = time.monotonic()

    def send(units: list[Unit]) -> None:
        for unit in units:
            pending[unit.seq] = unit
        dispatcher.feed([Call(u.seq, u.request, u.est_tokens) for u in units])

    send(first)
    feeding = True
    while True:
        if feeding and (dispatcher.stop.is_set() or ended):
            feeding = False  # cancelled, capped or a shard ended: plan nothing more
            dispatcher.close()
        while feeding and len(pending) < queued_max:
            units = feed.next_fresh()
            if not units:
                feeding = False
                dispatcher.close()
                break
            send(units)
        try:
            message = results.get(timeout=0.05 if feeding else 0.1)
        except queue.Empty:
            message = None
        while message is not None:
            if isinstance(message, Fatal):
                if batch:
                    writer.write(batch)
                return message
            if isinstance(message, Finished):
                ended.append(message)
            else:
                unit = pending.pop(message.seq)
                batch.append(
                    Outcome(
                        unit,
                        message.response,
                        error=message.error,
                        status=message.status,
                        attempts=message.attempts,
                        latency_ms=message.latency_ms,
                    )
                )
            try:
                message = results.get_nowait()
            except queue.Empty:
                message = None
        done = len(ended) == dispatcher.shards
        now = time.monotonic()
        due = now - last_flush >= FLUSH_EVERY_SECONDS or len(batch) >= FLUSH_EVERY_RESULTS
        if batch and (due or done):
            writer.write(batch)
            batch = []
            last_flush = now
            if on_progress:
                on_progress(run)
        if done:
            return Finished(
                capped=any(f.capped for f in ended), stopped=any(f.stopped for f in ended)
            )
        if now - last_beat >= HEARTBEAT_SECONDS:
            last_beat = now
            JudgeRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
        if not dispatcher.stop.is_set() and now - last_check >= CANCEL_CHECK_SECONDS:
            last_check = now
            if JudgeRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
                dispatcher.stop.set()


__all__ = [
    "Outcome",
    "Unit",
    "judge_item_results_update",
    "judge_run_execute",
    "judge_run_fail",
    "judge_run_size",
    "judge_run_tally",
    "judge_run_units",
    "orders_count",
    "presentation_orders",
]
