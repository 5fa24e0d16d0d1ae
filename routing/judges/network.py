"""Keeping a judge run's calls in flight: asyncio loops with the provider SDK's async client.

The calls of a run go to one or more *shards*. A shard is one asyncio loop with its own SDK
client; it dispatches calls under a semaphore (its share of ``max_concurrency``) and token
buckets (its share of the requests and tokens per minute), retries transient failures, stops
dispatching at the cost cap or when told to stop, and reports each call's result.

- :class:`ThreadDispatcher`: one shard on a thread of the calling process. The default.
- :class:`ProcessDispatcher`: several shards, each in a process forked from the caller. Above
  about 64 calls in flight one Python process cannot keep up on its own: the SDK spends about a
  millisecond of CPU per call (request building, its HTTP stack), and under one GIL that work
  queues behind itself and behind the database writes, so calls come back later than the server
  answered them. Forked shards carry that work on the other cores; the calling process keeps
  planning and writing. Forking (not spawning) means a shard starts in milliseconds with the SDK
  already imported; a shard never touches the database or Django, only the client.

Either way the caller reads :class:`Result`, :class:`Finished` and :class:`Fatal` messages from
``dispatcher.results`` and expects one ``Finished`` (or a ``Fatal``) per shard. Shards share the
stop flag and the cost meter, so a cancellation or the cost cap stops all of them.
"""

import asyncio
import contextlib
import multiprocessing
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from routing.judges.providers import JudgeCallError, JudgeClient, JudgeRequest, JudgeResponse
from routing.judges.providers import complete_with_retries as _complete_with_retries

#: Calls in flight one shard is given before a run is spread over processes.
CALLS_PER_SHARD = 64
PARENT_CHECK_SECONDS = 0.5


@dataclass(frozen=True)
class Call:
    """One call as the network side sees it: no item, no database ids beyond ``seq``."""

    seq: int
    request: JudgeRequest
    est_tokens: int


@dataclass
class Result:
    seq: int
    response: JudgeResponse | None
    error: str = ""
    status: int | None = None
    attempts: int = 0
    latency_ms: int = 0


@dataclass
class Finished:
    capped: bool
    stopped: bool


@dataclass
class Fatal:
    """A shard died of an unexpected error; ``exc`` is set when it ran in this process."""

    message: str
    exc: BaseException | None = None


@dataclass(frozen=True)
class Limits:
    max_concurrency: int
    requests_per_minute: float
    tokens_per_minute: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    price_input_per_mtok: float
    price_output_per_mtok: float
    cost_cap: float | None

    def share(self, index: int, shards: int) -> "Limits":
        """Shard ``index`` of ``shards``: concurrency split exactly (the shares add up to the
        judge's limit), rates split evenly, so together the shards honour every limit."""
        base, extra = divmod(self.max_concurrency, shards)
        return replace(
            self,
            max_concurrency=max(1, base + (1 if index < extra else 0)),
            requests_per_minute=self.requests_per_minute / shards,
            tokens_per_minute=self.tokens_per_minute / shards,
        )

    def cost(self, response: JudgeResponse) -> float:
        return (
            response.tokens_in * self.price_input_per_mtok
            + response.tokens_out * self.price_output_per_mtok
        ) / 1_000_000


