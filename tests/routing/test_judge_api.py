"""``/api/v1/judges/`` and ``/api/v1/judge-runs/``: who may do what, and how many queries."""

import pytest

from routing.judges import services
from routing.judges.models import Judge, JudgeRun
from tests.factories import ItemFactory, ProjectFactory
from tests.routing.conftest import make_items

pytestmark = pytest.mark.django_db

JUDGE = {
    "name": "gpt-judge",
    "provider": "openai",
    "model": "gpt-4o-mini",
    "api_key_env": "OPENAI_API_KEY",
    "price_input_per_mtok": "0.15",
    "price_output_per_mtok": "0.60",
}


@pytest.fixture
def judge(db):
    return services.judge_create(name="j1", provider="openai", model="m", api_key_env="J1_API_KEY")


@pytest.fixture
def run(project, judge):
    make_items(project, 2)
    return services.judge_run_create(project=project, judge=judge, enqueue=False)


@pytest.fixture
def users(admin_user, manager, annotator, outsider):
    return {
        "anonymous": None,
        "annotator": annotator,
        "other_manager": outsider,
        "manager": manager,
        "admin": admin_user,
    }


class TestJudges:
    @pytest.mark.parametrize(
        ("who", "code"),
        [
            ("anonymous", 401),
            ("annotator", 403),
            ("other_manager", 200),
            ("manager", 200),
            ("admin", 200),
        ],
    )
    def test_list(self, api, users, judge, who, code):
        response = api(users[who]).get("/api/v1/judges/")
        assert response.status_code == code
        if code == 200:
            assert [j["name"] for j in response.json()["results"]] == ["j1"]

    @pytest.mark.parametrize(
        ("who", "code"),
        [
            ("anonymous", 401),
            ("annotator", 403),
            ("other_manager", 403),
            ("manager", 403),
            ("admin", 201),
        ],
    )
    def test_create(self, api, users, who, code):
        response = api(users[who]).post("/api/v1/judges/", JUDGE, format="json")
        assert response.status_code == code, response.content
        assert Judge.objects.filter(name="gpt-judge").exists() == (code == 201)

    def test_the_key_is_never_stored_only_its_variable(self, api, admin_user):
        bad = JUDGE | {"api_key_env": "sk-proj-abc123-secret"}
        response = api(admin_user).post("/api/v1/judges/", bad, format="json")
        assert response.status_code == 400
        assert "api_key_env" in str(response.json()["error"]["details"])
        body = api(admin_user).post("/api/v1/judges/", JUDGE, format="json").json()
        assert body["api_key_env"] == "OPENAI_API_KEY" and "api_key" not in body

    def test_compatible_server_needs_a_base_url_and_templates_known_variables(
        self, api, admin_user
    ):
        client = api(admin_user)
        compat = JUDGE | {"provider": "openai_compatible", "api_key_env": ""}
        assert client.post("/api/v1/judges/", compat, format="json").status_code == 400
        ok = compat | {"base_url": "http://127.0.0.1:8080/v1"}
        bad_template = ok | {"templates": {"pairwise": {"user": "{{ secrets }}"}}}
        assert client.post("/api/v1/judges/", bad_template, format="json").status_code == 400
        assert client.post("/api/v1/judges/", ok, format="json").status_code == 201
        again = client.post("/api/v1/judges/", ok, format="json")
        assert again.status_code == 409

    @pytest.mark.parametrize(
        ("who", "code"),
        [("anonymous", 401), ("annotator", 403), ("manager", 403), ("admin", 200)],
    )
    def test_update(self, api, users, judge, who, code):
        response = api(users[who]).patch(f"/api/v1/judges/{judge.pk}/", {"max_concurrency": 32})
        assert response.status_code == code
        judge.refresh_from_db()
        assert judge.max_concurrency == (32 if code == 200 else 8)

    def test_a_judge_with_runs_is_not_deleted(self, api, admin_user, run, judge):
        assert api(admin_user).delete(f"/api/v1/judges/{judge.pk}/").status_code == 409
        other = services.judge_create(name="j2", provider="anthropic", model="m")
        assert api(admin_user).delete(f"/api/v1/judges/{other.pk}/").status_code == 204

    def test_list_query_count(self, api, admin_user, judge, django_assert_max_num_queries):
        for i in range(5):
            services.judge_create(name=f"extra-{i}", provider="openai", model="m")
        client = api(admin_user)
        with django_assert_max_num_queries(3):  # token auth, count-free keyset page
            response = client.get("/api/v1/judges/")
        assert len(response.json()["results"]) == 6


