"""A fake LLM server on a real socket that speaks both wire protocols the judges use.

- ``POST /v1/chat/completions`` (OpenAI and OpenAI-compatible): JSON mode / JSON schema answers,
  tool calls, tagged text, log-probabilities when asked;
- ``POST /v1/messages`` (Anthropic): tool use or tagged text.

It judges like a (content-based, so order-consistent) judge: the longest response wins, unless a
test sets ``policy`` (``"first"``: always the response shown first, a position-biased judge; or a
callable). Tests script faults per request in ``faults`` (consumed one per request, in order):
``{"status": 429, "retry_after": "1"}``, ``{"status": 500}``, ``{"status": 400}``,
``{"delay": 5}`` (slower than the client's timeout), ``{"drop": True}`` (connection closed without
an answer), ``{"content": "not json"}`` (malformed answer), ``{"refusal": "I can't"}``.

In a test: ``with LLMServer(latency=0.05) as server: ... server.openai_url ...``. For the bench,
in its own process: ``python -m tests.llm_server --latency 0.2`` prints ``PORT <n>`` and serves.

``Replay`` (``LLMServer(replay=Replay.from_file(path))``, ``--replay FILE``) answers as recorded
judges did: rows in DESIGN.md's row format with judge labels; the request's ``model`` names the
judge, the shown responses (matched by text, the prompt breaking ties) name the item, and the
recorded verdict (in the item's letters) is given in the letters of the order shown. A recorded
``null`` (an answer that could not be parsed) is answered with text that does not parse.
"""

import argparse
import asyncio
import collections
import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

RESPONSE_BLOCK = re.compile(r'<response id="([A-Z])">\n(.*?)\n</response>', re.DOTALL)
TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def _neutralised(text: str) -> str:
    """A response text as the judge prompt shows it (routing.judges.prompts neutralises tags)."""
    return re.sub(r"<(/?)response", r"<\1 response", text, flags=re.IGNORECASE).strip()


