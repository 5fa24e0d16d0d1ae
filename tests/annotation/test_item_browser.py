"""The item browser: who sees it, filters, full-text search, keyset pages, query counts, and the
item page (labels, sanitised candidates, escaped raw answers, routing decisions)."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from annotation import item_browser
from annotation.item_browser import ItemFilters, item_browse
from annotation.models import Annotation, Candidate, Item
from routing.router.models import RoutingDecision
from tests.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.pages import client_for

pytestmark = pytest.mark.django_db


def ids(items) -> list[str]:
    return [i.external_id for i in items]


@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", 302), ("annotator", 403), ("outsider", 404), ("manager", 200), ("admin", 200)],
)
def test_who_may_browse_items(request, project, who, code):
    item = ItemFactory(project=project)
    user = (
        None
        if who == "anonymous"
        else request.getfixturevalue("admin_user" if who == "admin" else who)
    )
    client = client_for(user)
    assert client.get(f"/projects/{project.pk}/items/").status_code == code
    assert client.get(f"/projects/{project.pk}/items/{item.pk}/").status_code == code


def test_a_stranger_item_is_404(manager, project):
    other = ItemFactory()
    assert client_for(manager).get(f"/projects/{project.pk}/items/{other.pk}/").status_code == 404


def test_filters(project, annotator):
    plain = ItemFactory(project=project, external_id="plain", metadata={"lang": "fi"})
    human = ItemFactory(project=project, external_id="human", route="human", gold={"choice": "A"})
    AnnotationFactory(item=human, annotator=annotator, payload={"choice": "A"})
    judged = ItemFactory(project=project, external_id="judged", route="judge")
    for order, choice in (("AB", "A"), ("BA", "B")):  # the judge flips with the order
        AnnotationFactory(
            item=judged, source="judge", judge="j", order=order, payload={"choice": choice}
        )
    steady = ItemFactory(project=project, external_id="steady", route="judge")
    for order in ("AB", "BA"):
        AnnotationFactory(
            item=steady, source="judge", judge="j", order=order, payload={"choice": "A"}
        )
    Item.objects.filter(pk=plain.pk).update(created_at=timezone.now() - dt.timedelta(days=10))

    def browse(**kw):
        return ids(item_browse(project=project, filters=ItemFilters(**kw))[0])

    assert browse() == ["plain", "human", "judged", "steady"]
    assert browse(route="judge") == ["judged", "steady"]
    assert browse(human="yes") == ["human"]
    assert browse(judge="no") == ["plain", "human"]
    assert browse(gold="yes") == ["human"] and "human" not in browse(gold="no")
    assert browse(disagreement=True) == ["judged"]
    assert browse(annotator=annotator.username) == ["human"]
    assert browse(meta_key="lang", meta_value="fi") == ["plain"]
    today = timezone.localdate()
    assert "plain" not in browse(created_from=today)
    assert browse(created_to=today - dt.timedelta(days=5)) == ["plain"]


def test_search_finds_prompt_and_response_words(project):
    ItemFactory(project=project, external_id="p", prompt="How do volcanoes erupt?")
    ItemFactory(project=project, external_id="c", prompt="Tell me", candidates=["Lava flows", "x"])
    ItemFactory(project=project, external_id="n", prompt="Nothing here")

    def search(q):
        return ids(item_browse(project=project, filters=ItemFilters(q=q))[0])

    assert search("volcanoes") == ["p"]
    assert search("lava") == ["c"]
    assert search("volcanoes or lava") == ["p", "c"] if connection.vendor == "postgresql" else True
    assert search("unicorns") == []
    if connection.vendor == "postgresql":
        assert search("erupting") == ["p"]  # English stemming


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL full-text search")
def test_search_can_use_the_gin_indexes(project):
    """Each side of the search is the indexed expression (the planner picks the GIN index for
    rare words; here sequential scans are off so that a tiny table still shows it)."""
    ItemFactory.create_batch(3, project=project)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_indexscan = off")
        prompt_plan = Item.objects.filter(item_browser._prompt_match("lava")).explain()
        candidate_plan = Candidate.objects.filter(item_browser.TextMatch("text", "lava")).explain()
        cursor.execute("RESET enable_seqscan")
        cursor.execute("RESET enable_indexscan")
    assert "item_search_vector" in prompt_plan
    assert "candidate_search_vector" in candidate_plan


def test_keyset_pages_and_query_count(manager, project, django_assert_max_num_queries):
    for i in range(55):
        item = ItemFactory(project=project, external_id=f"i{i:02d}")
        AnnotationFactory(item=item, payload={"choice": "A"})
    client = client_for(manager)
    with django_assert_max_num_queries(6):
        first = client.get(f"/projects/{project.pk}/items/")
    html = first.content.decode()
    assert ">i00</a>" in html and ">i49</a>" in html and ">i50</a>" not in html
    last_id = Item.objects.get(external_id="i49").pk
    assert f"after={last_id}" in html
    with django_assert_max_num_queries(6):
        second = client.get(f"/projects/{project.pk}/items/", {"after": last_id, "human": "yes"})
    assert ">i50</a>" in second.content.decode() and ">i49</a>" not in second.content.decode()
    partial = client.get(
        f"/projects/{project.pk}/items/", {"q": "Prompt"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert partial.lstrip().startswith('<div id="items">')


def test_bad_filters_are_field_errors(manager, project):
    response = client_for(manager).get(
        f"/projects/{project.pk}/items/",
        {"meta_key": "a__b", "created_from": "2026-02-02", "created_to": "2026-01-01"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Letters, digits" in html and "Must not be before the start." in html


def test_item_page_shows_everything_safely(
    manager, project, annotator, django_assert_max_num_queries
):
    item = ItemFactory(
        project=project,
        prompt="Why is the sky **blue**?",
        candidates=["<script>alert(1)</script>Rayleigh", "```python\nprint(1)\n```"],
    )
    human = AnnotationFactory(
        item=item,
        annotator=annotator,
        order="BA",
        payload={"choice": "A", "rationale": "clearer", "aspects": {"honesty": "tie"}},
    )
    AnnotationFactory(item=item, annotator=annotator, payload={"choice": "B"}, supersedes=human)
    AnnotationFactory(
        item=item,
        source="judge",
        judge="gpt",
        order="AB",
        payload={"choice": None},
        raw_output="<img src=x onerror=alert(1)> I think A",
    )
    RoutingDecision.objects.create(
        project=project, item=item, policy_name="rules", policy_version=3, target="both",
        reason="long prompt: people and judge",
    )  # fmt: skip
    client = client_for(manager)
    with django_assert_max_num_queries(8):
        response = client.get(f"/projects/{project.pk}/items/{item.pk}/")
    html = response.content.decode()
    assert "<strong>blue</strong>" in html
    assert "<script>alert" not in html and "&lt;img src=x onerror" in html
    assert "<img" not in html
    assert annotator.username in html and "BA" in html and "clearer" in html
    assert "honesty: tie" in html and f"corrects #{human.pk}" in html
    assert 'class="superseded"' in html
    assert "no answer parsed" in html and "gpt" in html
    assert "long prompt: people and judge" in html and "rules v3" in html
    assert f'href="/projects/{project.pk}/items/{item.pk}/routing/"' in html
    assert Annotation.objects.filter(item=item).count() == 3


def test_project_page_links_the_item_browser(manager, project):
    html = client_for(manager).get(f"/projects/{project.pk}/").content.decode()
    assert f'href="/projects/{project.pk}/items/"' in html
    html = client_for(UserFactory()).get(f"/projects/{project.pk}/").content.decode()
    assert "/items/" not in html


@pytest.mark.parametrize("probe", [1000, 2])  # 2: the search walks the ids instead
def test_search_pages_are_the_same_by_index_or_by_walk(project, monkeypatch, probe):
    monkeypatch.setattr(item_browser, "SEARCH_PROBE", probe)
    other = ItemFactory(candidates=["lava everywhere", "x"])  # another project's match
    made = []
    for i in range(7):
        prompt = "lava lamp" if i == 3 else f"plain {i}"
        candidates = ["hot lava", "cold"] if i % 2 == 0 else ["calm", "quiet"]
        made.append(
            ItemFactory(project=project, external_id=f"s{i}", prompt=prompt, candidates=candidates)
        )
    expected = ["s0", "s2", "s3", "s4", "s6"]
    page, after = item_browse(project=project, filters=ItemFilters(q="lava"), limit=3)
    assert ids(page) == expected[:3] and after == made[3].pk
    page, after = item_browse(project=project, filters=ItemFilters(q="lava"), after=after, limit=3)
    assert ids(page) == expected[3:] and after is None
    assert other.pk not in [i.pk for i in page]
