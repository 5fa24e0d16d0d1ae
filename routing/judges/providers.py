"""Judge clients: one small async interface over the official OpenAI and Anthropic SDKs.

The SDKs' own retries are off (``max_retries=0``); :func:`complete_with_retries` retries transient
failures (429, 5xx, timeouts, dropped connections) with exponential backoff and full jitter, and
waits at least as long as the server's ``Retry-After`` asks. Client errors (4xx other than 408/409/
429) are never retried: they raise :class:`ClientCallError` at once.
"""

import asyncio
import email.utils
import functools
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from routing.judges import guards
from routing.judges.models import Judge, OutputMode, Provider
from tandem.errors import ApplicationError

if TYPE_CHECKING:
    import ssl

TOOL_NAME = "submit_verdict"
RETRY_AFTER_MAX_SECONDS = 600.0
TRANSIENT_STATUS = {408, 409, 425, 429}


class JudgeCallError(Exception):
    """A call to a judge's API failed."""

    transient = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientCallError(JudgeCallError):
    """Worth retrying: rate limited, server error, timeout, dropped connection."""

    transient = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ClientCallError(JudgeCallError):
    """The request itself is wrong (bad key, unknown model, bad parameter): not retried."""


class JudgeConfigError(ApplicationError):
    code = "judge_config"


@dataclass(frozen=True)
class JudgeRequest:
    system: str
    user: str
    output_mode: str  # resolved: json_schema | json_object | tool | text
    json_schema: dict[str, Any]
    sampling: dict[str, Any] = field(default_factory=dict)
    logprobs: bool = False


@dataclass
class JudgeResponse:
    """What the model answered, word for word, and what it cost in tokens."""

    text: str
    structured: dict[str, Any] | None = None
    refusal: str | None = None
    finish_reason: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    logprobs: list[tuple[str, float]] | None = None
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "structured": self.structured,
            "refusal": self.refusal,
            "finish_reason": self.finish_reason,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "logprobs": self.logprobs,  # (token, logprob) pairs: JSON arrays when stored
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JudgeResponse":
        logprobs = data.get("logprobs")
        return cls(
            text=data.get("text", ""),
            structured=data.get("structured"),
            refusal=data.get("refusal"),
            finish_reason=data.get("finish_reason", ""),
            tokens_in=int(data.get("tokens_in", 0)),
            tokens_out=int(data.get("tokens_out", 0)),
            logprobs=[(t, float(lp)) for t, lp in logprobs] if logprobs is not None else None,
            model=data.get("model", ""),
        )


class JudgeClient(Protocol):
    """One judge model behind an API. Implementations raise JudgeCallError subclasses only."""

    async def complete(self, request: JudgeRequest) -> JudgeResponse: ...

    async def aclose(self) -> None: ...


def resolve_output_mode(judge: Judge) -> str:
    """``auto`` means: JSON schema on OpenAI, tool use on Anthropic, tagged text elsewhere."""
    if judge.output_mode != OutputMode.AUTO:
        return judge.output_mode
    return {
        Provider.OPENAI: OutputMode.JSON_SCHEMA,
        Provider.ANTHROPIC: OutputMode.TOOL,
    }.get(judge.provider, OutputMode.TEXT)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _status_error(exc: Any, provider: str) -> JudgeCallError:
    status = exc.status_code
    message = f"{provider} HTTP {status}: {str(exc)[:300]}"
    if status in TRANSIENT_STATUS or status >= 500:
        retry_after = parse_retry_after(getattr(exc.response, "headers", None))
        return TransientCallError(message, status=status, retry_after=retry_after)
    return ClientCallError(message, status=status)


def preload_sdks() -> None:
    """Import both SDKs now. Judge workers call this at start-up (routing/tasks.py), so their
    first run does not pay the import; web processes, which never call a model, skip it."""
    import aiohttp  # noqa: F401  # the transport both use
    import anthropic  # noqa: F401
    import openai  # noqa: F401


def _http_client(sdk: Any, *, connections: int) -> Any:
    """The SDK's aiohttp-backed HTTP client (``DefaultAioHttpClient``), sized for the judge.

    With the default httpx transport the SDK spends about 40% more CPU per call, and keeps only
    100 idle connections: above that concurrency every round of calls opens fresh ones. On the
    2-core bench that was the difference between 0.77 and 0.91 of the ideal rate at 128 in flight.
    """
    import httpx2  # the SDKs' HTTP library

    return sdk.DefaultAioHttpClient(
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
        verify=_tls_context(),
    )


@functools.cache
def _tls_context() -> "ssl.SSLContext":
    """The HTTP library's default TLS context, made once per process: loading the CA bundle
    takes ~20 ms, which every judge run (and every shard) paid again otherwise."""
    import httpx2

    return httpx2.create_ssl_context()