class TestJudgeRuns:
    @pytest.mark.parametrize(
        ("who", "visible"),
        [("annotator", False), ("other_manager", False), ("manager", True), ("admin", True)],
    )
    def test_list_and_retrieve(self, api, users, run, who, visible):
        client = api(users[who])
        listed = client.get("/api/v1/judge-runs/").json()["results"]
        assert [r["id"] for r in listed] == ([run.pk] if visible else [])
        detail = client.get(f"/api/v1/judge-runs/{run.pk}/")
        assert detail.status_code == (200 if visible else 404)
        if visible:
            body = detail.json()
            assert body["judge"] == "j1" and body["status"] == "pending"
            assert {"done", "failed", "total", "tokens_in", "cost", "progress"} <= set(body)

    def test_anonymous(self, api, run):
        assert api().get("/api/v1/judge-runs/").status_code == 401
        assert api().get(f"/api/v1/judge-runs/{run.pk}/").status_code == 401
        assert api().post("/api/v1/judge-runs/", {}).status_code == 401

    @pytest.mark.parametrize(
        ("who", "code"),
        # a member who may not manage is told so (403); a stranger learns nothing (404)
        [("annotator", 403), ("other_manager", 404), ("manager", 201), ("admin", 201)],
    )
    def test_create(
        self, api, users, project, judge, who, code, django_capture_on_commit_callbacks
    ):
        make_items(project, 1)
        payload = {"project": project.pk, "judge": "j1", "scope": "all", "cost_cap": "1.5"}
        sent = []
        from routing import tasks

        original = tasks.judge_run_execute.delay
        tasks.judge_run_execute.delay = lambda run_id: sent.append(run_id)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                response = api(users[who]).post("/api/v1/judge-runs/", payload, format="json")
        finally:
            tasks.judge_run_execute.delay = original
        assert response.status_code == code, response.content
        if code == 201:
            run = JudgeRun.objects.get()
            assert sent == [run.pk]  # enqueued on the judge queue once committed
            assert run.scope == "all" and str(run.cost_cap) == "1.500000"
            assert run.judge_config["model"] == "m"
        else:
            assert not JudgeRun.objects.exists() and sent == []

    def test_cancel_and_resume(self, api, manager, annotator, run):
        assert api(annotator).post(f"/api/v1/judge-runs/{run.pk}/cancel/").status_code == 404
        response = api(manager).post(f"/api/v1/judge-runs/{run.pk}/cancel/")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        assert api(manager).post(f"/api/v1/judge-runs/{run.pk}/cancel/").status_code == 409
        response = api(manager).post(
            f"/api/v1/judge-runs/{run.pk}/resume/", {"cost_cap": "2"}, format="json"
        )
        assert response.status_code == 200 and response.json()["status"] == "pending"

    def test_list_query_count(self, api, manager, project, judge, django_assert_max_num_queries):
        ItemFactory(project=project, route="judge")
        for _ in range(6):
            services.judge_run_create(project=project, judge=judge, enqueue=False)
        other = ProjectFactory()
        ItemFactory(project=other, route="judge")
        services.judge_run_create(project=other, judge=judge, enqueue=False)
        client = api(manager)
        with django_assert_max_num_queries(3):
            response = client.get("/api/v1/judge-runs/")
        assert len(response.json()["results"]) == 6
        with django_assert_max_num_queries(3):
            assert client.get(f"/api/v1/judge-runs/?project={other.pk}").json()["results"] == []
