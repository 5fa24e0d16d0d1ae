"""Celery tasks of the router's room: thin, by id, idempotent. Named ``routing.tasks.*`` as
before the rooms were split, so that beat schedules and queued messages keep working."""

from typing import Any

from celery import shared_task

from annotation.models import Project
from routing.judges.models import Judge
from routing.router import fitting, loop, tagging
from tandem.task_failures import RecordedFailure


class RoutingWorkTask(RecordedFailure):
    """A routing task that fails records its reason on the project's ``RoutingWork``, so the
    project never looks busy forever (the pipeline shows the error)."""

    failure_argument = "project_id"
    failure_subject = "routing of project"

    def record_failure(self, row_id: int, reason: str) -> None:
        loop.routing_work_fail(project_id=row_id, error=reason)


@shared_task(
    name="routing.tasks.router_model_retrain",
    bind=True,
    autoretry_for=(ConnectionError,),
    max_retries=3,
    retry_backoff=True,
)
def router_model_retrain(self, project_id: int) -> int | None:
    """Fit a new learned-policy model when enough new calibration labels arrived."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None or not fitting.router_model_retrain_due(project=project):
        return None
    model = fitting.router_model_train(project=project)
    return model.version if model else None


@shared_task(name="routing.tasks.project_route_task", base=RoutingWorkTask, acks_late=True)
def project_route_task(project_id: int) -> dict[str, Any]:
    """Advance the project's hybrid loop (``routing.router.loop``): route the unrouted items,
    re-route those whose verdicts are in, ask the judges for automatic runs. Idempotent."""
    return loop.routing_work_execute(project_id=project_id)


@shared_task(name="routing.tasks.router_models_refresh")
def router_models_refresh() -> list[int]:
    """Periodic (Celery beat): retrain the learned policy of every project where enough new
    calibration labels arrived. Polling keeps annotation's write path free of routing work."""
    from routing.router.models import RoutingPolicy

    due = []
    for project_id in RoutingPolicy.objects.filter(active=True, name="learned").values_list(
        "project_id", flat=True
    ):
        router_model_retrain.delay(project_id)
        due.append(project_id)
    return due


@shared_task(name="routing.tasks.judge_tag_items", acks_late=True)
def judge_tag_items(
    project_id: int, judge_name: str | None = None, retag: bool = False
) -> dict[str, Any]:
    """Tag a project's items with LLM tags (``routing.router.tagging``). Idempotent: items already
    tagged by the judge are skipped, and answers come from the response cache when stored."""
    project = Project.objects.get(pk=project_id)
    judge = Judge.objects.get(name=judge_name) if judge_name else None
    return tagging.project_tag_items(project=project, judge=judge, retag=retag).to_dict()
