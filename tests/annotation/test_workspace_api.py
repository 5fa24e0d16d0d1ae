"""Task API: next / submit / skip, their authorization, answers and query counts."""

import pytest
from django.utils import timezone

from annotation.models import Annotation, Assignment
from tests.factories import ItemFactory, MembershipFactory, UserFactory


def next_url(project):
    return f"/api/v1/projects/{project.pk}/next/"


def submit_url(lease_id):
    return f"/api/v1/assignments/{lease_id}/submit/"


def skip_url(lease_id):
    return f"/api/v1/assignments/{lease_id}/skip/"


@pytest.fixture
def item(project):
    return ItemFactory(project=project, candidates=["first answer", "second answer"])


@pytest.mark.django_db
class TestNext:
    def test_anonymous_is_refused(self, api, project, item):
        assert api().post(next_url(project)).status_code == 401

    def test_non_member_sees_no_project(self, api, project, item, outsider):
        response = api(outsider).post(next_url(project))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    @pytest.mark.parametrize("who", ["annotator", "manager"])
    def test_member_gets_a_lease_in_the_shown_order(self, api, project, item, who, request):
        user = request.getfixturevalue(who)
        response = api(user).post(next_url(project))
        assert response.status_code == 200
        body = response.json()
        lease = Assignment.objects.get(pk=body["assignment"])
        assert lease.annotator == user
        assert [c["letter"] for c in body["candidates"]] == list(lease.order)
        texts = {"A": "first answer", "B": "second answer"}
        assert all(c["text"] == texts[c["letter"]] for c in body["candidates"])
        assert body["item"]["id"] == item.pk
        assert body["item"]["prompt"] == item.prompt
        assert "gold" not in body["item"] and "model" not in body["candidates"][0]
        assert body["expires_at"]

    def test_nothing_left_is_204(self, api, project, annotator):
        assert api(annotator).post(next_url(project)).status_code == 204

    def test_archived_project_is_forbidden(self, api, project, item, annotator):
        project.archived = True
        project.save()
        assert api(annotator).post(next_url(project)).status_code == 403

    def test_query_count(self, api, project, annotator, django_assert_max_num_queries):
        ItemFactory.create_batch(20, project=project)
        client = api(annotator)
        # 12: one asks whether unrouted items wait for routing (annotation.routes.people_routes)
        with django_assert_max_num_queries(12):
            assert client.post(next_url(project)).status_code == 200


@pytest.mark.django_db
class TestSubmit:
    def lease(self, api, user, project):
        return api(user).post(next_url(project)).json()["assignment"]

    def test_anonymous_is_refused(self, api, project, item, annotator):
        lease = self.lease(api, annotator, project)
        response = api().post(submit_url(lease), {"idempotency_key": "k", "choice": "A"})
        assert response.status_code == 401

    def test_non_member_gets_404(self, api, project, item, annotator, outsider):
        lease = self.lease(api, annotator, project)
        response = api(outsider).post(submit_url(lease), {"idempotency_key": "k", "choice": "A"})
        assert response.status_code == 404

    def test_other_member_gets_a_clear_409(self, api, project, item, annotator, manager):
        lease = self.lease(api, annotator, project)
        response = api(manager).post(submit_url(lease), {"idempotency_key": "k", "choice": "A"})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "lease_foreign"
        assert "someone else" in response.json()["error"]["message"]

    def test_201_then_200_with_the_same_annotation(self, api, project, item, annotator):
        lease = self.lease(api, annotator, project)
        client = api(annotator)
        body = {
            "idempotency_key": "abc",
            "choice": "B",
            "strength": 1,
            "rationale": "shorter",
            "time_spent_ms": 900,
        }
        first = client.post(submit_url(lease), body)
        assert first.status_code == 201, first.json()
        again = client.post(submit_url(lease), body)
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        data = first.json()
        assert data["payload"] == {"choice": "B", "strength": 1, "rationale": "shorter"}
        assert data["order"] == Assignment.objects.get(pk=lease).order
        assert data["time_spent_ms"] == 900
        assert data["annotator"] == annotator.username
        assert Annotation.objects.count() == 1

    def test_invalid_label_is_400(self, api, project, item, annotator):
        lease = self.lease(api, annotator, project)
        response = api(annotator).post(submit_url(lease), {"idempotency_key": "k", "choice": "Z"})
        assert response.status_code == 400
        assert "choice" in response.json()["error"]["message"]
        response = api(annotator).post(submit_url(lease), {"choice": "A"})
        assert response.status_code == 400

    def test_expired_is_409_with_a_message(self, api, project, item, annotator):
        lease = self.lease(api, annotator, project)
        Assignment.objects.filter(pk=lease).update(expires_at=timezone.now())
        response = api(annotator).post(submit_url(lease), {"idempotency_key": "k", "choice": "A"})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "lease_expired"

    def test_query_count(self, api, project, item, annotator, django_assert_max_num_queries):
        lease = self.lease(api, annotator, project)
        client = api(annotator)
        with django_assert_max_num_queries(9):
            response = client.post(submit_url(lease), {"idempotency_key": "q", "choice": "A"})
        assert response.status_code == 201
        with django_assert_max_num_queries(6):
            response = client.post(submit_url(lease), {"idempotency_key": "q", "choice": "A"})
        assert response.status_code == 200


@pytest.mark.django_db
class TestSkip:
    def test_authorization_and_skip(self, api, project, item, annotator, outsider, manager):
        lease = api(annotator).post(next_url(project)).json()["assignment"]
        assert api().post(skip_url(lease), {"reason": "x"}).status_code == 401
        assert api(outsider).post(skip_url(lease), {"reason": "x"}).status_code == 404
        assert api(manager).post(skip_url(lease), {"reason": "x"}).status_code == 409
        assert api(annotator).post(skip_url(lease), {}).status_code == 400
        response = api(annotator).post(skip_url(lease), {"reason": "offensive"})
        assert response.status_code == 200
        assert response.json() == {"assignment": lease, "status": "skipped"}
        assert api(annotator).post(next_url(project)).status_code == 204

    def test_query_count(self, api, project, item, annotator, django_assert_max_num_queries):
        lease = api(annotator).post(next_url(project)).json()["assignment"]
        with django_assert_max_num_queries(7):
            assert api(annotator).post(skip_url(lease), {"reason": "r"}).status_code == 200


@pytest.mark.django_db
def test_listwise_over_the_api(api, db):
    from tests.factories import ProjectFactory

    project = ProjectFactory(task_type="listwise", overlap=2)
    users = UserFactory.create_batch(2)
    for user in users:
        MembershipFactory(project=project, user=user)
    ItemFactory(project=project, candidates=["x", "y", "z"])
    for user in users:
        lease = api(user).post(next_url(project)).json()
        assert len(lease["candidates"]) == 3
        ranking = [c["letter"] for c in lease["candidates"]]
        response = api(user).post(
            submit_url(lease["assignment"]), {"idempotency_key": str(user.pk), "ranking": ranking}
        )
        assert response.status_code == 201
        assert response.json()["payload"]["ranking"] == ranking
    assert api(users[0]).post(next_url(project)).status_code == 204
