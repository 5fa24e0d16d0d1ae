"""Turning one input row into an ``ItemRow``: Tandem's row format, TRL preference and unpaired.

Accepted shapes (nested fields may also arrive as JSON text, as they do from CSV):

- Tandem (DESIGN.md, "The row format"): ``prompt`` or ``messages``, ``candidates``, optional
  ``external_id``, ``metadata``, ``gold``, ``labels``; ``responses`` (a list of texts) is taken as
  candidates too.
- TRL preference: ``prompt``/``chosen``/``rejected``, standard (text) or conversational (lists of
  messages), also with the prompt implicit in ``chosen``/``rejected``. Candidate A is ``chosen`` and
  the row's preference becomes a label for A.
- TRL unpaired: ``prompt``/``completion``/``label`` (true = good) for thumbs projects.

Everything a row carries beyond these fields is kept in the item's metadata.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError

from tandem.inputs import UnsafeInput, check_json, text_problem

from .schema import PAIRWISE_CHOICES, THUMBS, LabelSchema, TaskType, validate_order

ROLES = ("system", "user", "assistant", "tool")
MAX_EXTERNAL_ID = 255
TANDEM_FIELDS = {
    "external_id",
    "prompt",
    "messages",
    "candidates",
    "responses",
    "metadata",
    "gold",
    "labels",
}
TRL_PAIR_FIELDS = {"prompt", "chosen", "rejected", "external_id", "metadata", "gold"}
TRL_UNPAIRED_FIELDS = {"prompt", "completion", "label", "external_id", "metadata", "gold"}


class RowError(ValueError):
    """A row that cannot be imported; the message says why, for a person to fix the file."""


@dataclass
class CandidateRow:
    text: str
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class LabelRow:
    source: str
    payload: dict[str, Any]
    annotator: str = ""
    judge: str = ""
    order: str = ""
    raw_output: str = ""
    confidence: float | None = None
    time_spent_ms: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ItemRow:
    external_id: str
    prompt: str
    messages: list[dict[str, str]] | None
    candidates: list[CandidateRow]
    metadata: dict[str, Any]
    gold: Any
    labels: list[LabelRow]
    content_hash: str


@dataclass(frozen=True)
class RowLimits:
    """What one row may carry (settings TANDEM_MAX_*): nesting, and the size of its texts."""

    max_depth: int = 32
    prompt_chars: int = 1_000_000
    candidate_chars: int = 1_000_000
    metadata_bytes: int = 100_000

    @classmethod
    def from_settings(cls) -> "RowLimits":
        return cls(
            max_depth=settings.TANDEM_MAX_JSON_DEPTH,
            prompt_chars=settings.TANDEM_MAX_PROMPT_CHARS,
            candidate_chars=settings.TANDEM_MAX_CANDIDATE_CHARS,
            metadata_bytes=settings.TANDEM_MAX_METADATA_BYTES,
        )


@dataclass(frozen=True)
class RowOptions:
    """How rows map to a project. ``preference_source`` labels TRL's chosen/rejected."""

    task_type: str
    schema: LabelSchema
    preference_source: str = "none"  # human | judge | none: who gave a TRL row's label
    preference_annotator: str = "dataset"
    limits: RowLimits = field(default_factory=RowLimits.from_settings)


def parse_row(raw: dict[str, Any], options: RowOptions) -> ItemRow:
    """Normalise one row; raises RowError with a reason a person can act on."""
    _check_raw(raw, options.limits)
    if "candidates" in raw or "responses" in raw:
        row = _parse_tandem(raw, options)
    elif "chosen" in raw or "rejected" in raw:
        row = _parse_trl_preference(raw, options)
    elif "completion" in raw:
        row = _parse_trl_unpaired(raw, options)
    else:
        raise RowError(
            "unknown row shape: expected 'candidates' (Tandem), 'chosen'/'rejected' (TRL "
            "preference) or 'completion'/'label' (TRL unpaired)"
        )
    _check_candidate_count(len(row.candidates), options.task_type)
    _check_sizes(row, options.limits)
    if row.gold is not None:
        row.gold = _parse_gold(row.gold, options, len(row.candidates))
    return row


def _check_raw(raw: dict[str, Any], limits: RowLimits) -> None:
    """No NUL, no lone surrogate, no nesting past the limit, anywhere in the row."""
    try:
        for key, value in raw.items():
            if isinstance(key, str) and (problem := text_problem(key)):
                raise RowError(f"a field name {problem}")
            check_json(value, str(key), max_depth=limits.max_depth)
    except UnsafeInput as exc:
        raise RowError(str(exc)) from None


