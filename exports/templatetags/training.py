"""``{% load training %}``: what the Train form beside a snapshot offers."""

from django import template
from django.conf import settings

from exports.training.data import KIND_FORMATS
from exports.training.models import TrainingJob

register = template.Library()


@register.filter
def training_kinds(snapshot_format: str) -> list[tuple[str, str]]:
    """(kind, label) of the jobs that train on a snapshot of this format."""
    return [
        (value, label)
        for value, label in TrainingJob.Kind.choices
        if snapshot_format in KIND_FORMATS[value]
    ]


@register.simple_tag
def training_base_model_default() -> str:
    return settings.TRAINING_BASE_MODEL


@register.simple_tag
def training_results(project) -> dict[int, TrainingJob]:
    """The latest succeeded job of each snapshot of the project (one query), by snapshot id."""
    jobs = (
        TrainingJob.objects.filter(project=project, status=TrainingJob.Status.SUCCEEDED)
        .exclude(snapshot=None)
        .only("id", "snapshot_id", "kind", "metrics", "project_id")
        .order_by("snapshot_id", "-id")
    )
    latest: dict[int, TrainingJob] = {}
    for job in jobs:
        latest.setdefault(job.snapshot_id, job)
    return latest


@register.filter
def training_result(results: dict | None, snapshot_id: int) -> TrainingJob | None:
    return (results or {}).get(snapshot_id)
