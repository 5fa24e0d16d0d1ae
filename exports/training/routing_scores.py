"""A succeeded reward-model job as a router feature: register it, score the project's items.

``reward_routing_register`` (the job page's "Use for routing" button, the API's
``use-for-routing`` action) registers the job on its project through
``routing.router.reward_margins`` (routing keeps the margins; it never imports this app) and
queues ``reward_margins_compute`` on the ``gpu`` queue, where the model is.

``reward_margins_compute`` loads the job's model (``<artifacts>/model``, as ``trainer._save``
wrote it) and scores every pairwise item of the project in batches: the margin
``score(A) - score(B)`` in the item's own letters (``scoring.pair_margins``), the prompt and
responses built as the job's snapshot built them (text or conversational: its manifest says).
Each batch is written (upserted) before the next, with the progress, so a worker killed
mid-way leaves the margins so far, and the task run again (redelivered, ``acks_late``) scores
only the items that have none; registering again replaces every margin.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
from django.db import transaction

from accounts.models import User
from annotation.models import Candidate, Item
from exports.formats.base import ExportItem, FormatOptions, completion_value, prompt_value
from routing.router.models import RewardFeature
from routing.router.reward_margins import (
    items_unscored,
    reward_feature_finish,
    reward_feature_register,
    reward_margins_write,
)
from tandem.errors import Conflict

from .data import MANIFEST
from .jobs import training_job_artifacts
from .models import TrainingJob

logger = logging.getLogger(__name__)

BATCH_ITEMS = 64


def model_key(job: TrainingJob) -> str:
    return f"training-job-{job.pk}"


def reward_routing_register(*, job: TrainingJob, user: User | None) -> RewardFeature:
    """Register ``job`` (a succeeded reward model) on its project's router and queue the
    scoring of its items. Replaces the model registered before, if any."""
    if job.kind != TrainingJob.Kind.REWARD:
        raise Conflict(f"training job {job.pk} is a {job.kind} job: only a reward model scores")
    if job.status != TrainingJob.Status.SUCCEEDED or not job.artifacts:
        raise Conflict(f"training job {job.pk} is {job.status}: register a succeeded one")
    if job.project.task_type != "pairwise":
        raise Conflict("a reward-model margin is for pairwise projects (two candidates)")
    accuracy = ((job.metrics or {}).get("evaluation") or {}).get("all", {}).get("accuracy")
    description = f"reward model of training job {job.pk} (snapshot {job.snapshot_id})"
    if accuracy is not None:
        description += f", test accuracy {accuracy:.3f}"
    feature = reward_feature_register(
        project=job.project,
        model_key=model_key(job),
        training_job_id=job.pk,
        description=description,
        user=user,
    )
    from .tasks import training_reward_margins  # tasks import this module

    transaction.on_commit(lambda: training_reward_margins.delay(feature.pk))
    return feature


def _conversational(artifacts: Path) -> bool:
    path = artifacts / MANIFEST
    if not path.is_file():
        return False
    return bool(orjson.loads(path.read_bytes()).get("conversational"))


def _pairs(item_ids: list[int], options: FormatOptions) -> tuple[list[int], list[tuple]]:
    """(prompt, response A, response B) of the items with two candidates, as the exporter
    shapes them (``exports.formats.base``)."""
    candidates: dict[int, list[dict[str, Any]]] = {}
    for item_id, text, model, metadata in (
        Candidate.objects.filter(item_id__in=item_ids)
        .order_by("item_id", "position")
        .values_list("item_id", "text", "model", "metadata")
    ):
        candidates.setdefault(item_id, []).append(
            {"text": text, "model": model, "metadata": metadata or {}}
        )
    ids, pairs = [], []
    items = Item.objects.filter(pk__in=item_ids).order_by("pk")
    for item in items.only("id", "external_id", "prompt", "messages", "metadata"):
        shown = candidates.get(item.pk, [])
        if len(shown) != 2:
            continue  # no A-versus-B margin to give
        view = ExportItem(
            id=item.pk,
            external_id=item.external_id,
            prompt=item.prompt,
            messages=item.messages,
            metadata=item.metadata or {},
            gold=None,
            candidates=shown,
            preference=None,
        )
        ids.append(item.pk)
        pairs.append((prompt_value(view, options), *(completion_value(c, options) for c in shown)))
    return ids, pairs


def reward_margins_compute(*, feature_id: int, batch_items: int = BATCH_ITEMS) -> str | None:
    """Score the registration's unscored items in batches, then mark it ready (or failed with
    the reason). A registration no longer scoring (ended, or replaced) is left as it is."""
    from .scoring import pair_margins, scorer_load

    feature = RewardFeature.objects.filter(pk=feature_id).first()
    if feature is None or feature.status != RewardFeature.Status.SCORING:
        return feature.status if feature else None
    try:
        job = TrainingJob.objects.get(pk=feature.training_job_id)
        artifacts = training_job_artifacts(job)
        if artifacts is None:
            raise Conflict(f"training job {job.pk} has no artifacts")
        scorer = scorer_load(artifacts / "model")
        options = FormatOptions(conversational=_conversational(artifacts))
        todo = list(items_unscored(feature=feature))
        for start in range(0, len(todo), batch_items):
            ids, pairs = _pairs(todo[start : start + batch_items], options)
            margins = dict(zip(ids, pair_margins(scorer, pairs), strict=True))
            if not reward_margins_write(feature=feature, margins=margins):
                return "replaced"
    except Exception as exc:  # the reason is kept for the routing page, then re-raised
        logger.exception("scoring reward margins of %s failed", feature)
        reward_feature_finish(feature=feature, error=f"{type(exc).__name__}: {exc}")
        raise
    ended = reward_feature_finish(feature=feature)
    return ended.status if ended else "replaced"
