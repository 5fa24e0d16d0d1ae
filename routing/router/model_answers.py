"""The judges' answers per candidate model across a project: what ``features.model_rates`` turns
into each judge's rate of each model, and ``features.with_model_strengths`` into the
``model_pick_*`` features of the items being routed or fitted.

One aggregate query over the project's current decisive judge answers (each presentation order an
answer) joined to the pair's two candidates: one row per (judge, model) with the answers that
picked the model (``wins``) and all answers on pairs with it (``seen``); unnamed models ("") are
dropped by ``model_rates``. Projects that are not pairwise have no rates. About 1.1 s at 100,000
items with 200,000 judge answers: the router runs it when a model is fitted (the model keeps the
rates) and for rules that name a ``model_pick_*`` feature, not for every routing.
"""

from collections.abc import Sequence

import pandas as pd
from django.db.models import Count, F, Q

from annotation.models import Annotation, Project
from annotation.schema import TaskType


def model_answers(*, project: Project, judges: Sequence[str]) -> pd.DataFrame:
    """``model_rates``'s input for ``project``: columns judge, model, wins, seen."""
    columns = ["judge", "model", "wins", "seen"]
    if project.task_type != TaskType.PAIRWISE or not judges:
        return pd.DataFrame(columns=columns)
    picked = Q(item__candidates__position=0, payload__choice="A") | Q(
        item__candidates__position=1, payload__choice="B"
    )
    rows = (
        Annotation.objects.filter(
            project=project,
            source=Annotation.Source.JUDGE,
            superseded_by__isnull=True,
            judge__in=list(judges),
            payload__choice__in=["A", "B"],
        )
        .values("judge", name=F("item__candidates__model"))
        .annotate(wins=Count("id", filter=picked), seen=Count("id"))
        .values_list("judge", "name", "wins", "seen")
    )
    return pd.DataFrame(list(rows), columns=columns)
