"""The manager's judge and routing pages: starting a run with its cost estimate, the judges'
pages and test call, the routing form with dry run, route now and history. Who may use each."""

from decimal import Decimal

import pytest

from annotation.models import Item
from routing.judges import services
from routing.judges.models import Judge, JudgeRun
from routing.router.models import RoutingDecision, RoutingPolicyVersion
from tests.factories import ItemFactory
from tests.pages import client_for, user_for
from tests.routing.conftest import make_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def judge(db):
    return services.judge_create(
        name="j1",
        provider="openai",
        model="m",
        api_key_env="J1_API_KEY",
        price_input_per_mtok=Decimal("2"),
        price_output_per_mtok=Decimal("8"),
        sampling={"max_tokens": 100},
    )


def test_start_a_run_after_its_estimate(
    manager, project, judge, django_capture_on_commit_callbacks
):
    make_items(project, 3, route="judge")
    client = client_for(manager)
    form = {"judge": "j1", "scope": "routed", "order_mode": "both", "permutations": "2"}
    estimate = client.post(f"/projects/{project.pk}/judge-runs/estimate/", form).content.decode()
    assert "<strong>6</strong> calls" in estimate  # 3 items x 2 orders
    assert 'data-testid="cost-estimate"' in estimate
    assert not JudgeRun.objects.exists()  # an estimate writes nothing

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/projects/{project.pk}/judge-runs/", {**form, "cost_cap": "1"})
    run = JudgeRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/judge-runs/{run.pk}/"
    assert (run.scope, run.cost_cap, run.created_by) == ("routed", Decimal("1"), manager)


def test_the_estimate_matches_the_engine(manager, project, judge):
    from routing.judges.estimate import judge_run_estimate

    make_items(project, 2, route="judge")
    estimate = judge_run_estimate(project=project, judge=judge)
    assert estimate.calls == 4 and estimate.max_tokens_out_per_call == 100
    assert estimate.tokens_in_per_call > 50
    per_call_floor = Decimal(estimate.tokens_in_per_call) * 2 / 1_000_000
    assert estimate.cost_floor == per_call_floor * 4
    assert estimate.cost_ceiling == estimate.cost_floor + Decimal(100 * 8 * 4) / 1_000_000


def test_run_form_errors(manager, project, judge):
    client = client_for(manager)
    nothing = client.post(
        f"/projects/{project.pk}/judge-runs/",
        {"judge": "j1", "scope": "routed", "order_mode": "both", "permutations": "2"},
    )
    assert nothing.status_code == 400 and "has no items yet" in nothing.content.decode()
    bad = client.post(
        f"/projects/{project.pk}/judge-runs/",
        {"judge": "nope", "scope": "routed", "order_mode": "both", "permutations": "99"},
    )
    html = bad.content.decode()
    assert (
        bad.status_code == 400 and "Select a valid choice" in html and "less than or equal" in html
    )
    estimate = client.post(
        f"/projects/{project.pk}/judge-runs/estimate/",
        {"judge": "j1", "scope": "routed", "order_mode": "both", "permutations": "2"},
    )
    assert "has no items yet" in estimate.content.decode()
    assert not JudgeRun.objects.exists()


@pytest.mark.parametrize(
    ("who", "code"), [("anonymous", 302), ("annotator", 403), ("outsider", 404)]
)
def test_run_start_and_estimate_are_for_managers(request, project, judge, who, code):
    make_items(project, 1, route="judge")
    client = client_for(user_for(request, who))
    form = {"judge": "j1", "scope": "all", "order_mode": "both", "permutations": "2"}
    assert client.post(f"/projects/{project.pk}/judge-runs/", form).status_code == code
    assert client.post(f"/projects/{project.pk}/judge-runs/estimate/", form).status_code == code
    assert not JudgeRun.objects.exists()


def test_estimate_api(api, manager, annotator, project, judge):
    make_items(project, 2, route="judge")
    body = {"project": project.pk, "judge": "j1", "scope": "all"}
    response = api(manager).post("/api/v1/judge-runs/estimate/", body, format="json")
    assert response.status_code == 200 and response.json()["calls"] == 4
    assert (
        api(annotator).post("/api/v1/judge-runs/estimate/", body, format="json").status_code == 403
    )