def _sdk_error(exc: Exception, provider: str, sdk: Any) -> JudgeCallError:
    """Map an SDK's exception (``sdk`` is the ``openai`` or ``anthropic`` module) to ours."""
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(exc, provider)
    if isinstance(exc, sdk.APITimeoutError):
        return TransientCallError(f"{provider}: timed out")
    if isinstance(exc, sdk.APIConnectionError):
        return TransientCallError(f"{provider}: connection failed ({exc.__cause__ or exc})")
    # A response the SDK could not read (e.g. truncated body): the server's fault, retry it.
    return TransientCallError(f"{provider}: {type(exc).__name__}: {str(exc)[:300]}")


class _SDKClient:
    """What both judge clients share: the SDK's async client and one way to call it."""

    name: str
    _sdk: Any  # the openai or anthropic module
    _error: type[Exception]  # the SDK's base error
    _client: Any

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` through the SDK client and return the answer's JSON.

        The SDK does what matters on the wire (base URL, auth and version headers, timeouts,
        the connection pool, non-2xx statuses raised as its typed errors) through its
        documented generic ``post(..., cast_to=Response)``. Its typed ``create`` methods would
        also transform the request field by field and build a pydantic model of every answer
        (of every log-probability token, too): that doubled the worker's CPU per call and kept
        a 2-core worker well under the rate 128 calls in flight allow. Tandem reads the few
        fields it needs from the JSON itself.
        """
        import httpx2

        try:
            response = await self._client.post(path, body=body, cast_to=httpx2.Response)
            content = await response.aread()
        except self._error as exc:
            raise _sdk_error(exc, self.name, self._sdk) from exc
        except httpx2.HTTPError as exc:  # the body broke off after the status line
            raise TransientCallError(f"{self.name}: {type(exc).__name__}: {exc}"[:300]) from exc
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise TransientCallError(f"{self.name}: unreadable response: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIJudgeClient(_SDKClient):
    """OpenAI and any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, TGI)."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        compatible: bool,
        connections: int = 100,
    ) -> None:
        self.model = model
        self.compatible = compatible
        self.name = "openai_compatible" if compatible else "openai"
        # The SDKs are imported by the client that uses them: loading both costs every Django
        # process (web workers, each manage.py command) over a second at start-up otherwise.
        import openai

        self._sdk = openai
        self._error = openai.OpenAIError
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url or None,
            timeout=timeout,
            max_retries=0,
            http_client=_http_client(openai, connections=connections),
        )

    async def complete(self, request: JudgeRequest) -> JudgeResponse:
        params: dict[str, Any] = {}
        sampling = request.sampling
        for name in ("temperature", "top_p", "seed"):
            if name in sampling:
                params[name] = sampling[name]
        if "max_tokens" in sampling:
            key = "max_tokens" if self.compatible else "max_completion_tokens"
            params[key] = sampling["max_tokens"]
        mode = request.output_mode
        if mode == OutputMode.JSON_SCHEMA:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": request.json_schema, "strict": True},
            }
        elif mode == OutputMode.JSON_OBJECT:
            params["response_format"] = {"type": "json_object"}
            if self.compatible:
                # llama.cpp's server (and others) constrain JSON mode to a schema given here.
                params["response_format"]["schema"] = request.json_schema
        elif mode == OutputMode.TOOL:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": TOOL_NAME,
                        "description": "Record your verdict.",
                        "parameters": request.json_schema,
                    },
                }
            ]
            params["tool_choice"] = {"type": "function", "function": {"name": TOOL_NAME}}
        if request.logprobs and mode != OutputMode.TOOL:
            params["logprobs"] = True
            if sampling.get("top_logprobs"):
                params["top_logprobs"] = sampling["top_logprobs"]
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            **params,
        }
        data = await self._post_json("/chat/completions", body)
        return self._response(data)

    def _response(self, data: Any) -> JudgeResponse:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            raise TransientCallError(f"{self.name}: response without choices")
        choice = choices[0] or {}
        message = choice.get("message") or {}
        text = message.get("content") or ""
        structured = None
        tool_calls = message.get("tool_calls")
        if tool_calls:
            function = tool_calls[0].get("function") or {}
            arguments = function.get("arguments") or ""
            text = arguments
            try:
                loaded = json.loads(arguments)
                structured = loaded if isinstance(loaded, dict) else None
            except ValueError:
                structured = None  # kept raw; the parser reports it
        logprobs = None
        content = (choice.get("logprobs") or {}).get("content")
        if content:
            logprobs = [(t["token"], float(t["logprob"])) for t in content]
        usage = data.get("usage") or {}
        return JudgeResponse(
            text=text,
            structured=structured,
            refusal=message.get("refusal") or None,
            finish_reason=choice.get("finish_reason") or "",
            tokens_in=usage.get("prompt_tokens") or 0,
            tokens_out=usage.get("completion_tokens") or 0,
            logprobs=logprobs,
            model=data.get("model") or self.model,
        )


class AnthropicJudgeClient(_SDKClient):
    """Anthropic's messages API; structured output through a forced tool call."""

    name = "anthropic"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        connections: int = 100,
    ) -> None:
        self.model = model
        import anthropic

        self._sdk = anthropic
        self._error = anthropic.AnthropicError
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout,
            max_retries=0,
            http_client=_http_client(anthropic, connections=connections),
        )

    async def complete(self, request: JudgeRequest) -> JudgeResponse:
        params: dict[str, Any] = {}
        for name in ("temperature", "top_p"):
            if name in request.sampling:
                params[name] = request.sampling[name]
        if request.output_mode == OutputMode.TOOL:
            params["tools"] = [
                {
                    "name": TOOL_NAME,
                    "description": "Record your verdict.",
                    "input_schema": request.json_schema,
                }
            ]
            params["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        body = {
            "model": self.model,
            "max_tokens": int(request.sampling.get("max_tokens", 1024)),
            "system": request.system,
            "messages": [{"role": "user", "content": request.user}],
            **params,
        }
        data = await self._post_json("/v1/messages", body)
        return self._response(data)

    def _response(self, data: Any) -> JudgeResponse:
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise TransientCallError(f"{self.name}: response without content")
        texts: list[str] = []
        structured = None
        for block in data["content"]:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use" and structured is None:
                given = block.get("input")
                structured = given if isinstance(given, dict) else None
        text = "".join(texts)
        if structured is not None:
            text = json.dumps(structured, ensure_ascii=False)
        stop = data.get("stop_reason") or ""
        usage = data.get("usage") or {}
        return JudgeResponse(
            text=text,
            structured=structured,
            refusal=(text or "refused") if stop == "refusal" else None,
            finish_reason=stop,
            tokens_in=usage.get("input_tokens") or 0,
            tokens_out=usage.get("output_tokens") or 0,
            logprobs=None,
            model=data.get("model") or self.model,
        )


def judge_api_key(judge: Judge) -> str | None:
    """The key from the environment variable the judge names; keys never live in the database."""
    env = judge.key_env
    if not env:
        return None
    if problem := guards.key_env_problem(env):  # a judge saved before the allow-list, or edited
        raise JudgeConfigError(f"Judge {judge.name!r}: {problem}.")
    key = os.environ.get(env)
    if not key and judge.provider != Provider.OPENAI_COMPATIBLE:
        raise JudgeConfigError(
            f"Judge {judge.name!r} reads its API key from ${env}, which is not set."
        )
    return key or None


def client_for_judge(judge: Judge) -> JudgeClient:
    """The default client factory: the provider's official async SDK client."""
    if problem := guards.base_url_problem(judge.base_url):
        raise JudgeConfigError(f"Judge {judge.name!r}: base_url {problem}.")
    api_key = judge_api_key(judge)
    if judge.provider == Provider.ANTHROPIC:
        return AnthropicJudgeClient(
            model=judge.model,
            api_key=api_key,
            base_url=judge.base_url or None,
            timeout=judge.timeout_seconds,
            connections=judge.max_concurrency,
        )
    return OpenAIJudgeClient(
        model=judge.model,
        api_key=api_key,
        base_url=judge.base_url or None,
        timeout=judge.timeout_seconds,
        compatible=judge.provider == Provider.OPENAI_COMPATIBLE,
        connections=judge.max_concurrency,
    )


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return rng() * min(cap, base * (2 ** (attempt - 1)))


async def complete_with_retries(
    client: JudgeClient,
    request: JudgeRequest,
    *,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
    before_retry: Callable[[], Awaitable[None]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> tuple[JudgeResponse, int]:
    """The response and the number of attempts it took. Raises the last JudgeCallError."""
    attempt = 1
    while True:
        try:
            return await client.complete(request), attempt
        except ClientCallError as exc:
            exc.attempts = attempt  # type: ignore[attr-defined]
            raise
        except TransientCallError as exc:
            if attempt >= max_attempts:
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            delay = backoff_delay(attempt, base=backoff_base, cap=backoff_max, rng=rng)
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, RETRY_AFTER_MAX_SECONDS))
            await sleep(delay)
            attempt += 1
            if before_retry is not None:
                await before_retry()