def _check_sizes(row: ItemRow, limits: RowLimits) -> None:
    prompt_chars = len(row.prompt) + sum(len(m["content"]) for m in row.messages or ())
    if prompt_chars > limits.prompt_chars:
        raise RowError(f"the prompt is longer than {limits.prompt_chars:,} characters")
    for i, candidate in enumerate(row.candidates):
        if len(candidate.text) > limits.candidate_chars:
            raise RowError(f"candidates[{i}] is longer than {limits.candidate_chars:,} characters")
    for name, value in [("metadata", row.metadata)] + [
        (f"candidates[{i}].metadata", c.metadata) for i, c in enumerate(row.candidates)
    ]:
        if value and len(orjson.dumps(value)) > limits.metadata_bytes:
            raise RowError(f"{name} is larger than {limits.metadata_bytes:,} bytes as JSON")


def content_hash(prompt: str, messages: Any, candidates: list[CandidateRow]) -> str:
    """What makes two items the same: their prompt/conversation and their candidates' texts."""
    blob = orjson.dumps(
        {"p": prompt, "m": messages, "c": [c.text for c in candidates]},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(blob).hexdigest()


def _json_field(raw: dict[str, Any], name: str, default: Any = None) -> Any:
    value = raw.get(name, default)
    if isinstance(value, str) and name in {
        "candidates",
        "responses",
        "messages",
        "metadata",
        "labels",
        "chosen",
        "rejected",
    }:
        stripped = value.lstrip()
        if stripped[:1] in ("[", "{"):
            try:
                return _checked(orjson.loads(value), name)
            except orjson.JSONDecodeError as exc:
                raise RowError(f"{name}: not valid JSON ({exc})") from None
    if name == "prompt" and isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            return _checked(orjson.loads(value), name)
        except orjson.JSONDecodeError:
            return value
    return value


def _checked(value: Any, name: str) -> Any:
    """JSON text inside a field (CSV) gets the same checks as the row itself."""
    try:
        check_json(value, name, max_depth=settings.TANDEM_MAX_JSON_DEPTH)
    except UnsafeInput as exc:
        raise RowError(str(exc)) from None
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"{name} must be text")
    return value


