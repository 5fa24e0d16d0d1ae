"""The schema of the LLM tags of an item's prompt, after *Hybrid Preferences* (Miranda et al.,
2024), in Tandem's own words. Pure: no Django, so ``features`` (and the simulation) can use it.

A tag set is stored in ``Item.metadata["tags"]`` as exactly these keys:

- ``domain``: the expertise the request needs, one of :data:`TAG_DOMAINS`;
- ``complexity``: how involved the intent is, an integer 1 (a single simple ask) to 5 (several
  interlocking goals or deep multi-step reasoning);
- ``safety_concern``: whether answering could cause harm or needs care (true / false);
- ``open_ended``: whether many different answers could be good (true) or one is right (false);
- ``format_constraints``: whether the request imposes a format, length or style (true / false).

:func:`tags_validate` is strict: a missing or extra key, a domain outside the list, a complexity
that is not an integer in 1..5 or a flag that is not a JSON boolean makes the whole answer
invalid. Nothing is coerced or guessed.
"""

from typing import Any

TAG_SCHEMA_VERSION = "1"

TAG_DOMAINS = (
    "general",
    "coding",
    "math",
    "science",
    "health",
    "law_finance",
    "humanities",
    "creative_writing",
)
TAG_DOMAIN_HELP = {
    "general": "everyday knowledge, chit-chat, advice that needs no special training",
    "coding": "programming, software, data handling, computer systems",
    "math": "arithmetic, algebra, proofs, statistics, logic puzzles",
    "science": "natural sciences and engineering",
    "health": "medicine, health, psychology, nutrition",
    "law_finance": "law, regulation, finance, economics, business",
    "humanities": "history, philosophy, religion, social sciences, languages and linguistics",
    "creative_writing": "stories, poems, role-play, brainstorming, persuasive or marketing text",
}
TAG_FLAGS = ("safety_concern", "open_ended", "format_constraints")
TAG_KEYS = ("domain", "complexity", *TAG_FLAGS)

TAGS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "domain": {"type": "string", "enum": list(TAG_DOMAINS)},
        "complexity": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "safety_concern": {"type": "boolean"},
        "open_ended": {"type": "boolean"},
        "format_constraints": {"type": "boolean"},
    },
    "required": list(TAG_KEYS),
    "additionalProperties": False,
}


class TagsInvalid(ValueError):
    """A tag answer that does not follow the schema."""


def tags_validate(data: Any) -> dict[str, Any]:
    """The tags in ``data`` if they follow the schema exactly; raises :class:`TagsInvalid`."""
    if not isinstance(data, dict):
        raise TagsInvalid("the tags are not a JSON object")
    missing = [k for k in TAG_KEYS if k not in data]
    extra = sorted(set(data) - set(TAG_KEYS))
    if missing:
        raise TagsInvalid(f"missing keys: {', '.join(missing)}")
    if extra:
        raise TagsInvalid(f"unknown keys: {', '.join(extra)}")
    domain = data["domain"]
    if domain not in TAG_DOMAINS:
        raise TagsInvalid(f"domain {domain!r} is not one of {', '.join(TAG_DOMAINS)}")
    complexity = data["complexity"]
    if isinstance(complexity, bool) or not isinstance(complexity, int) or not 1 <= complexity <= 5:
        raise TagsInvalid(f"complexity {complexity!r} is not an integer from 1 to 5")
    for flag in TAG_FLAGS:
        if not isinstance(data[flag], bool):
            raise TagsInvalid(f"{flag} {data[flag]!r} is not true or false")
    return {key: data[key] for key in TAG_KEYS}
