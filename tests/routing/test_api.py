import pytest
from django.urls import reverse

from routing.router import route
from routing.router.models import RoutingDecision, RoutingPolicy
from tests.factories import ItemFactory

from .factories import item_with_labels


def policy_url(project):
    return f"/api/v1/projects/{project.id}/routing-policy/"


def test_manager_sets_and_reads_the_policy(project, manager, api):
    client = api(manager)
    response = client.put(
        policy_url(project),
        {
            "name": "rules",
            "params": {"rules": ["metadata.domain == 'medical' -> human"]},
            "budget_fraction": 0.2,
            "judges": ["g"],
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["policy"]["name"] == "rules" and body["policy"]["version"] == 1
    assert body["budget"] == {"limit": 0, "spent": 0, "remaining": 0, "fraction": 0.2}
    again = client.patch(policy_url(project), {"budget_count": None}, format="json")
    assert again.json()["policy"]["version"] == 2


def test_a_bad_rule_is_refused_with_the_reason(project, manager, api):
    response = api(manager).put(
        policy_url(project),
        {"name": "rules", "params": {"rules": ["metadata.domain ~ 'x' -> human"]}},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "rule 1" in str(error["details"]["params"])
    assert not RoutingPolicy.objects.filter(project=project).exists()


def test_budget_as_both_fraction_and_count_is_refused(project, manager, api):
    response = api(manager).put(
        policy_url(project),
        {"name": "all_human", "budget_fraction": 0.1, "budget_count": 5},
        format="json",
    )
    assert response.status_code == 400
    assert "budget" in str(response.json()["error"]["details"])


@pytest.mark.parametrize("who", ["annotator", "outsider", None])
def test_only_managers_see_or_change_the_policy(project, annotator, outsider, api, who):
    user = {"annotator": annotator, "outsider": outsider, None: None}[who]
    client = api(user)
    read = client.get(policy_url(project))
    write = client.put(policy_url(project), {"name": "all_human"}, format="json")
    # Members who may see the project but not manage it are told so; others learn nothing.
    expected = {"annotator": 403, "outsider": 404, None: 401}[who]
    assert read.status_code == expected and write.status_code == expected
    assert not RoutingPolicy.objects.exists()


def test_dry_run_and_route(project, manager, api):
    for _ in range(5):
        ItemFactory(project=project)
    route.routing_policy_set(
        project=project, name="all_judge", judges=["g"], budget_count=2, calibration_share=0
    )
    client = api(manager)
    dry = client.post(
        f"/api/v1/projects/{project.id}/routing-policy/dry-run/",
        {"name": "all_human"},
        format="json",
    )
    assert dry.status_code == 200
    assert dry.json()["targets"] == {"human": 2, "judge": 3, "both": 0}
    assert not RoutingDecision.objects.exists()
    bad = client.post(
        f"/api/v1/projects/{project.id}/routing-policy/dry-run/",
        {"name": "random", "params": {"fraction": 3}},
        format="json",
    )
    assert bad.status_code == 400
    routed = client.post(f"/api/v1/projects/{project.id}/routing/route/")
    assert routed.json() == {"routed": 5, "targets": {"human": 0, "judge": 5, "both": 0}}


def test_item_decisions_in_the_api(project, manager, api):
    item = ItemFactory(project=project)
    route.routing_policy_set(project=project, name="all_human", budget_count=1, calibration_share=0)
    route.item_route(item=item)
    response = api(manager).get(f"/api/v1/projects/{project.id}/items/{item.id}/routing-decisions/")
    assert response.status_code == 200
    body = response.json()
    assert body["route"] == "human"
    (decision,) = body["decisions"]
    assert decision["target"] == "human" and decision["policy_name"] == "all_human"
    assert decision["budget_state"]["limit"] == 1 and "within budget" in decision["reason"]
    other = ItemFactory()
    missing = api(manager).get(f"/api/v1/projects/{project.id}/items/{other.id}/routing-decisions/")
    assert missing.status_code == 404


def _labelled_project(project, n):
    route.routing_policy_set(
        project=project,
        name="judge_uncertainty",
        judges=["g", "p"],
        budget_fraction=0.3,
        calibration_share=1.0,
    )
    for i in range(n):
        item_with_labels(project, humans=["A", "A", "B"], judges={"g": "A", "p": "AB"[i % 2]})
    route.project_route(project=project)


def test_policy_page_query_count_does_not_grow_with_items(
    project, manager, api, django_assert_max_num_queries
):
    _labelled_project(project, 12)
    client = api(manager)
    with django_assert_max_num_queries(16) as small:
        body = client.get(policy_url(project)).json()
    assert body["expected_agreement"]["budget"] == 0.3
    assert body["budget"] == {"limit": 3, "spent": 3, "remaining": 0, "fraction": 0.3}
    _labelled_project(project, 30)
    with django_assert_max_num_queries(16) as large:
        client.get(policy_url(project))
    assert len(large.captured_queries) == len(small.captured_queries)


def test_item_decisions_query_count(project, manager, api, django_assert_num_queries):
    item = ItemFactory(project=project)
    route.routing_policy_set(project=project, name="all_human", budget_count=5, calibration_share=0)
    route.item_route(item=item)
    route.items_reroute(project=project, item_ids=[item.pk])
    client = api(manager)
    client.get(f"/api/v1/projects/{project.id}/items/{item.id}/routing-decisions/")  # warm up
    with django_assert_num_queries(4):  # token, project, item, decisions
        response = client.get(f"/api/v1/projects/{project.id}/items/{item.id}/routing-decisions/")
    assert len(response.json()["decisions"]) == 2


def test_pages_show_budget_and_decisions(project, manager, client):
    item = ItemFactory(project=project)
    route.routing_policy_set(project=project, name="all_human", budget_count=3, calibration_share=0)
    route.item_route(item=item)
    client.force_login(manager)
    page = client.get(reverse("routing-project", args=[project.id]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Spent" in text and "Remaining" in text and "Expected agreement" in text
    item_page = client.get(reverse("routing-item", args=[project.id, item.id]))
    assert item_page.status_code == 200
    assert "within budget" in item_page.content.decode()


def test_admin_refuses_a_bad_rule_and_bumps_versions(project, admin_user, client):
    client.force_login(admin_user)
    url = reverse("admin:routing_routingpolicy_add")
    data = {
        "project": project.id,
        "name": "rules",
        "params": '{"rules": ["nonsense"]}',
        "judges": "[]",
        "calibration_share": "0.05",
        "active": "on",
    }
    page = client.post(url, data)
    assert page.status_code == 200
    assert "rule 1" in page.content.decode()
    data["params"] = '{"rules": ["a_tokens > 100 -> human"]}'
    assert client.post(url, data).status_code == 302
    policy = RoutingPolicy.objects.get(project=project)
    change = reverse("admin:routing_routingpolicy_change", args=[policy.pk])
    data["params"] = '{"rules": ["a_tokens > 200 -> human"]}'
    assert client.post(change, data).status_code == 302
    policy.refresh_from_db()
    assert policy.version == 2 and policy.params["rules"] == ["a_tokens > 200 -> human"]


def test_the_policy_names_a_tagging_judge(project, manager, api):
    from routing.judges.models import Judge

    Judge.objects.create(name="tagger", provider="openai", model="m")
    client = api(manager)
    bad = client.put(
        policy_url(project),
        {"name": "all_judge", "judges": ["tagger"], "tagging_judge": "nobody"},
        format="json",
    )
    assert bad.status_code == 400
    assert "no judge named 'nobody'" in str(bad.json()["error"]["details"]["tagging_judge"])
    ok = client.put(
        policy_url(project),
        {"name": "all_judge", "judges": ["tagger"], "tagging_judge": "tagger"},
        format="json",
    )
    assert ok.status_code == 200, ok.json()
    assert ok.json()["policy"]["tagging_judge"] == "tagger"
