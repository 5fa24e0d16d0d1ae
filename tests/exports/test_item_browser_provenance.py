"""The item browser's "provenance" filter: exports registers it with annotation (which imports no
exports), it selects items by where their final preference came from, with one EXISTS, and keeps
the browser's access rules, keyset pages and query count."""

import pytest
from django.test import Client

from annotation.item_browser import ItemFilters, item_browse
from annotation.item_filters import item_filter_get
from exports.models import Preference
from exports.preferences import preferences_recompute
from tests.factories import ItemFactory, ProjectFactory

from .conftest import labelled

pytestmark = pytest.mark.django_db

BOTH_ORDERS_A = [("AB", "A", 0.9), ("BA", "A", 0.8)]


def browse(project, provenance, **kw) -> list[str]:
    filters = ItemFilters(extra={"provenance": provenance}, **kw)
    return [i.external_id for i in item_browse(project=project, filters=filters)[0]]


@pytest.fixture
def decided(project):
    """One item per provenance: people decided, a judge decided, people and judge labelled it
    but people decided, labels that decide nothing, no labels (no Preference row), and one whose
    project-level method counted people and judges together."""
    project.overlap = 3
    project.save(update_fields=["overlap"])
    items = {
        "people": labelled(project, humans=["A", "A", "B"]),
        "judge": labelled(project, judges={"gpt": BOTH_ORDERS_A}),
        "hybrid": labelled(project, humans=["B", "B", "B"], judges={"gpt": BOTH_ORDERS_A}),
        "split": labelled(project, humans=["A", "B"]),  # overlap not reached, no judge
        "flip": labelled(project, judges={"gpt": [("AB", "A", None), ("BA", "B", None)]}),
        "mixed": labelled(project, humans=["A"], judges={"gpt": BOTH_ORDERS_A}),
    }
    for key, item in items.items():
        item.external_id = key
        item.save(update_fields=["external_id"])
    preferences_recompute(project=project)
    items["bare"] = ItemFactory(project=project, external_id="bare")  # after: no Preference row
    # A weighted method that counts judges (bradley_terry, or dawid_skene with judges) marks
    # the item "human+judge" (exports.reliability); majority never does, so set it here.
    Preference.objects.filter(item=items["mixed"]).update(decided_by="human+judge")
    return items


def test_provenance_values(project, decided):
    assert not Preference.objects.filter(item=decided["bare"]).exists()
    assert Preference.objects.get(item=decided["split"]).resolved_at is None
    assert browse(project, "human") == ["people", "hybrid"]
    assert browse(project, "judge") == ["judge"]
    assert browse(project, "mixed") == ["mixed"]
    assert browse(project, "none") == ["split", "flip", "bare"]
    assert browse(project, "") == list(decided)  # "any"
    # Every item is in exactly one class.
    classes = [browse(project, v) for v in ("human", "judge", "mixed", "none")]
    assert sorted(i for found in classes for i in found) == sorted(decided)


def test_provenance_composes_with_other_filters_and_pages(project, decided):
    assert browse(project, "human", judge="yes") == ["hybrid"]
    assert browse(project, "none", human="yes") == ["split"]
    page, after = item_browse(
        project=project, filters=ItemFilters(extra={"provenance": "none"}), limit=2
    )
    assert [i.external_id for i in page] == ["split", "flip"] and after == decided["flip"].pk
    page, after = item_browse(
        project=project, filters=ItemFilters(extra={"provenance": "none"}), after=after, limit=2
    )
    assert [i.external_id for i in page] == ["bare"] and after is None


def test_another_project_preferences_do_not_leak(project, decided):
    other = labelled(ProjectFactory(overlap=1), humans=["A"])
    preferences_recompute(project=other.project)
    assert Preference.objects.get(item=other).decided_by == "human"
    assert browse(project, "human") == ["people", "hybrid"]


def test_the_filter_is_one_exists_not_a_loop(project, decided):
    condition = item_filter_get("provenance").condition("judge")
    sql = str(project.items.filter(condition).query).upper()
    assert "EXISTS" in sql and "EXPORTS_PREFERENCE" in sql


def test_the_page_filters_and_counts_its_queries(
    manager, project, decided, django_assert_max_num_queries
):
    client = Client()
    client.force_login(manager)
    url = f"/projects/{project.pk}/items/"
    html = client.get(url).content.decode()
    assert 'name="provenance"' in html and "Preference from" in html
    assert '<option value="judge">LLM judge</option>' in html
    with django_assert_max_num_queries(6):
        response = client.get(url, {"provenance": "judge"})
    html = response.content.decode()
    assert response.status_code == 200
    assert ">judge</a>" in html and ">people</a>" not in html and ">hybrid</a>" not in html
    assert '<option value="judge" selected>LLM judge</option>' in html
    with django_assert_max_num_queries(6):
        paged = client.get(url, {"provenance": "none", "after": decided["split"].pk})
    html = paged.content.decode()
    assert ">flip</a>" in html and ">bare</a>" in html and ">split</a>" not in html
    bad = client.get(url, {"provenance": "oracle"})
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()


@pytest.mark.parametrize(
    ("who", "code"), [("anonymous", 302), ("annotator", 403), ("outsider", 404), ("manager", 200)]
)
def test_who_may_filter_by_provenance(request, project, decided, who, code):
    client = Client()
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    response = client.get(f"/projects/{project.pk}/items/", {"provenance": "human"})
    assert response.status_code == code
    if code != 200:
        assert b">people</a>" not in response.content