def shards_for(max_concurrency: int) -> int:
    """How many shards a judge's concurrency wants on this machine (1 below 2 x 64 in flight)."""
    return max(1, min(os.cpu_count() or 1, max_concurrency // CALLS_PER_SHARD))


class TokenBucket:
    """Requests (or tokens) per minute, refilled continuously; bursts up to one second's worth.

    A request bigger than the bucket waits for a full bucket and drives it negative, so the
    long-run rate is honoured exactly. ``adjust`` gives back (or charges) the difference between
    a call's estimate and its real token count.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        need = min(amount, self.capacity)
        async with self._lock:
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def adjust(self, delta: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + delta)


class _Meter:
    """The run's cost so far, in this process."""

    def __init__(self, start: float) -> None:
        self.value = start

    def add(self, amount: float) -> None:
        self.value += amount


class _SharedMeter:
    """The run's cost so far, shared by forked shards."""

    def __init__(self, ctx: Any, start: float) -> None:
        self._value = ctx.Value("d", start)

    @property
    def value(self) -> float:
        return self._value.value

    def add(self, amount: float) -> None:
        with self._value.get_lock():
            self._value.value += amount


class _Shard:
    """The asyncio side of one shard: calls in, results out."""

    def __init__(
        self,
        *,
        client: JudgeClient,
        limits: Limits,
        emit: Callable[[Any], None],
        stop: Any,  # threading.Event or multiprocessing.Event
        meter: _Meter | _SharedMeter,
    ) -> None:
        self.client = client
        self.limits = limits
        self.emit = emit
        self.stop = stop
        self.meter = meter
        self.capped = False
        self.requests = (
            TokenBucket(limits.requests_per_minute) if limits.requests_per_minute else None
        )
        self.tokens = TokenBucket(limits.tokens_per_minute) if limits.tokens_per_minute else None

    async def run(self, inbox: asyncio.Queue) -> Finished:
        semaphore = asyncio.Semaphore(self.limits.max_concurrency)
        tasks: set[asyncio.Task] = set()
        cap = self.limits.cost_cap
        try:
            while (batch := await inbox.get()) is not None:
                for call in batch:
                    await semaphore.acquire()
                    if self.stop.is_set():
                        semaphore.release()
                        break
                    if cap is not None and self.meter.value >= cap:
                        self.capped = True
                        semaphore.release()
                        break
                    await self._limit(call)
                    task = asyncio.create_task(self._one(call, semaphore))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    continue
                break  # stopped or capped: what is still queued is not dispatched
            await asyncio.gather(*tasks)
        finally:
            await self.client.aclose()
        return Finished(capped=self.capped, stopped=self.stop.is_set())

    async def _limit(self, call: Call) -> None:
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(call.est_tokens)

    async def _one(self, call: Call, semaphore: asyncio.Semaphore) -> None:
        started = time.monotonic()
        try:
            response, attempts = await _complete_with_retries(
                self.client,
                call.request,
                max_attempts=self.limits.max_attempts,
                backoff_base=self.limits.backoff_base,
                backoff_max=self.limits.backoff_max,
                before_retry=lambda: self._limit(call),
            )
        except JudgeCallError as exc:
            self.emit(
                Result(
                    call.seq,
                    None,
                    error=str(exc)[:500],
                    status=exc.status,
                    attempts=getattr(exc, "attempts", 0),
                    latency_ms=int((time.monotonic() - started) * 1000),
                )
            )
            return
        finally:
            semaphore.release()
        self.meter.add(self.limits.cost(response))
        if self.tokens is not None:
            self.tokens.adjust(call.est_tokens - (response.tokens_in + response.tokens_out))
        self.emit(
            Result(
                call.seq,
                response,
                attempts=attempts,
                latency_ms=int((time.monotonic() - started) * 1000),
            )
        )


class ThreadDispatcher:
    """One shard on a thread of this process."""

    shards = 1

    def __init__(self, *, client: JudgeClient, limits: Limits, cost_so_far: float, name: str):
        self.results: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self._client = client
        self._limits = limits
        self._meter = _Meter(cost_so_far)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"judge-net-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        async def main() -> Finished:
            self._loop = asyncio.get_running_loop()
            self._inbox = asyncio.Queue()
            self._ready.set()
            shard = _Shard(
                client=self._client,
                limits=self._limits,
                emit=self.results.put,
                stop=self.stop,
                meter=self._meter,
            )
            return await shard.run(self._inbox)

        try:
            finished = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread, which re-raises it
            self._ready.set()
            self.results.put(Fatal(f"{type(exc).__name__}: {exc}", exc))
            return
        self.results.put(finished)

    def _put(self, item: list[Call] | None) -> None:
        if self._loop is None or self._inbox is None:
            return
        # RuntimeError: the loop already ended (its Finished or Fatal is on its way).
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)

    def feed(self, calls: list[Call]) -> None:
        self._put(calls)

    def close(self) -> None:
        self._put(None)

    def join(self) -> None:
        self._thread.join()


def _shard_process(
    make_client: Callable[[], JudgeClient],
    limits: Limits,
    inbox_conn: Any,
    results: Any,
    stop: Any,
    meter: _SharedMeter,
    parent_pid: int,
) -> None:
    """A forked shard's whole life. It never touches the database connection it inherited."""

    def read(loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue) -> None:
        try:
            while True:
                batch = inbox_conn.recv()
                loop.call_soon_threadsafe(inbox.put_nowait, batch)
                if batch is None:
                    return
        except (EOFError, OSError):  # the run's process closed the pipe or died
            loop.call_soon_threadsafe(inbox.put_nowait, None)

    async def main() -> Finished:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        threading.Thread(target=read, args=(loop, inbox), daemon=True).start()

        async def orphan_watch() -> None:
            # Killed run process (SIGKILL): its answers could no longer be written; stop paying.
            while True:
                await asyncio.sleep(PARENT_CHECK_SECONDS)
                if os.getppid() != parent_pid:
                    os._exit(1)

        watch = asyncio.create_task(orphan_watch())
        shard = _Shard(
            client=make_client(), limits=limits, emit=results.put, stop=stop, meter=meter
        )
        try:
            return await shard.run(inbox)
        finally:
            watch.cancel()

    try:
        finished: Finished | Fatal = asyncio.run(main())
    except BaseException as exc:
        finished = Fatal(f"{type(exc).__name__}: {exc}")
    results.put(finished)
    results.close()
    results.join_thread()  # every result is in the pipe before the process ends


class ProcessDispatcher:
    """``shards`` forked processes, calls dealt out round-robin."""

    def __init__(
        self,
        *,
        make_client: Callable[[], JudgeClient],
        limits: Limits,
        cost_so_far: float,
        shards: int,
        name: str,
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        self.shards = shards
        self.results = ctx.Queue()
        self.stop = ctx.Event()
        meter = _SharedMeter(ctx, cost_so_far)
        self._conns = []
        self._procs = []
        for index in range(shards):
            receive, send = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=_shard_process,
                args=(
                    make_client,
                    limits.share(index, shards),
                    receive,
                    self.results,
                    self.stop,
                    meter,
                    os.getpid(),
                ),
                name=f"judge-net-{name}-{index}",
                daemon=True,
            )
            self._conns.append((receive, send))
            self._procs.append(process)
        self._next = 0
        self._closed = False

    def start(self) -> None:
        with warnings.catch_warnings():
            # Python warns that forking a process with threads may deadlock the child on a lock
            # another thread held. A shard only uses what it makes after the fork (its event
            # loop, SDK client, pipe and queue) and never the parent's connections or threads.
            warnings.filterwarnings(
                "ignore", "This process .* is multi-threaded", DeprecationWarning
            )
            for process in self._procs:
                process.start()
        for receive, _ in self._conns:
            receive.close()  # the shard holds it now; EOF reaches it if this process dies

    def feed(self, calls: list[Call]) -> None:
        n = self.shards
        for offset in range(n):
            part = calls[offset::n]
            if part:
                self._send((self._next + offset) % n, part)
        self._next = (self._next + len(calls)) % n

    def _send(self, index: int, item: list[Call] | None) -> None:
        # OSError: that shard already ended (or died; its Fatal is in the results).
        with contextlib.suppress(OSError):
            self._conns[index][1].send(item)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for index in range(self.shards):
            self._send(index, None)
            self._conns[index][1].close()

    def join(self) -> None:
        for process in self._procs:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
