"""Undo and corrections: a new label supersedes the old one (never an overwrite), within the
undo window from the workspace, any time from My labels; only the labeller may correct."""

import pytest
from django.test import Client
from django.utils import timezone

from annotation import assignment as assignment_service
from annotation.models import Annotation, Assignment, Item
from tandem.errors import Conflict, InvalidInput, NotFound
from tests.factories import ItemFactory, ProjectFactory, UserFactory
from tests.pages import client_for

pytestmark = pytest.mark.django_db


def label(project, user, choice="A"):
    lease = assignment_service.assignment_next(project=project, user=user)
    result = assignment_service.annotation_submit(
        assignment_id=lease.pk,
        user=user,
        payload={"choice": choice},
        idempotency_key=f"k{lease.pk}",
    )
    return result.annotation


def test_correct_supersedes_and_is_idempotent(project, annotator):
    ItemFactory(project=project)
    old = label(project, annotator)
    done_before = Item.objects.get(pk=old.item_id).human_done
    new = assignment_service.annotation_correct(
        annotation_id=old.pk, user=annotator, payload={"choice": "B"}, idempotency_key="fix-1"
    ).annotation
    assert new.supersedes_id == old.pk and new.payload == {"choice": "B"}
    assert new.order == old.order and new.assignment_id == old.assignment_id
    old.refresh_from_db()
    assert old.payload == {"choice": "A"}  # kept, never overwritten
    again = assignment_service.annotation_correct(
        annotation_id=old.pk, user=annotator, payload={"choice": "B"}, idempotency_key="fix-1"
    )
    assert again.created is False and again.annotation.pk == new.pk
    with pytest.raises(Conflict, match="corrected already"):
        assignment_service.annotation_correct(
            annotation_id=old.pk, user=annotator, payload={"choice": "tie"}, idempotency_key="fix-2"
        )
    with pytest.raises(InvalidInput):
        assignment_service.annotation_correct(
            annotation_id=new.pk, user=annotator, payload={"choice": "Z"}, idempotency_key="fix-3"
        )
    with pytest.raises(NotFound):
        assignment_service.annotation_correct(
            annotation_id=new.pk, user=UserFactory(), payload={"choice": "A"}, idempotency_key="x"
        )
    assert Item.objects.get(pk=old.item_id).human_done == done_before
    assert Annotation.objects.count() == 2


def test_undo_in_the_workspace_within_its_window(project, annotator):
    ItemFactory.create_batch(2, project=project)
    client = client_for(annotator)
    first = client.post(f"/projects/{project.pk}/work/next/", HTTP_HX_REQUEST="true")
    lease = Assignment.objects.get(annotator=annotator)
    submitted = client.post(
        f"/projects/{project.pk}/work/{lease.pk}/submit/",
        {"verdict": "L:1", "idempotency_key": "s1"},
        HTTP_HX_REQUEST="true",
    )
    assert first.status_code == 200 and 'data-action="undo"' in submitted.content.decode()
    original = Annotation.objects.get()

    undo = client.post(f"/projects/{project.pk}/work/undo/", HTTP_HX_REQUEST="true")
    html = undo.content.decode()
    assert undo.status_code == 200 and f'data-correcting="{original.pk}"' in html
    assert 'value="L:1" data-key="2" required checked' in html  # answered as it was
    assert "skip-dialog" not in html
    fixed = client.post(
        f"/projects/{project.pk}/labels/{original.pk}/correct/",
        {"verdict": "R:2", "idempotency_key": "c1"},
        HTTP_HX_REQUEST="true",
    )
    assert fixed.status_code == 200 and "Label corrected." in fixed.content.decode()
    correction = Annotation.objects.get(supersedes=original)
    assert correction.payload["choice"] == original.order[1]

    Annotation.objects.filter(pk=correction.pk).update(
        created_at=timezone.now() - timezone.timedelta(seconds=assignment_service.UNDO_SECONDS + 5)
    )
    late = client.post(f"/projects/{project.pk}/work/undo/", HTTP_HX_REQUEST="true")
    assert late.status_code == 409 and "My labels" in late.content.decode()


def test_my_labels_lists_current_labels_and_edits_them(
    project, annotator, django_assert_max_num_queries
):
    for _ in range(3):
        ItemFactory(project=project)
    labels = [label(project, annotator) for _ in range(3)]
    other = ProjectFactory()
    ItemFactory(project=other)
    client = client_for(annotator)
    with django_assert_max_num_queries(5):
        page = client.get("/my-labels/").content.decode()
    for a in labels:
        assert f'href="/projects/{project.pk}/labels/{a.pk}/correct/"' in page
    edit = client.get(f"/projects/{project.pk}/labels/{labels[0].pk}/correct/")
    assert edit.status_code == 200 and 'name="return" value="my-labels"' in edit.content.decode()
    response = client.post(
        f"/projects/{project.pk}/labels/{labels[0].pk}/correct/",
        {"verdict": "tie", "idempotency_key": "e1", "return": "my-labels"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 204 and response["HX-Redirect"] == "/my-labels/"
    page = client.get("/my-labels/").content.decode()
    assert f"labels/{labels[0].pk}/correct/" not in page  # replaced by its correction
    assert "corrected" in page and "tie" in page


def test_only_the_labeller_may_correct(project, annotator, manager, outsider):
    ItemFactory(project=project)
    original = label(project, annotator)
    url = f"/projects/{project.pk}/labels/{original.pk}/correct/"
    assert client_for(manager).get(url).status_code == 404  # not their label
    assert client_for(outsider).get(url).status_code == 404  # not their project
    assert Client().get(url).status_code == 302
    response = client_for(manager).post(url, {"verdict": "L", "idempotency_key": "m"})
    assert response.status_code == 404 and Annotation.objects.count() == 1
    assert Client().get("/my-labels/").status_code == 302


def test_undo_is_for_members_only(project, annotator, outsider):
    ItemFactory(project=project)
    label(project, annotator)
    url = f"/projects/{project.pk}/work/undo/"
    assert client_for(outsider).post(url, HTTP_HX_REQUEST="true").status_code == 404
    assert Client().post(url).status_code == 302
    # Another member has nothing to undo: their own last label is what undo looks for.
    other = UserFactory()
    from tests.factories import MembershipFactory

    MembershipFactory(project=project, user=other)
    assert client_for(other).post(url, HTTP_HX_REQUEST="true").status_code == 409
