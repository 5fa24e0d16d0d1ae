"""Preferences: the rules that turn an item's labels into its final label, the recompute on new
labels (signal -> task), and the API."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.assignment import annotation_submit, assignment_next
from annotation.importer import items_import
from annotation.models import Annotation, Membership
from exports.models import Preference
from exports.preferences import preferences_recompute
from routing.models import RoutingPolicy
from tandem.celery import app as celery_app
from tests.factories import AnnotationFactory, ItemFactory, MembershipFactory, ProjectFactory
from tests.routing.factories import item_with_labels


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def pref(item) -> Preference:
    return Preference.objects.get(item=item)


def recompute(project, items=None):
    return preferences_recompute(
        project=project, item_ids=None if items is None else [i.pk for i in items]
    )


@pytest.fixture
def three(db):
    return ProjectFactory(overlap=3)


def test_strict_majority_of_humans_once_overlap_is_reached(three):
    item = item_with_labels(three, humans=["A", "A", "B"])
    recompute(three)
    p = pref(item)
    assert p.choice == "A" and p.provenance == "human" and p.method == "majority"
    assert (p.n_human, p.n_judge) == (3, 0)
    assert p.agreement == pytest.approx(2 / 3) and p.margin == pytest.approx(1 / 3)
    assert p.decided_by == "human" and p.resolved_at is not None


def test_no_strict_majority_is_unresolved(db):
    project = ProjectFactory(overlap=2)
    item = item_with_labels(project, humans=["A", "B"])
    recompute(project)
    p = pref(item)
    assert p.choice is None and p.resolved_at is None and p.agreement is None
    assert p.provenance == "human" and p.n_human == 2


@pytest.mark.parametrize("answer", ["tie", "both_bad"])
def test_ties_and_both_bad_are_kept(three, answer):
    item = item_with_labels(three, humans=[answer, answer, "A"])
    judged = item_with_labels(three, judges={"j": [("AB", answer, 0.9), ("BA", answer, 0.8)]})
    recompute(three)
    assert pref(item).choice == answer
    assert pref(judged).choice == answer and pref(judged).provenance == "judge"


def test_judge_when_its_orders_agree(three):
    item = item_with_labels(three, judges={"j": [("AB", "B", 0.9), ("BA", "B", 0.7)]})
    recompute(three)
    p = pref(item)
    assert p.choice == "B" and p.provenance == "judge" and p.decided_by == "j"
    assert (p.n_human, p.n_judge) == (0, 2) and p.agreement == 1.0 and p.confidence == 0.7


def test_judge_ignored_when_orders_disagree_or_one_is_unparsed(three):
    split = item_with_labels(three, judges={"j": [("AB", "A", None), ("BA", "B", None)]})
    unparsed = item_with_labels(three, judges={"j": [("AB", "A", None), ("BA", None, None)]})
    recompute(three)
    for item in (split, unparsed):
        assert pref(item).choice is None and pref(item).provenance == "judge"


def test_overlap_not_reached_falls_back_to_the_judge_or_stays_open(three):
    hybrid = item_with_labels(
        three, humans=["A", "A"], judges={"j": [("AB", "B", None), ("BA", "B", None)]}
    )
    open_item = item_with_labels(three, humans=["A", "A"])
    recompute(three)
    p = pref(hybrid)
    assert p.choice == "B" and p.provenance == "hybrid" and p.decided_by == "j"
    assert (p.n_human, p.n_judge) == (2, 2)
    assert pref(open_item).choice is None and pref(open_item).provenance == "human"


def test_humans_win_over_the_judge_once_overlap_is_reached(three):
    item = item_with_labels(
        three, humans=["A", "A", "A"], judges={"j": [("AB", "B", None), ("BA", "B", None)]}
    )
    recompute(three)
    assert pref(item).choice == "A" and pref(item).provenance == "hybrid"


def test_first_judge_of_the_policy_decides(three):
    RoutingPolicy.objects.create(project=three, name="all_judge", judges=["zeta", "alpha"])
    both = {"alpha": [("AB", "A", None)], "zeta": [("AB", "B", None), ("BA", "B", None)]}
    item = item_with_labels(three, judges=both)
    only_alpha = item_with_labels(three, judges={"alpha": [("AB", "A", None)]})
    recompute(three)
    p = pref(item)
    assert p.choice == "B" and p.decided_by == "zeta" and p.agreement == pytest.approx(2 / 3)
    assert pref(only_alpha).choice == "A" and pref(only_alpha).decided_by == "alpha"


def test_without_policy_the_judge_sorting_first_decides(three):
    item = item_with_labels(
        three, judges={"beta": [("AB", "B", None)], "alpha": [("AB", "A", None)]}
    )
    recompute(three)
    assert pref(item).choice == "A" and pref(item).decided_by == "alpha"


def test_a_correction_superseding_a_label_changes_the_preference(three):
    item = item_with_labels(three, humans=["A", "A", "B"])
    recompute(three)
    assert pref(item).choice == "A"
    first = Annotation.objects.filter(item=item, payload__choice="A").first()
    AnnotationFactory(
        item=item,
        external_annotator=first.external_annotator,
        payload={"choice": "B"},
        supersedes=first,
    )
    result = recompute(three)
    p = pref(item)
    assert p.choice == "B" and p.n_human == 3 and result.written == 1


def test_recompute_is_idempotent_and_keeps_resolved_at(three):
    item = item_with_labels(three, humans=["A", "A", "A"])
    recompute(three)
    stamp = pref(item).resolved_at
    again = recompute(three)
    assert again.written == 0 and pref(item).resolved_at == stamp
    AnnotationFactory(item=item, external_annotator="h9", payload={"choice": "B"})
    recompute(three, [item])
    assert pref(item).choice == "A" and pref(item).resolved_at == stamp
    assert pref(item).n_human == 4


def test_unlabelled_items_have_an_open_row(three):
    item = ItemFactory(project=three)
    recompute(three)
    p = pref(item)
    assert p.choice is None and p.provenance == "" and (p.n_human, p.n_judge) == (0, 0)


@pytest.mark.django_db
def test_listwise_and_thumbs_majorities():
    listwise = ProjectFactory(task_type="listwise", overlap=3)
    ranked = ItemFactory(project=listwise)
    split = ItemFactory(project=listwise)
    for i, ranking in enumerate([["B", "A", "C"], ["B", "A", "C"], ["A", "B", "C"]]):
        AnnotationFactory(item=ranked, external_annotator=f"h{i}", payload={"ranking": ranking})
    for i, ranking in enumerate([["B", "A", "C"], ["A", "B", "C"], ["C", "B", "A"]]):
        AnnotationFactory(item=split, external_annotator=f"h{i}", payload={"ranking": ranking})
    tied = ItemFactory(project=listwise)  # a nested list is a tied tier
    for i in range(3):
        AnnotationFactory(
            item=tied, external_annotator=f"h{i}", payload={"ranking": ["C", ["A", "B"]]}
        )
    recompute(listwise)
    assert pref(ranked).choice == ["B", "A", "C"] and pref(split).choice is None
    assert pref(tied).choice == ["C", ["A", "B"]] and pref(tied).agreement == 1.0

    thumbs = ProjectFactory(task_type="thumbs", overlap=3)
    item = ItemFactory(project=thumbs)
    for i, thumb in enumerate(["down", "up", "down"]):
        AnnotationFactory(item=item, external_annotator=f"h{i}", payload={"thumb": thumb})
    recompute(thumbs)
    assert pref(item).choice == "down" and pref(item).agreement == pytest.approx(2 / 3)


def test_recompute_of_a_project_costs_a_fixed_number_of_queries(three):
    for _ in range(30):
        item_with_labels(
            three, humans=["A", "B", "A"], judges={"j": [("AB", "A", None), ("BA", "A", None)]}
        )
    with CaptureQueriesContext(connection) as queries:
        recompute(three)
    # savepoint, lock, items, policy, labels, stored rows, upsert (stage, insert, truncate),
    # release
    assert len(queries) <= 11
    assert Preference.objects.filter(project=three, choice="A").count() == 30


# --- recompute on new labels: annotation's signal -> exports' task ---------------------------


def test_a_submit_recomputes_the_item(
    project, annotator, eager, django_capture_on_commit_callbacks
):
    item = ItemFactory(project=project)  # overlap 1
    lease = assignment_next(project=project, user=annotator)
    with django_capture_on_commit_callbacks(execute=True):
        annotation_submit(
            assignment_id=lease.pk, user=annotator, payload={"choice": "B"}, idempotency_key="k"
        )
    p = pref(item)
    assert p.choice == "B" and p.provenance == "human" and p.n_human == 1


def test_an_import_with_labels_recomputes_the_project(
    project, eager, django_capture_on_commit_callbacks
):
    rows = [
        (
            i + 1,
            {
                "external_id": f"x{i}",
                "prompt": f"p{i}",
                "candidates": [{"text": "a"}, {"text": "b"}],
                "labels": [{"source": "judge", "judge": "j", "order": "AB", "choice": "A"}],
            },
        )
        for i in range(3)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        items_import(project=project, rows=rows)
    prefs = Preference.objects.filter(project=project)
    assert prefs.count() == 3 and {p.choice for p in prefs} == {"A"}
    assert {p.provenance for p in prefs} == {"judge"}


def test_the_task_is_idempotent_and_tolerates_a_deleted_project(project):
    from exports.tasks import preferences_recompute_task

    item = item_with_labels(project, humans=["A"])
    first = preferences_recompute_task.apply(args=(project.pk, [item.pk])).get()
    second = preferences_recompute_task.apply(args=(project.pk, [item.pk])).get()
    assert first == {"items": 1, "written": 1, "resolved": 1}
    assert second == {"items": 1, "written": 0, "resolved": 1}
    assert preferences_recompute_task.apply(args=(10**9, None)).get() is None


# --- API ----------------------------------------------------------------------------------


def url(project) -> str:
    return f"/api/v1/projects/{project.pk}/preferences/"


def test_api_lists_preferences_with_filters(api, three, manager):
    MembershipFactory(project=three, user=manager, role=Membership.Role.MANAGER)
    RoutingPolicy.objects.create(project=three, name="all_judge", judges=["j"])
    human = item_with_labels(three, humans=["A", "A", "B"])
    judged = item_with_labels(three, judges={"j": [("AB", "B", None), ("BA", "B", None)]})
    hybrid = item_with_labels(three, humans=["A"], judges={"j": [("AB", "A", None)]})
    open_item = item_with_labels(three, humans=["A", "B"])
    recompute(three)
    client = api(manager)

    body = client.get(url(three)).json()
    rows = body["results"]
    assert [r["item"] for r in rows] == [human.pk, judged.pk, hybrid.pk, open_item.pk]
    assert rows[0]["external_id"] == human.external_id and rows[0]["choice"] == "A"
    assert rows[0]["resolved"] is True and rows[3]["resolved"] is False
    assert set(rows[0]) >= {"provenance", "agreement", "n_human", "n_judge", "resolved_at"}

    def ids(query):
        response = client.get(url(three) + query)
        assert response.status_code == 200, response.content
        return [r["item"] for r in response.json()["results"]]

    assert ids("?provenance=judge") == [judged.pk]
    assert ids("?provenance=hybrid") == [hybrid.pk]
    assert ids("?resolved=false") == [open_item.pk]
    assert ids("?resolved=true") == [human.pk, judged.pk, hybrid.pk]
    assert ids("?agreement_min=0.9") == [judged.pk, hybrid.pk]
    assert ids("?resolved=true&provenance=human") == [human.pk]


@pytest.mark.parametrize(
    "query", ["?provenance=robot", "?resolved=maybe", "?agreement_min=2", "?agreement_min=x"]
)
def test_api_refuses_bad_filters(api, project, manager, query):
    response = api(manager).get(url(project) + query)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"


def test_api_pages_by_keyset(api, project, manager):
    items = [item_with_labels(project, humans=["A"]) for _ in range(5)]
    recompute(project)
    client = api(manager)
    page = client.get(url(project) + "?limit=2").json()
    seen = [r["item"] for r in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [r["item"] for r in page["results"]]
    assert seen == [i.pk for i in items]


def test_api_permissions(api, project, manager, annotator, outsider, admin_user):
    assert api(manager).get(url(project)).status_code == 200
    assert api(admin_user).get(url(project)).status_code == 200
    assert api(annotator).get(url(project)).status_code == 403
    assert api(outsider).get(url(project)).status_code == 404
    assert api().get(url(project)).status_code in (401, 403)
    assert api(manager).get("/api/v1/projects/999999/preferences/").status_code == 404


def test_api_query_count_does_not_grow_with_rows(
    api, project, manager, django_assert_max_num_queries
):
    for _ in range(40):
        item_with_labels(project, humans=["A"])
    recompute(project)
    client = api(manager)
    with django_assert_max_num_queries(4):  # token, project + role, page
        response = client.get(url(project))
    assert response.status_code == 200 and len(response.json()["results"]) == 40


def test_a_project_is_recomputed_chunk_by_chunk(three, monkeypatch):
    from exports import preferences

    monkeypatch.setattr(preferences, "CHUNK_ITEMS", 2)
    items = [item_with_labels(three, humans=["B", "B", "A"]) for _ in range(5)]
    ItemFactory(project=ProjectFactory())  # another project's item between the ids
    items.append(item_with_labels(three, humans=["A", "A", "A"]))
    result = recompute(three)
    assert result.items == 6 and result.written == 6 and result.resolved == 6
    assert [pref(i).choice for i in items] == ["B"] * 5 + ["A"]
