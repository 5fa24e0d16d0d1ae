"""The quality API and page: who may see them, what they show, and their query counts."""

import csv
import io

import pytest

from annotation.models import Annotation, Membership
from tests.factories import AnnotationFactory, ItemFactory, MembershipFactory, UserFactory


@pytest.fixture
def manager_of(worked):
    user = UserFactory(username="boss", role="manager")
    MembershipFactory(project=worked, user=user, role=Membership.Role.MANAGER)
    return user


@pytest.fixture
def annotator_of(worked):
    user = UserFactory(username="member")
    MembershipFactory(project=worked, user=user)
    return user


@pytest.fixture
def small_minimum(settings):
    settings.TANDEM_QUALITY = {"min_items": 3, "min_pair_items": 2}


def test_api_for_managers_and_admins(api, worked, manager_of, admin_user, small_minimum):
    for user in (manager_of, admin_user):
        response = api(user).get(f"/api/v1/projects/{worked.id}/quality/")
        assert response.status_code == 200
    body = response.json()
    assert body["project_id"] == worked.id and body["task_type"] == "pairwise"
    assert body["agreement"]["fleiss_kappa"]["value"] == pytest.approx(-10 / 98, abs=1e-6)
    ann1 = next(a for a in body["annotators"] if a["annotator"] == "ann1")
    assert ann1["position_bias"]["first_wins"]["successes"] == 2
    assert ann1["position_bias"]["first_wins"]["n"] == 4
    assert ann1["skips"] == 1 and ann1["median_seconds"] == 2.5
    assert body["judges"][0]["unparsed"] == {
        "value": 0.125,
        "n": 8,
        "too_few": False,
        "successes": 1,
        "low": pytest.approx(0.0224, abs=1e-3),
        "high": pytest.approx(0.4709, abs=1e-3),
    }
    assert body["settings"]["min_items"] == 3


def test_api_refuses_annotators_and_hides_from_strangers(api, worked, annotator_of, outsider):
    url = f"/api/v1/projects/{worked.id}/quality/"
    refused = api(annotator_of).get(url)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    hidden = api(outsider).get(url)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert api().get(url).status_code in (401, 403)
    assert api(outsider).get("/api/v1/projects/999999/quality/").status_code == 404


