"""The workspace pages and partials: authorization, form decoding, and query counts."""

import pytest
from django.http import QueryDict
from django.utils import timezone

from annotation.models import Annotation, Assignment
from annotation.schema import LabelSchema
from annotation.workspace import pairwise_scale, payload_from_form
from tandem.errors import InvalidInput
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory
from tests.pages import client_for


def htmx(client, method, url, data=None):
    return getattr(client, method)(url, data or {}, HTTP_HX_REQUEST="true")


def urls(project, lease_id=0):
    base = f"/projects/{project.pk}/work/"
    return {
        "page": base,
        "next": base + "next/",
        "progress": base + "progress/",
        "submit": f"{base}{lease_id}/submit/",
        "skip": f"{base}{lease_id}/skip/",
    }


@pytest.fixture
def item(project):
    return ItemFactory(
        project=project,
        candidates=[
            "Plain **answer**",
            "<script>window.pwned=1</script><img src=x onerror=alert(1)>",
        ],
    )


@pytest.mark.django_db
class TestAuthorization:
    def test_anonymous_is_sent_to_login(self, project, item):
        client = client_for()
        assert client.get(urls(project)["page"]).status_code == 302
        assert client.post(urls(project)["next"]).status_code == 302
        assert client.get(urls(project)["progress"]).status_code == 302

    def test_non_member_gets_404(self, project, item, outsider):
        client = client_for(outsider)
        assert client.get(urls(project)["page"]).status_code == 404
        assert htmx(client, "post", urls(project)["next"]).status_code == 404
        assert Assignment.objects.count() == 0

    @pytest.mark.parametrize("who", ["annotator", "manager"])
    def test_members_work(self, project, item, who, request):
        client = client_for(request.getfixturevalue(who))
        page = client.get(urls(project)["page"])
        assert page.status_code == 200
        assert b"Done today" in page.content and b"Guidelines" in page.content
        task = htmx(client, "post", urls(project)["next"])
        assert task.status_code == 200
        assert b'id="task-form"' in task.content

    def test_archived_project_is_refused(self, project, item, annotator):
        project.archived = True
        project.save()
        assert client_for(annotator).get(urls(project)["page"]).status_code == 403

    def test_submit_into_a_project_i_am_not_in_is_404(self, project, item, annotator, outsider):
        lease = Assignment.objects.none()
        client = client_for(annotator)
        htmx(client, "post", urls(project)["next"])
        lease = Assignment.objects.get()
        response = htmx(
            client_for(outsider),
            "post",
            urls(project, lease.pk)["submit"],
            {"verdict": "L:1", "idempotency_key": "k"},
        )
        assert response.status_code == 404
        assert Annotation.objects.count() == 0


@pytest.mark.django_db
def test_unknown_task_is_404(project, item, annotator):
    response = htmx(client_for(annotator), "post", urls(project, 999999)["submit"], {})
    assert response.status_code == 404
    assert b"No such task" in response.content


@pytest.mark.django_db
class TestTask:
    def test_model_output_is_rendered_inert(self, project, item, annotator):
        content = htmx(client_for(annotator), "post", urls(project)["next"]).content.decode()
        assert "<strong>answer</strong>" in content
        assert "<script>window.pwned" not in content
        assert "&lt;script&gt;" in content
        assert "<img" not in content

    def test_submit_records_and_serves_the_next_task(self, project, annotator):
        ItemFactory.create_batch(2, project=project)
        client = client_for(annotator)
        htmx(client, "post", urls(project)["next"])
        lease = Assignment.objects.get()
        form = {"verdict": "L:2", "idempotency_key": "key-1", "time_spent_ms": "1500"}
        response = htmx(client, "post", urls(project, lease.pk)["submit"], form)
        assert response.status_code == 200
        assert response["HX-Trigger"] == "tandem:submitted"
        annotation = Annotation.objects.get()
        assert annotation.payload == {"choice": lease.order[0], "strength": 2}
        assert annotation.order == lease.order
        assert annotation.time_spent_ms == 1500
        assert Assignment.objects.filter(status="open").count() == 1
        # A double click sends the same key again: still one annotation.
        again = htmx(client, "post", urls(project, lease.pk)["submit"], form)
        assert again.status_code == 200
        assert Annotation.objects.count() == 1

    def test_invalid_form_keeps_the_task_and_says_why(self, project, item, annotator):
        client = client_for(annotator)
        htmx(client, "post", urls(project)["next"])
        lease = Assignment.objects.get()
        response = htmx(client, "post", urls(project, lease.pk)["submit"], {"idempotency_key": "k"})
        assert response.status_code == 422
        assert response["HX-Retarget"] == "#task-errors"
        assert b"Choose which response" in response.content

    def test_expired_lease_says_so_and_moves_on(self, project, item, annotator):
        client = client_for(annotator)
        htmx(client, "post", urls(project)["next"])
        lease = Assignment.objects.get()
        Assignment.objects.update(expires_at=timezone.now())
        response = htmx(
            client,
            "post",
            urls(project, lease.pk)["submit"],
            {"verdict": "tie", "idempotency_key": "k"},
        )
        assert response.status_code == 200
        assert b"expired" in response.content
        assert Annotation.objects.count() == 0

    def test_skip_with_reason(self, project, item, annotator):
        client = client_for(annotator)
        htmx(client, "post", urls(project)["next"])
        lease = Assignment.objects.get()
        missing = htmx(client, "post", urls(project, lease.pk)["skip"], {})
        assert missing.status_code == 422
        response = htmx(
            client,
            "post",
            urls(project, lease.pk)["skip"],
            {"reason": "other", "reason_text": "typo"},
        )
        assert response.status_code == 200
        assert b"Nothing left for you" in response.content
        lease.refresh_from_db()
        assert (lease.status, lease.skip_reason) == ("skipped", "typo")

    def test_progress(self, project, item, annotator):
        response = htmx(client_for(annotator), "get", urls(project)["progress"])
        assert response.status_code == 200
        assert b'data-testid="left">1<' in response.content


