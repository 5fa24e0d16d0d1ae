"""A reward model's margins as a router feature: registration, writing and reading.

Routing does not know how a reward model is trained or run (that is the exports app's
``exports.training.routing_scores``, which imports this module, never the reverse). It keeps one
registration per project (``RewardFeature``) and one margin per item and model
(``ItemRewardMargin``), and gives the router a Series of signed margins
(``score(A) - score(B)``) that ``features.with_reward_margins`` turns into the ``rm_*`` features.

Idempotence: a registration names its model by ``model_key``; margins are upserted on
(item, model_key), so a retried batch overwrites; the scorer skips items that already have a
margin of that key, so a killed run resumes where it stopped; registering again (the same model
or another) deletes the project's margins first, so a re-run replaces them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from annotation.models import Item, Project
from tandem.errors import Conflict

from .models import ItemRewardMargin, RewardFeature

S = RewardFeature.Status


def reward_feature_register(
    *,
    project: Project,
    model_key: str,
    training_job_id: int,
    description: str = "",
    user: User | None = None,
) -> RewardFeature:
    """Register a reward model on ``project`` (replacing any other) and clear its margins; the
    caller then scores the items (status ``scoring`` until ``reward_feature_finish``)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        ItemRewardMargin.objects.filter(item__project=project).delete()
        feature, _ = RewardFeature.objects.update_or_create(
            project=project,
            defaults={
                "model_key": model_key,
                "training_job_id": training_job_id,
                "description": description[:300],
                "status": S.SCORING,
                "scored": 0,
                "total": Item.objects.filter(project=project).count(),
                "error": "",
                "registered_by": user,
                "registered_at": timezone.now(),
                "finished_at": None,
            },
        )
    return feature


def reward_feature_get(*, project: Project) -> RewardFeature | None:
    return RewardFeature.objects.filter(project=project).first()


def items_unscored(*, feature: RewardFeature) -> Sequence[int]:
    """Ids of the project's items with no margin of the feature's model, in id order."""
    scored = ItemRewardMargin.objects.filter(
        item__project_id=feature.project_id, model_key=feature.model_key
    ).values("item_id")
    return list(
        Item.objects.filter(project_id=feature.project_id)
        .exclude(pk__in=scored)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def reward_margins_write(*, feature: RewardFeature, margins: Mapping[int, float]) -> bool:
    """Upsert one batch of margins and count it; False (nothing written) when the project has
    meanwhile registered another model or the registration was removed: the scorer stops."""
    with transaction.atomic():
        current = RewardFeature.objects.select_for_update().filter(pk=feature.pk).first()
        if current is None or current.model_key != feature.model_key or current.status != S.SCORING:
            return False
        # The count grows by the batch's items that had no margin yet (a retried batch adds
        # none): a query on the batch's ids, not a count over the whole project per batch.
        had = set(
            ItemRewardMargin.objects.filter(
                model_key=current.model_key, item_id__in=list(margins)
            ).values_list("item_id", flat=True)
        )
        ItemRewardMargin.objects.bulk_create(
            [
                ItemRewardMargin(item_id=item_id, model_key=feature.model_key, margin=margin)
                for item_id, margin in margins.items()
            ],
            update_conflicts=True,
            unique_fields=["item", "model_key"],
            update_fields=["margin", "computed_at"],
        )
        current.scored += len(margins.keys() - had)
        current.save(update_fields=["scored", "updated_at"])
    return True


def reward_feature_finish(*, feature: RewardFeature, error: str = "") -> RewardFeature | None:
    """End the scoring: ``ready``, or ``failed`` with ``error``. Only the registration that is
    still current is ended (a replaced one's scorer changes nothing)."""
    with transaction.atomic():
        current = RewardFeature.objects.select_for_update().filter(pk=feature.pk).first()
        if current is None or current.model_key != feature.model_key:
            return None
        if current.status != S.SCORING:
            raise Conflict(f"the reward feature is {current.status}, not scoring")
        current.status = S.FAILED if error else S.READY
        current.error = error[:4000]
        current.finished_at = timezone.now()
        current.save(update_fields=["status", "error", "finished_at", "updated_at"])
    return current


def reward_margins_get(*, project: Project, item_ids: Sequence[int]) -> pd.Series | None:
    """Signed margins of the registered model for ``item_ids`` (NaN: not scored yet); None when
    the project has no reward model registered. Margins are read while scoring goes on too:
    the items scored so far have theirs, the rest are missing."""
    feature = reward_feature_get(project=project)
    if feature is None:
        return None
    rows = ItemRewardMargin.objects.filter(
        item_id__in=list(item_ids), model_key=feature.model_key
    ).values_list("item_id", "margin")
    return pd.Series(dict(rows), dtype=float).reindex(list(item_ids))
