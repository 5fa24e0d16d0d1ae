"""Who labels an item: the route names, defined once.

``Item.route`` holds one of them (the router writes it, assignment reads it), and the router's
policies and ``RoutingDecision.target`` use the same values (every route but ``unrouted``), so
the names live here, in a module with no models that anything may import (the policies and the
pure simulation included).
"""

from typing import Any

from django.db import models

from .signals import unrouted_items_held


class Route(models.TextChoices):
    """Who labels the item; written by the router (routing app), read by assignment."""

    UNROUTED = "unrouted", "Not routed yet"
    HUMAN = "human", "People"
    JUDGE = "judge", "LLM judge"
    BOTH = "both", "People and LLM judge"


# The targets a routing decision may name (every route but "unrouted").
TARGETS = (Route.HUMAN.value, Route.JUDGE.value, Route.BOTH.value)
TARGET_CHOICES = [(r.value, r.label) for r in (Route.HUMAN, Route.JUDGE, Route.BOTH)]
# Targets whose items people label (and which spend the human budget).
PEOPLE_TARGETS = (Route.HUMAN.value, Route.BOTH.value)
# Targets whose items the judges label.
JUDGE_TARGETS = (Route.JUDGE.value, Route.BOTH.value)

# The routes whose items people label. The one place that says so: the assignment service, the
# queue indexes and the progress counts all read it. ``unrouted`` is in so that projects without
# a routing policy work; changing it needs a migration for the two pool indexes. A project whose
# unrouted items wait for routing (``signals.unrouted_items_held``) uses PEOPLE_TARGETS, a
# subset, so the same indexes serve it.
HUMAN_ROUTES = (Route.UNROUTED.value, *PEOPLE_TARGETS)


def people_routes(project: Any) -> tuple[str, ...]:
    """The routes whose items people may be given in ``project``: ``HUMAN_ROUTES``, or without
    ``unrouted`` while the project's new items wait for routing (asked once per instance)."""
    held = getattr(project, "_unrouted_held", None)
    if held is None:
        held = unrouted_items_held(project_id=project.pk)
        project._unrouted_held = held
    return PEOPLE_TARGETS if held else HUMAN_ROUTES
