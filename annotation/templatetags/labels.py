"""``{{ annotation.payload|label_text }}``: a label as people read it, never a Python dict.

Plain text only (Django escapes it): ``A better (much better)``, ``tie``, ``B > A = C``,
``thumbs up``, ``no answer parsed``.
"""

from typing import Any

from django import template

register = template.Library()

CHOICE_TEXT = {"A": "A better", "B": "B better", "tie": "tie", "both_bad": "both bad"}


def ranking_text(ranking: list[Any]) -> str:
    """``["B", ["A", "C"]]`` -> ``B > A = C``."""
    parts = []
    for entry in ranking:
        parts.append(" = ".join(entry) if isinstance(entry, list) else str(entry))
    return " > ".join(parts)


@register.filter
def label_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "no answer parsed" if payload is None else str(payload)
    if "ranking" in payload:
        ranking = payload["ranking"]
        return ranking_text(ranking) if ranking else "no answer parsed"
    if "thumb" in payload:
        thumb = payload["thumb"]
        return f"thumbs {thumb}" if thumb else "no answer parsed"
    if "choice" in payload:
        choice = payload["choice"]
        if choice is None:
            return "no answer parsed"
        text = CHOICE_TEXT.get(choice, str(choice))
        if payload.get("strength") is not None and choice in ("A", "B"):
            text += f" (strength {payload['strength']})"
        return text
    return "no answer parsed"


@register.filter
def aspects_text(payload: Any) -> str:
    """``helpfulness: A, honesty: tie``; empty when the label has no aspects."""
    aspects = payload.get("aspects") if isinstance(payload, dict) else None
    if not aspects:
        return ""
    return ", ".join(f"{name}: {value}" for name, value in aspects.items())
