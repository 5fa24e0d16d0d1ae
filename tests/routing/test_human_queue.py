"""The router's decisions drive the people's queue: only items routed to people are leased."""

import pytest

from annotation.assignment import annotation_submit, assignment_next
from annotation.models import Item
from routing.router import route
from tests.factories import ItemFactory


@pytest.mark.django_db
def test_people_get_only_the_items_the_router_sends_them(project, annotator):
    items = [ItemFactory(project=project) for _ in range(5)]
    route.routing_policy_set(project=project, name="all_human", budget_count=2, calibration_share=0)
    assert route.project_route(project=project).counts() == {"human": 2, "judge": 3, "both": 0}
    for_people = set(
        Item.objects.filter(project=project, route=Item.Route.HUMAN).values_list("id", flat=True)
    )
    assert len(for_people) == 2 and for_people <= {i.pk for i in items}

    served = set()
    while (lease := assignment_next(project=project, user=annotator)) is not None:
        served.add(lease.item_id)
        annotation_submit(
            assignment_id=lease.pk,
            user=annotator,
            payload={"choice": "A"},
            idempotency_key=str(lease.pk),
        )
    assert served == for_people
