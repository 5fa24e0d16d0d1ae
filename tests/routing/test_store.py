"""Verdicts are stored once however often a batch is written (COPY path and ORM path)."""

import pytest
from django.db import connection
from django.utils import timezone

from annotation.models import Annotation
from routing.judges import store
from routing.judges.models import JudgeResponseCache
from routing.judges.providers import JudgeResponse
from routing.judges.runner import orders_count, presentation_orders
from tests.routing.conftest import make_items

pytestmark = pytest.mark.django_db


def verdicts(items):
    return [
        store.Verdict(
            item_id=item.pk,
            order=order,
            key=f"judge:7:{item.pk}:{order}",
            payload={"choice": "A"},
            raw_output='{"choice": "A"}',
            confidence=0.9,
            metadata={"parse_status": "ok", "cost": "0.000001", "cached": False},
        )
        for item in items
        for order in ("AB", "BA")
    ]


@pytest.mark.parametrize("path", ["copy", "orm"])
def test_a_batch_written_twice_is_stored_once(pairwise_project, path, monkeypatch):
    if path == "copy" and connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    if path == "orm":
        monkeypatch.setattr(
            store, "_store_copy", lambda ref, v, c, now: store._store_orm(ref, v, c)
        )
    items = make_items(pairwise_project, 3)
    ref = store.RunRef(project_id=pairwise_project.pk, run_id=7, judge="j")
    batch = verdicts(items)
    answer = JudgeResponse(text="x", logprobs=[("A", -0.1)])
    cache = [
        ("k1", "openai", "m", answer),
        ("k1", "openai", "m", answer),
        ("k2", "openai", "m", answer),
    ]

    first = store.verdicts_store(ref, batch, cache, now=timezone.now())
    again = store.verdicts_store(
        ref, batch[:2] + verdicts(make_items(pairwise_project, 1)), cache, now=timezone.now()
    )

    assert first == {v.key for v in batch}
    assert len(again) == 2  # only the new item's two orders
    stored = Annotation.objects.filter(judge_run_id=7)
    assert stored.count() == 8
    one = stored.get(idempotency_key=batch[0].key)
    assert (one.source, one.judge, one.order, one.payload) == ("judge", "j", "AB", {"choice": "A"})
    assert one.confidence == 0.9 and one.metadata["parse_status"] == "ok"
    assert JudgeResponseCache.objects.count() == 2
    assert JudgeResponse.from_dict(JudgeResponseCache.objects.get(key="k1").response) == answer


def test_orders_count_is_the_number_of_orders_drawn():
    import random

    for n in range(1, 6):
        for permutations in range(1, 9):
            for mode in ("both", "random"):
                drawn = presentation_orders(
                    n, order_mode=mode, permutations=permutations, rng=random.Random(n)
                )
                assert orders_count(n, order_mode=mode, permutations=permutations) == len(drawn)