def test_page_for_managers(client, worked, manager_of, small_minimum):
    client.force_login(manager_of)
    response = client.get(f"/projects/{worked.id}/quality/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Krippendorff" in html and "<svg" in html and "<script" not in html.split("</head>")[1]
    # ann3 is flagged on peer agreement (0/2 with a minimum of 3 is too few: no flag) ...
    assert 'data-annotator="ann3"' in html
    assert f"/projects/{worked.id}/items/?annotator=ann1" in html  # a page, not the JSON API
    assert "too few" in html  # ann1's gold accuracy rests on 2 items


def test_page_flags_below_thresholds(client, worked, manager_of, settings):
    settings.TANDEM_QUALITY = {"min_items": 2, "flag_gold_accuracy": 0.75}
    client.force_login(manager_of)
    response = client.get(f"/projects/{worked.id}/quality/")
    rows = {row.annotator: row.flags for row in response.context["report"].annotators}
    assert rows["ann2"] == ["gold_accuracy"] and rows["ann1"] == []
    assert b'class="flagged-row" data-annotator="ann2"' in response.content
    assert b"gold accuracy</span>" in response.content


def test_page_refuses_annotators_and_strangers(client, worked, annotator_of, outsider):
    url = f"/projects/{worked.id}/quality/"
    assert client.get(url).status_code == 302  # login first
    client.force_login(annotator_of)
    assert client.get(url).status_code == 403
    assert client.get(f"/projects/{worked.id}/quality/annotators.csv").status_code == 403
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    assert client.get(f"/projects/{worked.id}/quality/judges.csv").status_code == 404


def test_project_page_links_quality_for_managers_only(client, worked, manager_of, annotator_of):
    link = f'href="/projects/{worked.id}/quality/"'
    client.force_login(manager_of)
    assert link in client.get(f"/projects/{worked.id}/").text
    client.force_login(annotator_of)
    assert link not in client.get(f"/projects/{worked.id}/").text


def test_csv_downloads(client, worked, manager_of, small_minimum):
    client.force_login(manager_of)
    response = client.get(f"/projects/{worked.id}/quality/annotators.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["annotator"] for r in rows] == ["ann1", "ann2", "ann3"]
    assert rows[0]["gold_accuracy_value"] == "1.0" and rows[0]["gold_accuracy_n"] == "2"
    assert rows[0]["position_bias_value"] == "0.5" and rows[0]["skips"] == "1"
    judges = client.get(f"/projects/{worked.id}/quality/judges.csv").content.decode()
    judge = next(csv.DictReader(io.StringIO(judges)))
    assert judge["judge"] == "j1" and judge["order_consistency_n"] == "3"
    assert client.get(f"/projects/{worked.id}/quality/other.csv").status_code == 404


def test_names_are_escaped_and_csv_formulas_defused(client, worked, manager_of):
    item = worked.items.first()
    AnnotationFactory(
        item=item,
        source=Annotation.Source.JUDGE,
        judge='<script>alert("x")</script>',
        payload={"choice": "A"},
        order="AB",
    )
    AnnotationFactory(item=item, external_annotator="=HYPERLINK(1)", payload={"choice": "B"})
    client.force_login(manager_of)
    html = client.get(f"/projects/{worked.id}/quality/").content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    text = client.get(f"/projects/{worked.id}/quality/annotators.csv").content.decode()
    assert "'=HYPERLINK(1)" in text


@pytest.mark.parametrize("n_items", [4, 40])
def test_page_queries_do_not_grow_with_labels(
    client, worked, manager_of, n_items, django_assert_max_num_queries
):
    people = [UserFactory(username=f"extra{i}") for i in range(3)]
    for _ in range(n_items):
        item = ItemFactory(project=worked)
        for person in people:
            AnnotationFactory(item=item, annotator=person, payload={"choice": "A"}, order="BA")
        AnnotationFactory(
            item=item, source=Annotation.Source.JUDGE, judge="j2", payload={"choice": "B"}
        )
    client.force_login(manager_of)
    # session, user, project with the role, the items, the labels, the skips
    with django_assert_max_num_queries(6):
        assert client.get(f"/projects/{worked.id}/quality/").status_code == 200
    with django_assert_max_num_queries(6):
        assert client.get(f"/api/v1/projects/{worked.id}/quality/").status_code == 200


def test_labels_link_finds_imported_annotators_too(api, worked, manager_of):
    item = worked.items.first()
    AnnotationFactory(item=item, external_annotator="imported-ann", payload={"choice": "B"})
    base = f"/api/v1/annotations/?project={worked.id}&annotator="
    imported = api(manager_of).get(base + "imported-ann").json()["results"]
    assert [a["external_annotator"] for a in imported] == ["imported-ann"]
    assert len(api(manager_of).get(base + "ann1").json()["results"]) == 4


@pytest.mark.parametrize(
    "task_type,payloads",
    [
        ("listwise", [{"ranking": ["B", "A", "C"]}, {"ranking": [["A", "B"], "C"]}]),
        ("thumbs", [{"thumb": "up"}, {"thumb": "down"}]),
    ],
)
def test_page_for_listwise_and_thumbs(client, admin_user, task_type, payloads):
    from tests.factories import ProjectFactory

    project = ProjectFactory(task_type=task_type)
    item = ItemFactory(project=project)
    order = "CAB" if task_type == "listwise" else "A"
    for n, payload in enumerate(payloads):
        person = UserFactory(username=f"{task_type}{n}")
        AnnotationFactory(item=item, annotator=person, payload=payload, order=order)
    AnnotationFactory(item=item, source="judge", judge="j", payload=payloads[0], order=order)
    client.force_login(admin_user)
    response = client.get(f"/projects/{project.id}/quality/")
    assert response.status_code == 200
    assert (b'id="bias"' in response.content) == (task_type == "listwise")
    assert client.get(f"/api/v1/projects/{project.id}/quality/").status_code == 200
