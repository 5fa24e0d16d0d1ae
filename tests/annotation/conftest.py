"""The worked pairwise example of the quality tests (table in tests/annotation/test_quality.py)."""

import pytest

from annotation.models import Annotation, Assignment
from tests.factories import (
    AnnotationFactory,
    AssignmentFactory,
    ItemFactory,
    ProjectFactory,
    UserFactory,
)

PAIRWISE = {
    # item: (candidate texts, gold, {annotator: (choice, order)}, judge (AB, BA))
    "i1": (["aaaa", "bb"], "A", {"ann1": ("A", "AB"), "ann2": ("A", "BA"), "ann3": ("B", "AB")}),
    "i2": (["a", "bbb"], "B", {"ann1": ("B", "AB"), "ann2": ("tie", "AB"), "ann3": ("B", "BA")}),
    "i3": (
        ["aa", "bb"],
        None,
        {"ann1": ("A", "BA"), "ann2": ("A", "AB"), "ann3": ("both_bad", "AB")},
    ),
    "i4": (["aaa", "b"], None, {"ann1": ("A", "AB"), "ann2": ("B", "BA"), "ann3": ("tie", "AB")}),
}
JUDGE = {"i1": ("A", "A"), "i2": ("A", "B"), "i3": (None, "A"), "i4": ("tie", "tie")}


@pytest.fixture
def worked(db):
    """Three annotators and a judge on four pairwise items; see test_quality.py."""
    return worked_project()


def worked_project():
    """The ``worked`` project, for tests that need it committed (``transactional_db``)."""
    project = ProjectFactory(label_schema={"allow_tie": True, "allow_both_bad": True})
    users = {name: UserFactory(username=name) for name in ("ann1", "ann2", "ann3")}
    for n, (external_id, (texts, gold, labels)) in enumerate(PAIRWISE.items()):
        item = ItemFactory(project=project, external_id=external_id, candidates=texts, gold=gold)
        for name, (choice, order) in labels.items():
            previous = None
            if external_id == "i1" and name == "ann3":
                previous = AnnotationFactory(
                    item=item, annotator=users[name], payload={"choice": "A"}, order=order
                )
            AnnotationFactory(
                item=item,
                annotator=users[name],
                payload={"choice": choice},
                order=order,
                time_spent_ms=(n + 1) * 1000,
                supersedes=previous,
            )
        for choice, order in zip(JUDGE[external_id], ("AB", "BA"), strict=True):
            AnnotationFactory(
                item=item,
                source=Annotation.Source.JUDGE,
                judge="j1",
                payload={"choice": choice},
                order=order,
            )
    skipped = ItemFactory(project=project, external_id="i5")
    AssignmentFactory(item=skipped, annotator=users["ann1"], status=Assignment.Status.SKIPPED)
    return project