def _messages(value: Any, name: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RowError(f"{name} must be a non-empty list of {{role, content}} messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise RowError(f"{name}[{i}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(f"{name}[{i}].role must be one of {', '.join(ROLES)}; got {role!r}")
        if not isinstance(content, str):
            raise RowError(f"{name}[{i}].content must be text")
        out.append({"role": role, "content": content})
    return out


def _metadata(raw: dict[str, Any], known: set[str]) -> dict[str, Any]:
    metadata = _json_field(raw, "metadata", {}) or {}
    if not isinstance(metadata, dict):
        raise RowError("metadata must be an object")
    extra = {k: v for k, v in raw.items() if k not in known}
    return {**extra, **metadata} if extra else metadata


def _external_id(raw: dict[str, Any]) -> str | None:
    value = raw.get("external_id")
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowError("external_id must be text or a whole number")
    value = str(value).strip()
    if not value:
        return None
    if len(value) > MAX_EXTERNAL_ID:
        raise RowError(f"external_id is longer than {MAX_EXTERNAL_ID} characters")
    return value


def _finish(
    raw: dict[str, Any],
    *,
    prompt: str,
    messages: list[dict[str, str]] | None,
    candidates: list[CandidateRow],
    metadata: dict[str, Any],
    labels: list[LabelRow],
) -> ItemRow:
    digest = content_hash(prompt, messages, candidates)
    return ItemRow(
        external_id=_external_id(raw) or f"h:{digest[:32]}",
        prompt=prompt,
        messages=messages,
        candidates=candidates,
        metadata=metadata,
        gold=raw.get("gold"),
        labels=labels,
        content_hash=digest,
    )


def _prompt_or_messages(raw: dict[str, Any]) -> tuple[str, list[dict[str, str]] | None]:
    messages = _json_field(raw, "messages")
    prompt = _json_field(raw, "prompt")
    if messages is not None:
        if prompt not in (None, ""):
            raise RowError("give either prompt or messages, not both")
        return "", _messages(messages, "messages")
    if isinstance(prompt, list):
        return "", _messages(prompt, "prompt")
    if prompt is None:
        raise RowError("prompt (or messages) is missing")
    return _text(prompt, "prompt"), None


def _parse_tandem(raw: dict[str, Any], options: RowOptions) -> ItemRow:
    prompt, messages = _prompt_or_messages(raw)
    raw_candidates = _json_field(raw, "candidates")
    if raw_candidates is None:
        raw_candidates = _json_field(raw, "responses")
    if not isinstance(raw_candidates, list) or not raw_candidates:
        raise RowError("candidates must be a non-empty list")
    candidates = []
    for i, value in enumerate(raw_candidates):
        if isinstance(value, str):
            candidates.append(CandidateRow(text=value))
            continue
        if not isinstance(value, dict):
            raise RowError(f"candidates[{i}] must be text or an object with text")
        text = value.get("text")
        if text is None and isinstance(value.get("messages"), list):
            turns = _messages(value["messages"], f"candidates[{i}].messages")
            candidates.append(_candidate_from_messages(turns, value))
            continue
        if not isinstance(text, str):
            raise RowError(f"candidates[{i}].text must be text")
        model = value.get("model") or ""
        if not isinstance(model, str):
            raise RowError(f"candidates[{i}].model must be text")
        meta = value.get("metadata") or {}
        if not isinstance(meta, dict):
            raise RowError(f"candidates[{i}].metadata must be an object")
        candidates.append(CandidateRow(text=text, model=model, metadata=meta))

    raw_labels = _json_field(raw, "labels", []) or []
    if not isinstance(raw_labels, list):
        raise RowError("labels must be a list")
    _check_candidate_count(len(candidates), options.task_type)
    labels = [
        _parse_label(label, i, options, len(candidates)) for i, label in enumerate(raw_labels)
    ]
    return _finish(
        raw,
        prompt=prompt,
        messages=messages,
        candidates=candidates,
        metadata=_metadata(raw, TANDEM_FIELDS),
        labels=labels,
    )


def _candidate_from_messages(turns: list[dict[str, str]], value: dict[str, Any]) -> CandidateRow:
    meta = dict(value.get("metadata") or {})
    if len(turns) > 1 or turns[0]["role"] != "assistant":
        meta["messages"] = turns
    text = "\n\n".join(t["content"] for t in turns)
    return CandidateRow(text=text, model=value.get("model") or "", metadata=meta)


# The fields a label has in the row format (DESIGN.md); anything else in a label goes to its
# metadata. Exports write labels with these fields, so an export re-imports as it was.
LABEL_FIELDS = frozenset(
    {
        "source",
        "annotator",
        "judge",
        "order",
        "choice",
        "strength",
        "aspects",
        "rationale",
        "ranking",
        "thumb",
        "confidence",
        "time_spent_ms",
        "raw_output",
    }
)


def _parse_label(raw: Any, index: int, options: RowOptions, n: int) -> LabelRow:
    where = f"labels[{index}]"
    if not isinstance(raw, dict):
        raise RowError(f"{where} must be an object")
    source = raw.get("source")
    if source not in ("human", "judge"):
        raise RowError(f"{where}.source must be 'human' or 'judge'; got {source!r}")
    annotator = raw.get("annotator") or ""
    judge = raw.get("judge") or ""
    if source == "judge" and not judge:
        raise RowError(f"{where}: a judge label needs 'judge' (the judge's name)")
    if not isinstance(annotator, str) or not isinstance(judge, str):
        raise RowError(f"{where}: annotator and judge must be text")
    order = raw.get("order") or ""
    if order:
        try:
            validate_order(str(order), n)
        except ValidationError as exc:
            raise RowError(f"{where}.{exc.messages[0]}") from None
    try:
        payload = options.schema.validate_label(raw, n_candidates=n, strict=False)
    except ValidationError as exc:
        raise RowError(f"{where}: {'; '.join(exc.messages)}") from None
    confidence = raw.get("confidence")
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, int | float)
    ):
        raise RowError(f"{where}.confidence must be a number")
    time_spent = raw.get("time_spent_ms")
    if time_spent is not None and (
        isinstance(time_spent, bool) or not isinstance(time_spent, int) or time_spent < 0
    ):
        raise RowError(f"{where}.time_spent_ms must be a whole number of milliseconds")
    raw_output = raw.get("raw_output") or ""
    if not isinstance(raw_output, str):
        raise RowError(f"{where}.raw_output must be text")
    known = LABEL_FIELDS
    return LabelRow(
        source=source,
        payload=payload,
        annotator=annotator if source == "human" else "",
        judge=judge if source == "judge" else "",
        order=str(order),
        raw_output=raw_output,
        confidence=float(confidence) if confidence is not None else None,
        time_spent_ms=time_spent,
        metadata={k: v for k, v in raw.items() if k not in known},
    )


def _completion(value: Any, name: str) -> tuple[CandidateRow, list[dict[str, str]] | None]:
    if isinstance(value, str):
        return CandidateRow(text=value), None
    turns = _messages(value, name)
    return _candidate_from_messages(turns, {}), turns


def _split_implicit_prompt(chosen: Any, rejected: Any) -> tuple[list[dict[str, str]], Any, Any]:
    """TRL's implicit-prompt rows: the prompt is the conversation both answers share."""
    chosen = _messages(chosen, "chosen")
    rejected = _messages(rejected, "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise RowError("no prompt: give 'prompt', or conversations that share their opening")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _dataset_label(options: RowOptions, payload: dict[str, Any]) -> list[LabelRow]:
    """The label a TRL row carries (its preference or its good/bad flag), from whoever
    ``preference_source`` names; none when it is ``none``."""
    source = options.preference_source
    if source == "none":
        return []
    who = options.preference_annotator
    return [
        LabelRow(
            source=source,
            payload=payload,
            annotator=who if source == "human" else "",
            judge=who if source == "judge" else "",
        )
    ]


def _parse_trl_preference(raw: dict[str, Any], options: RowOptions) -> ItemRow:
    if options.task_type != TaskType.PAIRWISE:
        raise RowError("chosen/rejected rows belong in a pairwise project")
    chosen, rejected = _json_field(raw, "chosen"), _json_field(raw, "rejected")
    if chosen is None or rejected is None:
        raise RowError("a TRL preference row needs both 'chosen' and 'rejected'")
    if raw.get("prompt") is None and "messages" not in raw:
        messages, chosen, rejected = _split_implicit_prompt(chosen, rejected)
        prompt = ""
    else:
        prompt, messages = _prompt_or_messages(raw)
    a, _ = _completion(chosen, "chosen")
    b, _ = _completion(rejected, "rejected")
    labels = _dataset_label(options, {"choice": "A"})
    return _finish(
        raw,
        prompt=prompt,
        messages=messages,
        candidates=[a, b],
        metadata=_metadata(raw, TRL_PAIR_FIELDS | {"messages"}),
        labels=labels,
    )


def _parse_trl_unpaired(raw: dict[str, Any], options: RowOptions) -> ItemRow:
    if options.task_type != TaskType.THUMBS:
        raise RowError("prompt/completion/label rows belong in a thumbs project")
    prompt, messages = _prompt_or_messages(raw)
    candidate, _ = _completion(_json_field(raw, "completion"), "completion")
    label = raw.get("label")
    if isinstance(label, str) and label.lower() in ("true", "false"):
        label = label.lower() == "true"
    if label is not None and not isinstance(label, bool):
        raise RowError("label must be true or false")
    labels = [] if label is None else _dataset_label(options, {"thumb": "up" if label else "down"})
    return _finish(
        raw,
        prompt=prompt,
        messages=messages,
        candidates=[candidate],
        metadata=_metadata(raw, TRL_UNPAIRED_FIELDS | {"messages"}),
        labels=labels,
    )


def _check_candidate_count(n: int, task_type: str) -> None:
    if task_type == TaskType.PAIRWISE and n != 2:
        raise RowError(f"a pairwise item needs exactly 2 candidates; this row has {n}")
    if task_type == TaskType.LISTWISE and not 2 <= n <= 26:
        raise RowError(f"a listwise item needs 2 to 26 candidates; this row has {n}")
    if task_type == TaskType.THUMBS and n != 1:
        raise RowError(f"a thumbs item has exactly 1 candidate; this row has {n}")


def _parse_gold(gold: Any, options: RowOptions, n: int) -> Any:
    if options.task_type == TaskType.PAIRWISE:
        if gold not in PAIRWISE_CHOICES:
            raise RowError(f"gold must be one of {', '.join(PAIRWISE_CHOICES)}; got {gold!r}")
        return gold
    if options.task_type == TaskType.THUMBS:
        if gold not in THUMBS:
            raise RowError("gold must be 'up' or 'down'")
        return gold
    if isinstance(gold, str):
        try:
            gold = orjson.loads(gold)
        except orjson.JSONDecodeError:
            raise RowError("gold must be a ranking: a list of letters, best first") from None
    try:
        return options.schema.validate_ranking(gold, n_candidates=n, strict=False)
    except ValidationError as exc:
        raise RowError(f"gold: {'; '.join(exc.messages)}") from None
