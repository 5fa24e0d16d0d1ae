"""Checks on untrusted structured input, shared by the API's JSON parser, imported rows and forms.

PostgreSQL stores neither a NUL character nor a lone UTF-16 surrogate in text or JSONB, and deep
nesting exhausts the stack of the code that walks it (JSON encoders, the database's JSONB), so
all three are refused up front with a reason instead of failing deep inside a write.
"""

import re
from typing import Any

from django.conf import settings

# A NUL, or a surrogate code point (only ever "lone" in a Python str).
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class UnsafeInput(ValueError):
    """Input that Tandem refuses to store; the message names where and why."""


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    match = _BAD_TEXT.search(value)
    if match is None:
        return None
    if match.group() == "\x00":
        return "contains a NUL character"
    return "contains a lone surrogate (invalid Unicode)"


def check_text(value: str, name: str, *, max_chars: int | None = None) -> None:
    problem = text_problem(value)
    if problem:
        raise UnsafeInput(f"{name} {problem}")
    if max_chars is not None and len(value) > max_chars:
        raise UnsafeInput(f"{name} is longer than {max_chars:,} characters")


def is_id(value: str) -> bool:
    """Whether ``value`` is a database id: ASCII digits ("²" is a digit to str.isdigit), at
    most 18 of them (a bigint)."""
    return value.isascii() and value.isdigit() and len(value) <= 18


def max_json_depth() -> int:
    return settings.TANDEM_MAX_JSON_DEPTH


def check_json(
    value: Any, name: str = "body", *, max_depth: int | None = None, text: bool = True
) -> None:
    """Refuse containers nested deeper than ``max_depth`` and (with ``text``) strings or keys
    holding a NUL or a lone surrogate. Iterative, so any depth is safe to check."""
    limit = max_json_depth() if max_depth is None else max_depth
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if text and (problem := text_problem(item)):
                raise UnsafeInput(f"{name}: a text value {problem}")
        elif isinstance(item, dict | list):
            if depth >= limit:
                raise UnsafeInput(f"{name} is nested deeper than {limit} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if text and isinstance(key, str) and (problem := text_problem(key)):
                        raise UnsafeInput(f"{name}: a key {problem}")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