@pytest.mark.parametrize(
    ("who", "list_code", "edit_code"),
    [("anonymous", 302, 302), ("annotator", 403, 403), ("manager", 200, 403), ("admin", 200, 200)],
)
def test_who_sees_and_edits_judges(request, project, judge, who, list_code, edit_code):
    client = client_for(user_for(request, who))
    assert client.get("/judges/").status_code == list_code
    assert client.get("/judges/new/").status_code == edit_code
    assert client.get(f"/judges/{judge.pk}/").status_code == edit_code
    assert client.post(f"/judges/{judge.pk}/test/").status_code == edit_code


def test_admin_adds_and_edits_a_judge(admin_user):
    client = client_for(admin_user)
    form = {
        "name": "gpt-small",
        "provider": "openai_compatible",
        "model": "small",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "",
        "templates": "{}",
        "sampling": '{"max_tokens": 64}',
        "output_mode": "auto",
        "price_input_per_mtok": "0.5",
        "price_output_per_mtok": "1.5",
        "max_concurrency": "4",
        "timeout_seconds": "30",
        "max_attempts": "3",
        "active": "on",
    }
    response = client.post("/judges/new/", form)
    judge = Judge.objects.get(name="gpt-small")
    assert response.status_code == 302 and judge.sampling == {"max_tokens": 64}
    bad = client.post(f"/judges/{judge.pk}/", {**form, "max_concurrency": "0", "sampling": "{"})
    assert bad.status_code == 400
    assert "Enter a valid JSON" in bad.content.decode()
    client.post(f"/judges/{judge.pk}/", {**form, "model": "bigger"})
    judge.refresh_from_db()
    assert judge.model == "bigger"
    taken = client.post("/judges/new/", form)
    assert taken.status_code == 400 and "already exists" in taken.content.decode()


def test_test_call_shows_the_raw_answer_and_cost(admin_user, make_judge, project, api):
    judge = make_judge("openai")
    client = client_for(admin_user)
    html = client.post(f"/judges/{judge.pk}/test/").content.decode()
    assert "Raw answer" in html and 'data-testid="trial-cost"' in html and "$0.0" in html
    item = ItemFactory(project=project, candidates=["short", "a much longer answer " * 5])
    html = client.post(f"/judges/{judge.pk}/test/", {"item": item.pk}).content.decode()
    assert "B better" in html  # the fake judge prefers the longer answer
    missing = client.post(f"/judges/{judge.pk}/test/", {"item": 999999}).content.decode()
    assert "No such item." in missing
    response = api(admin_user).post(f"/api/v1/judges/{judge.pk}/test/", {}, format="json")
    assert response.status_code == 200 and response.json()["ok"] is True
    assert Decimal(response.json()["cost"]) > 0


def test_a_failed_test_call_says_why(admin_user, make_judge, llm):
    judge = make_judge("openai", max_attempts=1)
    llm.faults.append({"status": 401})
    html = client_for(admin_user).post(f"/judges/{judge.pk}/test/").content.decode()
    assert "The call failed" in html


# --- routing -------------------------------------------------------------------------------


POLICY = {
    "name": "random",
    "param__random__fraction": "0.5",
    "param__random__seed": "3",
    "budget_count": "",
    "budget_fraction": "",
    "calibration_share": "0",
    "judges": "",
    "tagging_judge": "",
}


@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", 302), ("annotator", 403), ("outsider", 404), ("manager", 200), ("admin", 200)],
)
def test_who_may_use_the_routing_page(request, project, who, code):
    client = client_for(user_for(request, who))
    assert client.get(f"/projects/{project.pk}/routing/").status_code == code
    post_code = 302 if code == 200 else code
    assert client.post(f"/projects/{project.pk}/routing/", POLICY).status_code in {post_code, 200}
    assert client.post(f"/projects/{project.pk}/routing/dry-run/", POLICY).status_code == code
    route_code = 302 if code == 200 else code
    assert client.post(f"/projects/{project.pk}/routing/route-now/").status_code == route_code