class Replay:
    """Recorded verdicts per (judge, item): see the module docstring."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.by_texts: dict[frozenset[str], list[tuple[str, list[str], dict[str, Any]]]] = {}
        for row in rows:
            texts = [
                _neutralised(c["text"] if isinstance(c, dict) else c) for c in row["candidates"]
            ]
            verdicts = {}
            for label in row.get("labels", []):
                if label.get("source") == "judge":
                    verdicts.setdefault(label["judge"], label.get("choice"))
            entry = (str(row.get("prompt", ""))[:300], texts, verdicts)
            self.by_texts.setdefault(frozenset(texts), []).append(entry)
        self.misses = 0

    @classmethod
    def from_file(cls, path: str) -> "Replay":
        with open(path, encoding="utf-8") as handle:
            return cls([json.loads(line) for line in handle if line.strip()])

    def verdict(self, model: str, prompt: str, shown: dict[str, str]) -> dict[str, Any] | None:
        shown_texts = {letter: text.strip() for letter, text in shown.items()}
        entries = self.by_texts.get(frozenset(shown_texts.values()), [])
        entry = next(
            (e for e in entries if e[0] and e[0] in prompt), entries[0] if entries else None
        )
        if entry is None or model not in entry[2]:
            self.misses += 1
            return {"rationale": "unknown item", "choice": "tie"}
        _, texts, verdicts = entry
        choice = verdicts[model]
        if choice is None:
            return None  # recorded as unparseable
        if choice in ("tie", "both_bad"):
            return {"rationale": "recorded", "choice": choice}
        winner = texts[ord(choice) - ord("A")]
        letter = next(k for k, text in shown_texts.items() if text == winner)
        return {"rationale": "recorded", "choice": letter}


class LLMServer:
    def __init__(
        self,
        *,
        latency: float = 0.0,
        policy: str | Callable[[dict[str, str], str], dict[str, Any]] = "longest",
        verdict_prob: float = 0.9,
        record: bool = True,
        replay: Replay | None = None,
    ) -> None:
        self.replay = replay
        self.latency = latency
        self.policy = policy
        self.verdict_prob = verdict_prob
        self.record = record
        self.faults: collections.deque[dict[str, Any]] = collections.deque()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/messages", self.messages)
        return app

    async def start_async(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> "LLMServer":
        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            self._ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="llm-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "LLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- judging -----------------------------------------------------------------------------

    def verdict(self, prompt: str, task: str) -> dict[str, Any]:
        shown = dict(RESPONSE_BLOCK.findall(prompt))
        if callable(self.policy):
            return self.policy(shown, task)
        by_length = sorted(shown, key=lambda letter: (-len(shown[letter]), letter))
        if self.policy == "first":
            by_length = sorted(shown)
        if task == "listwise":
            return {"rationale": "longer is better", "ranking": by_length}
        if task == "thumbs":
            text = next(iter(shown.values()), "")
            return {"rationale": "length check", "thumb": "up" if len(text) > 10 else "down"}
        out = {"rationale": "the better one is more complete", "choice": by_length[0]}
        if "strength" in prompt:
            out["strength"] = 2
        return out

    @staticmethod
    def task_of(prompt: str, schema: dict[str, Any] | None) -> str:
        props = (schema or {}).get("properties", {})
        if "ranking" in props or "<ranking>" in prompt:
            return "listwise"
        if "thumb" in props or "<thumb>" in prompt:
            return "thumbs"
        return "pairwise"

    @staticmethod
    def tagged(verdict: dict[str, Any]) -> str:
        parts = [f"<rationale>{verdict.get('rationale', '')}</rationale>"]
        if "choice" in verdict:
            parts.append(f"<choice>{verdict['choice']}</choice>")
        if verdict.get("strength") is not None:
            parts.append(f"<strength>{verdict['strength']}</strength>")
        if "ranking" in verdict:
            parts.append(f"<ranking>{' > '.join(verdict['ranking'])}</ranking>")
        if "thumb" in verdict:
            parts.append(f"<thumb>{verdict['thumb']}</thumb>")
        return "\n".join(parts)

    def logprobs(self, content: str) -> dict[str, Any]:
        tokens = TOKEN.findall(content)
        confident = math.log(self.verdict_prob)
        out = []
        for i, token in enumerate(tokens):
            before = "".join(tokens[max(0, i - 3) : i])
            is_verdict = re.search(r'(<choice>|"choice"\s*:\s*")$', before) is not None
            out.append({"token": token, "logprob": confident if is_verdict else -0.001})
        return {"content": out}

    # --- faults and bookkeeping -------------------------------------------------------------

    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        started = time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        entry = {"path": request.path, "start": started, "body": body, "end": None}
        if self.record:
            self.requests.append(entry)
        fault = self.faults.popleft() if self.faults else {}
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if "delay" in fault:
                await asyncio.sleep(fault["delay"])
            if fault.get("drop"):
                request.transport.abort()  # type: ignore[union-attr]
                return body | {"_fault": fault}, web.Response(status=500)
            if "status" in fault:
                headers = {}
                if "retry_after" in fault:
                    headers["Retry-After"] = str(fault["retry_after"])
                error = {"error": {"message": f"scripted {fault['status']}", "type": "scripted"}}
                return body | {"_fault": fault}, web.json_response(
                    error, status=fault["status"], headers=headers
                )
            return body | {"_fault": fault}, None
        finally:
            entry["end"] = time.monotonic()
            self.in_flight -= 1

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._begin(request)
        if early is not None:
            return early
        fault = body["_fault"]
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        schema = None
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            schema = response_format["json_schema"]["schema"]
        tools = body.get("tools") or []
        if tools:
            schema = tools[0]["function"]["parameters"]
        if self.replay is not None:
            shown = dict(RESPONSE_BLOCK.findall(prompt))
            verdict = self.replay.verdict(body.get("model", ""), prompt, shown)
        else:
            verdict = self.verdict(prompt, self.task_of(prompt, schema))
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if verdict is None:  # a replayed answer that did not parse
            fault = {**fault, "content": "I cannot tell which is better."}
        if "refusal" in fault:
            message["refusal"] = fault["refusal"]
            content = ""
        elif tools:
            arguments = fault.get("content", json.dumps(verdict))
            message["tool_calls"] = [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": tools[0]["function"]["name"], "arguments": arguments},
                }
            ]
            content = arguments
        else:
            content = fault.get("content")
            if content is None:
                content = json.dumps(verdict) if response_format else self.tagged(verdict)
            message["content"] = content
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": "tool_calls" if tools else "stop",
            "logprobs": self.logprobs(content) if body.get("logprobs") and content else None,
        }
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": len(prompt) // 4,
                    "completion_tokens": len(content) // 4 + 1,
                    "total_tokens": len(prompt) // 4 + len(content) // 4 + 1,
                },
            }
        )

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._begin(request)
        if early is not None:
            return early
        fault = body["_fault"]
        prompt = (
            str(body.get("system", ""))
            + "\n"
            + "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        )
        tools = body.get("tools") or []
        schema = tools[0]["input_schema"] if tools else None
        verdict = self.verdict(prompt, self.task_of(prompt, schema))
        if "refusal" in fault:
            content = [{"type": "text", "text": fault["refusal"]}]
            stop, out_text = "refusal", fault["refusal"]
        elif tools and "content" not in fault:
            content = [
                {"type": "tool_use", "id": "toolu_1", "name": tools[0]["name"], "input": verdict}
            ]
            stop, out_text = "tool_use", json.dumps(verdict)
        else:
            out_text = fault.get("content", self.tagged(verdict))
            content = [{"type": "text", "text": out_text}]
            stop = "end_turn"
        return web.json_response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "fake"),
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": len(prompt) // 4,
                    "output_tokens": len(out_text) // 4 + 1,
                },
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--replay", default=None, help="rows with recorded judge labels")
    args = parser.parse_args()
    replay = Replay.from_file(args.replay) if args.replay else None
    server = LLMServer(latency=args.latency, record=False, replay=replay)

    async def serve() -> None:
        await server.start_async(args.port)
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