@pytest.mark.django_db
class TestQueryCounts:
    def test_page(self, project, item, annotator, django_assert_max_num_queries):
        client = client_for(annotator)
        with django_assert_max_num_queries(6):
            assert client.get(urls(project)["page"]).status_code == 200

    def test_next_and_submit(self, project, annotator, django_assert_max_num_queries):
        ItemFactory.create_batch(5, project=project)
        client = client_for(annotator)
        with django_assert_max_num_queries(13):
            assert htmx(client, "post", urls(project)["next"]).status_code == 200
        lease = Assignment.objects.get()
        form = {"verdict": "R:1", "idempotency_key": "q"}
        with django_assert_max_num_queries(22):
            assert htmx(client, "post", urls(project, lease.pk)["submit"], form).status_code == 200

    def test_progress(self, project, item, annotator, django_assert_max_num_queries):
        client = client_for(annotator)
        # 6: one asks whether unrouted items wait for routing (annotation.routes.people_routes)
        with django_assert_max_num_queries(6):
            assert htmx(client, "get", urls(project)["progress"]).status_code == 200

    def test_manager_page_shows_progress_per_annotator(
        self, project, manager, django_assert_max_num_queries
    ):
        project.gold_ratio = 1.0
        project.save()
        ItemFactory(project=project, gold="A")
        users = UserFactory.create_batch(3)
        for user in users:
            MembershipFactory(project=project, user=user)
            client = client_for(user)
            htmx(client, "post", urls(project)["next"])
            lease = Assignment.objects.get(annotator=user)
            verdict = "L:1" if lease.order[0] == "A" else "R:1"
            htmx(
                client,
                "post",
                urls(project, lease.pk)["submit"],
                {"verdict": verdict, "idempotency_key": user.username},
            )
        page_client = client_for(manager)
        with django_assert_max_num_queries(10):
            page = page_client.get(f"/projects/{project.pk}/")
        html = page.content.decode()
        assert 'id="annotator-progress"' in html
        assert all(u.username in html for u in users)
        assert "1/1" in html  # each agreed with the gold answer

    def test_annotator_page_has_no_progress_table(self, project, annotator):
        html = client_for(annotator).get(f"/projects/{project.pk}/").content.decode()
        assert 'id="annotator-progress"' not in html
        assert "Start labelling" in html


class TestForm:
    def test_pairwise_scale(self):
        schema = LabelSchema.from_dict(
            {"strength_scale": ["better", "much better"], "allow_both_bad": True},
            task_type="pairwise",
        )
        scale = pairwise_scale(schema)
        assert [c.value for c in scale] == ["L:2", "L:1", "tie", "R:1", "R:2", "both_bad"]
        assert [c.key for c in scale] == [1, 2, 3, 4, 5, 6]

    def test_sides_become_item_letters(self):
        schema = LabelSchema.defaults("pairwise")
        form = QueryDict("verdict=L:2&rationale=x")
        assert payload_from_form(form, schema=schema, order="BA") == {
            "choice": "B",
            "strength": 2,
            "rationale": "x",
        }
        assert payload_from_form(QueryDict("verdict=R:1"), schema=schema, order="BA") == {
            "choice": "A",
            "strength": 1,
        }

    def test_ranking_with_ties(self):
        schema = LabelSchema.from_dict({"allow_tie": True}, task_type="listwise")
        form = QueryDict("rank=C&tied=0&rank=A&tied=0&rank=B&tied=1")
        assert payload_from_form(form, schema=schema, order="ABC") == {"ranking": ["C", ["A", "B"]]}

    def test_missing_choice(self):
        with pytest.raises(InvalidInput):
            payload_from_form(QueryDict(""), schema=LabelSchema.defaults("thumbs"), order="A")