def test_set_dry_run_route_and_history(manager, project, judge):
    for _ in range(10):
        ItemFactory(project=project)
    client = client_for(manager)
    page = client.get(f"/projects/{project.pk}/routing/").content.decode()
    assert 'data-policy="random"' in page and "param__random__fraction" in page

    dry = client.post(f"/projects/{project.pk}/routing/dry-run/", POLICY).content.decode()
    assert 'data-testid="dry-run"' in dry and "<strong>10</strong> unrouted" in dry
    assert not RoutingDecision.objects.exists()

    response = client.post(f"/projects/{project.pk}/routing/", {**POLICY, "judges": "j1"})
    assert response.status_code == 302
    response = client.post(
        f"/projects/{project.pk}/routing/", {**POLICY, "name": "all_human", "budget_count": "4"}
    )
    assert response.status_code == 302
    assert list(
        RoutingPolicyVersion.objects.filter(policy__project=project).values_list(
            "version", "config__name"
        )
    ) == [(2, "all_human"), (1, "random")]

    client.post(f"/projects/{project.pk}/routing/route-now/")
    assert RoutingDecision.objects.filter(project=project).count() == 10
    assert Item.objects.filter(project=project, route="human").count() == 4
    page = client.get(f"/projects/{project.pk}/routing/").content.decode()
    assert 'id="policy-history"' in page and "all_human" in page and "fraction" in page


def test_routing_form_errors_land_on_fields(manager, project):
    client = client_for(manager)
    bad = {**POLICY, "param__random__fraction": "2", "judges": "ghost"}
    response = client.post(f"/projects/{project.pk}/routing/", bad)
    html = response.content.decode()
    assert response.status_code == 400
    assert "No judge named ghost" in html
    response = client.post(
        f"/projects/{project.pk}/routing/", {**POLICY, "param__random__fraction": "2"}
    )
    assert response.status_code == 400 and "between 0 and 1" in response.content.decode()
    both = {**POLICY, "budget_count": "3", "budget_fraction": "0.2"}
    response = client.post(f"/projects/{project.pk}/routing/", both)
    assert response.status_code == 400 and "not both" in response.content.decode()


def test_routing_api_shows_the_history(api, manager, project):
    from routing.router import route

    route.routing_policy_set(project=project, name="all_human")
    route.routing_policy_set(project=project, name="all_judge", judges=["j1"])
    body = api(manager).get(f"/api/v1/projects/{project.pk}/routing-policy/").json()
    assert [v["version"] for v in body["history"]] == [2, 1]


def test_routing_page_query_count(manager, project, django_assert_max_num_queries):
    from routing.router import route

    for name in ("all_human", "all_judge", "random"):
        route.routing_policy_set(project=project, name=name, judges=["j1"])
    client = client_for(manager)
    with django_assert_max_num_queries(14):
        client.get(f"/projects/{project.pk}/routing/")


def test_start_a_run_on_selected_items(manager, project, judge, django_capture_on_commit_callbacks):
    items = make_items(project, 3, route="human")  # nothing routed to judges
    client = client_for(manager)
    ids = f"{items[0].pk}, {items[2].pk}"
    page = client.get(
        f"/projects/{project.pk}/judge-runs/", {"scope": "selection", "item_ids": ids}
    ).content.decode()
    assert ids in page  # prefilled from the item browser's link
    form = {"judge": "j1", "scope": "selection", "order_mode": "both", "permutations": "2"}
    estimate = client.post(
        f"/projects/{project.pk}/judge-runs/estimate/", {**form, "item_ids": ids}
    ).content.decode()
    assert "<strong>4</strong> calls" in estimate
    missing = client.post(f"/projects/{project.pk}/judge-runs/", form)
    assert missing.status_code == 400 and "Give the ids" in missing.content.decode()
    stranger = ItemFactory()
    foreign = client.post(
        f"/projects/{project.pk}/judge-runs/", {**form, "item_ids": str(stranger.pk)}
    )
    assert foreign.status_code == 400 and "not items of this project" in foreign.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        client.post(f"/projects/{project.pk}/judge-runs/", {**form, "item_ids": ids})
    run = JudgeRun.objects.get()
    assert (run.scope, run.item_ids) == ("selection", sorted([items[0].pk, items[2].pk]))


def test_item_browser_links_its_page_to_a_run(manager, project):
    items = make_items(project, 2)
    html = client_for(manager).get(f"/projects/{project.pk}/items/").content.decode()
    assert f"scope=selection&amp;item_ids={items[0].pk},{items[1].pk}" in html
