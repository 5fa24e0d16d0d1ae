"""The routing app's Celery tasks, as Celery's autodiscovery finds them (``routing.tasks``): each
room keeps its own in ``judges/tasks.py`` and ``router/tasks.py``."""

from routing.judges.tasks import judge_run_execute  # noqa: F401
from routing.router.tasks import (  # noqa: F401
    judge_tag_items,
    project_route_task,
    router_model_retrain,
    router_models_refresh,
)
