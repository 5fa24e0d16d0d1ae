"""Fixtures of the export tests: labelled projects built through the factories and services."""

import pytest

from annotation.models import Annotation
from exports.preferences import preferences_recompute
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory
from tests.routing.factories import item_with_labels


@pytest.fixture(autouse=True)
def exports_root(settings, tmp_path):
    settings.EXPORTS_ROOT = tmp_path / "exports"
    return settings.EXPORTS_ROOT


def labelled(project, humans=(), judges=None, **kw):
    """An item with human labels (external annotators h0, h1, ...) and judge labels."""
    return item_with_labels(project, humans=humans, judges=judges, **kw)


@pytest.fixture
def pairwise(project):
    """``project`` (overlap 3) with items of every kind of final label.

    Prompts: p-shared is shared by two items (they must land in the same split)."""
    project.overlap = 3
    project.save(update_fields=["overlap"])
    both = [("AB", "A", 0.9), ("BA", "A", 0.8)]
    items = {
        "a": labelled(project, humans=["A", "A", "B"], metadata={"dataset": "pandalm"}),
        "b": labelled(project, humans=["B", "B", "B"], metadata={"license": "cc-by-4.0"}),
        "tie": labelled(project, humans=["tie", "tie", "A"]),
        "both_bad": labelled(project, humans=["both_bad", "both_bad", "both_bad"]),
        "open": labelled(project, humans=["A", "B"]),
        "judge": labelled(project, judges={"gpt": both}),
        "hybrid": labelled(project, humans=["A", "A", "A"], judges={"gpt": both}),
        "flip": labelled(
            project, humans=["B", "B", "A"], judges={"gpt": [("AB", "A", None), ("BA", "A", None)]}
        ),
    }
    for key in ("a", "b"):
        items[key].prompt = "p-shared"
        items[key].save(update_fields=["prompt"])
    # Strength and rationale on a label, and a label of a user (not an imported name).
    label = Annotation.objects.filter(item=items["a"]).first()
    AnnotationFactory(
        item=items["a"],
        external_annotator=label.external_annotator,
        payload={"choice": "A", "strength": 2, "rationale": "clearer"},
        time_spent_ms=1234,
        supersedes=label,
        metadata={"session": "s1"},
    )
    preferences_recompute(project=project)
    return items


@pytest.fixture
def thumbs(db):
    project = ProjectFactory(task_type="thumbs", overlap=1)
    up = ItemFactory(project=project)
    down = ItemFactory(project=project)
    AnnotationFactory(item=up, external_annotator="h", payload={"thumb": "up"})
    AnnotationFactory(item=down, external_annotator="h", payload={"thumb": "down"})
    preferences_recompute(project=project)
    return project


@pytest.fixture
def listwise(db):
    project = ProjectFactory(task_type="listwise", overlap=1)
    item = ItemFactory(project=project)
    AnnotationFactory(item=item, external_annotator="h", payload={"ranking": ["C", "A", "B"]})
    tied = ItemFactory(project=project)
    AnnotationFactory(item=tied, external_annotator="h", payload={"ranking": [["B", "C"], "A"]})
    preferences_recompute(project=project)
    return project


@pytest.fixture
def chat(db):
    """A pairwise project whose items are conversations."""
    project = ProjectFactory(overlap=1)
    item = ItemFactory(
        project=project,
        prompt="",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
        ],
    )
    AnnotationFactory(item=item, external_annotator="h", payload={"choice": "B"})
    preferences_recompute(project=project)
    return project
