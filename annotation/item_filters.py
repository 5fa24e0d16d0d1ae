"""Filters that other apps add to the item browser, so ``annotation`` imports none of them.

The exports app registers ``provenance`` (where the item's final preference came from) in its
``apps.py``; the browser's form gets one choice field per registered filter, and
``item_browser.item_browse`` adds each chosen one to the items' query. A filter is a condition
on ``Item`` (a subquery, an ``EXISTS``), never a loop over items in Python, so it composes with
the other filters, the search and the keyset pages.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Q


@dataclass(frozen=True)
class ItemFilter:
    """``name`` is the query-string parameter, ``choices`` the values (``(value, label)``, the
    form adds "any"), ``condition(value)`` the condition on ``Item`` for one of those values."""

    name: str
    label: str
    choices: tuple[tuple[str, str], ...]
    condition: Callable[[str], Q]


_FILTERS: dict[str, ItemFilter] = {}


def item_filter_register(item_filter: ItemFilter) -> ItemFilter:
    """Add ``item_filter`` to the browser (again with the same name: replaces it, so a reload
    of the registering app does not add a second field)."""
    _FILTERS[item_filter.name] = item_filter
    return item_filter


def item_filters() -> list[ItemFilter]:
    return list(_FILTERS.values())


def item_filter_get(name: str) -> ItemFilter | None:
    return _FILTERS.get(name)
