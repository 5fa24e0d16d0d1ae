"""Judge answers -> label payloads in the item's own letters, or an honest "could not parse".

The judge names candidates by the letters it was SHOWN (``order="BA"`` shows item letter B as
"A"); payloads always use the item's own letters, so every shown letter is mapped back here. An
answer that does not parse, or a refusal, is recorded as such (choice null, raw text kept) and is
never guessed from stray words.
"""

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from annotation.schema import LabelSchema, TaskType, letters
from routing.judges.providers import JudgeResponse

OK = "ok"
UNPARSED = "unparsed"
REFUSAL = "refusal"

TAG = r"<{name}>\s*(.*?)\s*</{name}>"
ASPECT_TAG = re.compile(r'<aspect\s+name="([^"]+)">\s*(.*?)\s*</aspect>', re.DOTALL)
FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
VERDICT_KEY = {TaskType.PAIRWISE: "choice", TaskType.LISTWISE: "ranking", TaskType.THUMBS: "thumb"}


class ParseError(ValueError):
    pass


@dataclass
class Verdict:
    status: str
    payload: dict[str, Any]
    error: str = ""
    confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def empty_payload(task_type: str) -> dict[str, Any]:
    return {VERDICT_KEY[task_type]: None}


def to_item_letter(shown_letter: Any, order: str) -> str:
    """Shown letter -> the item's own letter (``order[i]`` is the item letter shown i-th)."""
    if not isinstance(shown_letter, str) or len(shown_letter.strip()) != 1:
        raise ParseError(f"{shown_letter!r} is not a candidate letter")
    index = ord(shown_letter.strip().upper()) - ord("A")
    if not 0 <= index < len(order):
        raise ParseError(f"{shown_letter!r} names no candidate shown")
    return order[index]


def _map_choice(value: Any, order: str) -> Any:
    if isinstance(value, str) and value.strip() in ("tie", "both_bad"):
        return value.strip()
    return to_item_letter(value, order)


def load_json_answer(text: str) -> dict[str, Any]:
    """A JSON object answer, bare or in a ``` fence; ParseError otherwise. Judges and tagging
    read JSON answers through this one function."""
    match = FENCE.match(text)
    body = match.group(1) if match else text.strip()
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ParseError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParseError("the JSON answer is not an object")
    return data


def _tag(text: str, name: str) -> str | None:
    found = re.findall(TAG.format(name=name), text, flags=re.DOTALL | re.IGNORECASE)
    if len(found) > 1 and len(set(found)) > 1:
        raise ParseError(f"conflicting <{name}> answers")
    return found[0] if found else None


def _ranking_from_text(value: str) -> list[Any]:
    ranking: list[Any] = []
    for group in value.split(">"):
        names = [part.strip() for part in group.split("=")]
        if any(not n for n in names):
            raise ParseError(f"cannot read ranking {value!r}")
        ranking.append(names[0] if len(names) == 1 else names)
    return ranking


def _from_tags(text: str, task_type: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    key = VERDICT_KEY[task_type]
    value = _tag(text, key)
    if value is None:
        raise ParseError(f"no <{key}> in the answer")
    if task_type == TaskType.LISTWISE:
        data["ranking"] = _ranking_from_text(value)
    else:
        data[key] = value
    strength = _tag(text, "strength")
    if strength not in (None, "", "none", "null"):
        if not strength.isdigit():
            raise ParseError(f"strength {strength!r} is not a whole number")
        data["strength"] = int(strength)
    aspects = dict(ASPECT_TAG.findall(text))
    if aspects:
        data["aspects"] = aspects
    rationale = _tag(text, "rationale")
    if rationale:
        data["rationale"] = rationale
    return data


def _structured(response: JudgeResponse, mode: str, task_type: str) -> dict[str, Any]:
    if response.structured is not None:
        return response.structured
    if mode == "text":
        try:
            return _from_tags(response.text, task_type)
        except ParseError as tag_error:
            try:
                return load_json_answer(response.text)
            except ParseError:
                raise tag_error from None
    return load_json_answer(response.text)


def _to_item_letters(data: dict[str, Any], task_type: str, order: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if task_type == TaskType.PAIRWISE:
        if data.get("choice") is None:
            raise ParseError("no choice in the answer")
        out["choice"] = _map_choice(data["choice"], order)
        if data.get("strength") is not None and out["choice"] not in ("tie", "both_bad"):
            out["strength"] = data["strength"]
    elif task_type == TaskType.LISTWISE:
        ranking = data.get("ranking")
        if not isinstance(ranking, list) or not ranking:
            raise ParseError("no ranking in the answer")
        out["ranking"] = [
            [to_item_letter(x, order) for x in entry]
            if isinstance(entry, list)
            else to_item_letter(entry, order)
            for entry in ranking
        ]
    else:
        thumb = data.get("thumb")
        out["thumb"] = thumb.strip().lower() if isinstance(thumb, str) else thumb
    aspects = data.get("aspects")
    if aspects:
        if not isinstance(aspects, dict):
            raise ParseError("aspects is not an object")
        mapped = {}
        for name, value in aspects.items():
            is_letter = isinstance(value, str) and value.strip() in letters(len(order))
            mapped[name] = to_item_letter(value, order) if is_letter else value
        out["aspects"] = mapped
    if isinstance(data.get("rationale"), str) and data["rationale"].strip():
        out["rationale"] = data["rationale"].strip()
    return out


def _verdict_offset(text: str, task_type: str) -> int | None:
    """Where the verdict's first character sits in the raw text (for its token's logprob)."""
    key = VERDICT_KEY[task_type]
    patterns = [
        rf'"{key}"\s*:\s*\[?\s*"\s*([^"\s])',
        rf"<{key}>\s*(\S)",
    ]
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            return match.start(1)
    return None


def verdict_confidence(response: JudgeResponse, task_type: str) -> float | None:
    """exp(logprob) of the token that carries the verdict, when the API gave log-probabilities."""
    if not response.logprobs:
        return None
    offset = _verdict_offset(response.text, task_type)
    if offset is None:
        return None
    position = 0
    for token, logprob in response.logprobs:
        if position <= offset < position + len(token):
            return math.exp(logprob)
        position += len(token)
    return None


def verdict_parse(
    *, response: JudgeResponse, schema: LabelSchema, order: str, output_mode: str
) -> Verdict:
    task_type = schema.task_type
    if response.refusal or response.finish_reason in ("refusal", "content_filter"):
        reason = response.refusal or response.finish_reason
        return Verdict(REFUSAL, empty_payload(task_type), error=f"refused: {reason}"[:500])
    try:
        data = _structured(response, output_mode, task_type)
        mapped = _to_item_letters(data, task_type, order)
        payload = schema.validate_label(mapped, n_candidates=len(order), strict=False)
    except ParseError as exc:
        return Verdict(UNPARSED, empty_payload(task_type), error=str(exc)[:500])
    except ValidationError as exc:
        return Verdict(UNPARSED, empty_payload(task_type), error="; ".join(exc.messages)[:500])
    if payload.get(VERDICT_KEY[task_type]) is None:
        return Verdict(UNPARSED, empty_payload(task_type), error="no verdict in the answer")
    return Verdict(OK, payload, confidence=verdict_confidence(response, task_type))
