"""Sections that other apps add to an item's page, so ``annotation`` imports none of them.

The routing app registers its decisions here (``routing.apps``); the item page renders each
registered section's template with the context its function returns.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .models import Item, Project


@dataclass(frozen=True)
class ItemSection:
    title: str
    template: str
    context: dict[str, Any]


SectionFn = Callable[..., ItemSection | None]
_SECTIONS: list[SectionFn] = []


def item_section_register(fn: SectionFn) -> SectionFn:
    """Register ``fn(*, project, item) -> ItemSection | None`` (None: nothing to show)."""
    if fn not in _SECTIONS:
        _SECTIONS.append(fn)
    return fn


def item_sections(*, project: Project, item: Item) -> list[ItemSection]:
    sections = (fn(project=project, item=item) for fn in _SECTIONS)
    return [s for s in sections if s is not None]
