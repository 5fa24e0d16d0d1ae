"""Splits by prompt: every item goes to the split its prompt hashes into, with the seed.

Items that share a prompt (the same text, or the same conversation) share a split, so no prompt
is ever in two splits; the assignment depends only on the prompt, the seed and the fractions, so
it is stable across re-exports, however the data grows. Fractions are met in expectation (each
prompt is one draw), not exactly.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from tandem.errors import InvalidInput

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_SPLITS = {"train": 1.0}


def splits_parse(value: str | dict[str, Any] | None) -> dict[str, float]:
    """``"train=0.9,test=0.1"`` or ``{"train": 0.9, "test": 0.1}`` -> ordered fractions."""
    if value in (None, "", {}):
        return dict(DEFAULT_SPLITS)
    pairs: list[tuple[str, Any]]
    if isinstance(value, str):
        try:
            pairs = [tuple(p.split("=", 1)) for p in value.split(",")]  # type: ignore[misc]
        except ValueError:
            pairs = []
        if not pairs or any(len(p) != 2 for p in pairs):
            raise InvalidInput("splits: name=fraction pairs, e.g. train=0.9,test=0.1")
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise InvalidInput("splits: name=fraction pairs, e.g. train=0.9,test=0.1")
    out: dict[str, float] = {}
    for name, fraction in pairs:
        name = str(name).strip()
        try:
            number = float(fraction)
        except (TypeError, ValueError):
            number = -1.0
        if not _NAME.match(name) or name in out or not 0.0 < number <= 1.0:
            raise InvalidInput(
                "splits: distinct names (lower-case letters, digits, _ and -) with fractions "
                "above 0",
                details={"splits": str(value)},
            )
        out[name] = number
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise InvalidInput("splits: the fractions must add up to 1", details={"splits": out})
    return out


def prompt_key(prompt: str, messages: list[dict[str, str]] | None) -> str:
    """What makes two prompts the same: the text (or conversation), whitespace trimmed."""
    if messages:
        return orjson.dumps([[m["role"], m["content"].strip()] for m in messages]).decode()
    return prompt.strip()


class Splitter:
    def __init__(self, splits: dict[str, float], seed: int) -> None:
        self.names = list(splits)
        self.bounds = []
        total = 0.0
        for fraction in splits.values():
            total += fraction
            self.bounds.append(total)
        self.bounds[-1] = 1.0
        self.salt = f"{seed}\x00".encode()

    def split_of(self, key: str) -> str:
        if len(self.names) == 1:
            return self.names[0]
        digest = hashlib.blake2b(self.salt + key.encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        for name, bound in zip(self.names, self.bounds, strict=True):
            if u < bound:
                return name
        return self.names[-1]
