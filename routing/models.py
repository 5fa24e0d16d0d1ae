"""The routing app's models, as Django finds them (``routing.models``). Each room keeps its own:
the judges' in ``judges/models.py``, the router's in ``router/models.py``; both share the app label
``routing`` (and so their tables and migrations).

Routing writes its decisions and judge labels through annotation's models: an LLM label is an
``annotation.Annotation`` with ``source="judge"``, and the router sets ``annotation.Item.route``.
"""

from routing.judges.models import Judge, JudgeItemResult, JudgeResponseCache, JudgeRun  # noqa: F401
from routing.router.models import (  # noqa: F401
    ItemFeatures,
    RouterModel,
    RoutingBudget,
    RoutingDecision,
    RoutingPolicy,
)