@pytest.mark.django_db
def test_thumbs_and_listwise_through_the_form(db):
    for task_type, form in (
        ("thumbs", {"thumb": "down", "rationale": "wrong date"}),
        ("listwise", {"rank": ["B", "A", "C"], "tied": ["0", "0", "0"]}),
    ):
        project = ProjectFactory(task_type=task_type)
        user = UserFactory()
        MembershipFactory(project=project, user=user)
        ItemFactory(project=project)
        client = client_for(user)
        assert htmx(client, "post", urls(project)["next"]).status_code == 200
        lease = Assignment.objects.get(project=project)
        response = htmx(
            client,
            "post",
            urls(project, lease.pk)["submit"],
            {**form, "idempotency_key": task_type},
        )
        assert response.status_code == 200
        payload = Annotation.objects.get(project=project).payload
        if task_type == "thumbs":
            assert payload == {"thumb": "down", "rationale": "wrong date"}
        else:
            assert payload == {"ranking": ["B", "A", "C"]}


@pytest.mark.django_db
def test_conversation_aspects_and_required_rationale(annotator, project):
    project.label_schema = {
        "strength_scale": [],
        "allow_both_bad": True,
        "aspects": ["helpfulness", {"name": "tone", "choices": ["calm", "rude"]}],
        "rationale": "required",
    }
    project.full_clean()
    project.save()
    ItemFactory(
        project=project,
        prompt="",
        messages=[
            {"role": "user", "content": "Hi *there*"},
            {"role": "assistant", "content": "<b>hello</b>"},
        ],
    )
    client = client_for(annotator)
    html = htmx(client, "post", urls(project)["next"]).content.decode()
    assert "Conversation" in html and "<em>there</em>" in html and "&lt;b&gt;hello" in html
    assert 'name="aspect:helpfulness" value="L"' in html
    assert 'name="aspect:tone" value="rude"' in html
    assert 'value="both_bad"' in html and "(required)" in html
    lease = Assignment.objects.get()
    form = {
        "verdict": "R",
        "aspect:helpfulness": "L",
        "aspect:tone": "calm",
        "idempotency_key": "c",
    }
    missing = htmx(client, "post", urls(project, lease.pk)["submit"], form)
    assert missing.status_code == 422 and b"rationale is required" in missing.content
    form["rationale"] = "more helpful"
    assert htmx(client, "post", urls(project, lease.pk)["submit"], form).status_code == 200
    left, right = lease.order
    assert Annotation.objects.get().payload == {
        "choice": right,
        "aspects": {"helpfulness": left, "tone": "calm"},
        "rationale": "more helpful",
    }


@pytest.mark.django_db
def test_near_identical_pair_offers_a_diff(annotator, project):
    ItemFactory(
        project=project,
        candidates=["The capital of France is Paris.", "The capital of France is Lyon."],
    )
    html = htmx(client_for(annotator), "post", urls(project)["next"]).content.decode()
    assert 'data-action="diff"' in html
    assert "<del>" in html and "<ins>" in html


@pytest.mark.django_db
def test_annotator_progress_median_time_and_gold(project):
    from annotation.assignment import annotation_submit, assignment_next
    from annotation.selectors import annotator_progress

    project.gold_ratio = 1.0
    project.max_open_leases = 1
    ItemFactory(project=project, gold="A")
    ItemFactory(project=project, gold={"choice": "B"})
    ItemFactory(project=project)
    user = UserFactory(username="zoe")
    MembershipFactory(project=project, user=user)
    for spent in (1000, 3000, 8000):
        lease = assignment_next(project=project, user=user)
        annotation_submit(
            assignment_id=lease.pk,
            user=user,
            payload={"choice": "A"},
            idempotency_key=f"t{spent}",
            time_spent_ms=0,
        )
        Annotation.objects.filter(assignment=lease).update(time_spent_ms=spent)
    (row,) = annotator_progress(project=project)
    assert row["username"] == "zoe" and row["submitted"] == 3 and row["today"] == 3
    assert row["gold_checked"] == 2 and row["gold_agreed"] == 1
    from django.db import connection

    expected = 3.0 if connection.vendor == "postgresql" else 4.0  # median; mean on SQLite
    assert row["median_seconds"] == expected
