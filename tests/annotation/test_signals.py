"""annotation's signals fire once the write commits, and only then: the seam routing and exports
hang on (DESIGN.md: annotation imports neither)."""

import pytest
from django.db import transaction

from annotation import signals
from annotation.assignment import annotation_submit, assignment_next
from annotation.importer import items_import
from tests.factories import ItemFactory


@pytest.fixture
def received():
    got: list[tuple[str, dict]] = []

    def on_items(sender, **kw):
        got.append(("items", kw))

    def on_labels(sender, **kw):
        got.append(("labels", kw))

    signals.items_added.connect(on_items)
    signals.labels_added.connect(on_labels)
    yield got
    signals.items_added.disconnect(on_items)
    signals.labels_added.disconnect(on_labels)


def _row(i: int, labels: bool = False) -> tuple[int, dict]:
    row = {
        "external_id": f"x{i}",
        "prompt": f"p{i}",
        "candidates": [{"text": "a"}, {"text": "b"}],
    }
    if labels:
        row["labels"] = [{"source": "human", "annotator": "h1", "choice": "A"}]
    return i + 1, row


@pytest.mark.django_db(transaction=True)
def test_import_sends_items_and_labels_after_commit(project, received):
    items_import(project=project, rows=[_row(0, labels=True), _row(1)])
    assert ("items", {"signal": signals.items_added, "project_id": project.pk, "count": 2}) in [
        (k, {**kw}) for k, kw in received
    ]
    labels = [kw for k, kw in received if k == "labels"]
    assert labels == [
        {
            "signal": signals.labels_added,
            "project_id": project.pk,
            "source": "import",
            "item_ids": None,
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_rejected_import_sends_nothing(project, received):
    bad = (2, {"external_id": "y", "prompt": "p", "candidates": []})
    result = items_import(project=project, rows=[_row(0), bad])
    assert not result.written
    assert received == []


@pytest.mark.django_db(transaction=True)
def test_nothing_before_commit(project, received):
    with transaction.atomic():
        items_import(project=project, rows=[_row(0)])
        assert received == []
    assert [k for k, _ in received] == ["items"]


@pytest.mark.django_db(transaction=True)
def test_submit_names_the_item(project, annotator, received):
    item = ItemFactory(project=project)
    lease = assignment_next(project=project, user=annotator)
    annotation_submit(
        assignment_id=lease.pk, user=annotator, payload={"choice": "A"}, idempotency_key="k1"
    )
    # A repeated submit stores nothing and says nothing.
    annotation_submit(
        assignment_id=lease.pk, user=annotator, payload={"choice": "A"}, idempotency_key="k1"
    )
    labels = [kw for k, kw in received if k == "labels"]
    assert [(kw["source"], kw["item_ids"]) for kw in labels] == [("human", [item.pk])]
