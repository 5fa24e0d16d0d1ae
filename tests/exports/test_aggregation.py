"""Aggregation methods per project (issue 11, item 1 and the recompute API of item 4):
Dawid-Skene, gold-weighted and Bradley-Terry Preferences from labels in the database, the
project's choice, the recompute task with its progress and failures, the API and the card."""

import random

import pytest

from accounts.models import Role
from annotation.models import Annotation
from exports import aggregation
from exports.models import Aggregation, Preference
from exports.preferences import preferences_recompute
from tandem.celery import app as celery_app
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def switch(eager, django_capture_on_commit_callbacks):
    """``switch(project, method, ...)``: set the method and run the recompute task (eagerly,
    after commit, as in production)."""

    def run(project, method, **options):
        with django_capture_on_commit_callbacks(execute=True):
            return aggregation.aggregation_recompute(project=project, method=method, **options)

    return run


def label(item, who, verdict, *, key="choice", strength=None, source=Annotation.Source.HUMAN):
    payload = {key: verdict}
    if strength is not None:
        payload["strength"] = strength
    if source == Annotation.Source.JUDGE:
        return AnnotationFactory(item=item, source=source, judge=who, payload=payload)
    return AnnotationFactory(item=item, source=source, external_annotator=who, payload=payload)


def choices(project) -> dict[int, object]:
    return dict(Preference.objects.filter(project=project).values_list("item_id", "choice"))


@pytest.fixture
def careless(db):
    """A pairwise project (overlap 2): three reliable annotators (right 90% of the time) and a
    careless one answering at random. 120 items have two reliable labels and the careless one's
    (the majority is the reliable pair's when they agree); 40 "split" items have one reliable
    label and the careless one's, which contradicts it: the majority is a tie (unresolved),
    Dawid-Skene, knowing the careless one is random, follows the reliable one."""
    rng = random.Random(11)
    project = ProjectFactory(overlap=2)
    truth, split = {}, []
    reliable = ["r1", "r2", "r3"]

    def reliable_says(t):
        return t if rng.random() < 0.9 else {"A": "B", "B": "A"}[t]

    for n in range(160):
        item = ItemFactory(project=project)
        t = truth[item.pk] = rng.choice("AB")
        if n < 120:
            for who in rng.sample(reliable, 2):
                label(item, who, reliable_says(t))
            label(item, "careless", rng.choice("AB"))
        else:
            label(item, rng.choice(reliable), t)
            label(item, "careless", {"A": "B", "B": "A"}[t])
            split.append(item.pk)
    return project, truth, split


def test_dawid_skene_follows_the_reliable_annotators_end_to_end(careless, switch):
    project, truth, split = careless
    preferences_recompute(project=project)  # majority first
    majority = choices(project)
    assert all(majority[i] is None for i in split)  # 1 against 1: no strict majority

    row = switch(project, "dawid_skene")
    row.refresh_from_db()
    assert row.method == "dawid_skene" and row.include_judges is None
    ds = Preference.objects.filter(project=project)
    assert {p.method for p in ds} == {"dawid_skene"}
    by_item = {p.item_id: p for p in ds}
    # The ties the careless one made are broken in favour of the reliable annotator.
    assert sum(by_item[i].choice == truth[i] for i in split) == len(split)
    assert all(by_item[i].agreement == 0.5 for i in split)
    assert all(by_item[i].confidence > 0.8 for i in split)
    assert all(by_item[i].margin == by_item[i].agreement for i in split)  # no strengths
    assert {by_item[i].decided_by for i in split} == {"human"}
    # And overall Dawid-Skene is at least as right as the majority.
    right = sum(by_item[i].choice == t for i, t in truth.items())
    assert right >= sum(majority[i] == t for i, t in truth.items()) + len(split)
    state = aggregation.aggregation_state(project=project)
    assert state["status"] == "done" and state["include_judges"] is False
    assert state["items_done"] == state["items_total"] == 160
    # Idempotent: the same labels again write nothing.
    again = preferences_recompute(project=project)
    assert (again.items, again.written) == (160, 0)


def test_dawid_skene_downweights_the_careless_annotator(careless):
    from exports import aggregators
    from exports.preferences import votes_load

    project, _, _ = careless
    votes = votes_load(project=project)
    assert len(votes) == 120 * 3 + 40 * 2 and set(votes["source"]) == {"human"}
    weights = aggregators.dawid_skene(votes).workers
    assert weights["careless"] < 0.6 < 0.8 < min(weights[w] for w in ("r1", "r2", "r3"))


def test_switching_back_to_majority_restores_the_majority_labels(careless, switch):
    project, _, _ = careless
    preferences_recompute(project=project)
    before = {
        p.item_id: (p.choice, p.agreement, p.margin, p.confidence, p.method)
        for p in Preference.objects.filter(project=project)
    }
    switch(project, "dawid_skene")
    assert choices(project) != {i: c for i, (c, *_) in before.items()}
    switch(project, "majority")
    after = {
        p.item_id: (p.choice, p.agreement, p.margin, p.confidence, p.method)
        for p in Preference.objects.filter(project=project)
    }
    assert after == before
    assert Preference.objects.filter(project=project, margins__isnull=False).count() == 0


def test_judges_are_left_out_of_dawid_skene_unless_asked(db, switch):
    project = ProjectFactory(overlap=1)
    item = ItemFactory(project=project)
    label(item, "h", "A")
    label(item, "j", "B", source=Annotation.Source.JUDGE)
    label(item, "j2", "B", source=Annotation.Source.JUDGE)
    switch(project, "dawid_skene")
    p = Preference.objects.get(item=item)
    assert p.choice == "A" and p.decided_by == "human" and (p.n_human, p.n_judge) == (1, 2)
    switch(project, "dawid_skene", include_judges=True)
    p.refresh_from_db()
    assert p.choice == "B" and p.decided_by == "human+judge"
    assert aggregation.aggregation_state(project=project)["include_judges"] is True


def test_gold_weighted_worked_example(db, switch):
    """Gold items g1..g4 (answer A): "good" answers all 4 right, "bad1" and "bad2" all wrong.
    Weights (right + 1) / (answered + 2): good 5/6, bad 1/6 each. On the open item good says A
    (strength 1 of a 2-step scale), both bad say B: the majority is B (2 of 3); gold-weighted
    gives A with confidence (5/6) / (5/6 + 2/6) = 5/7, agreement 1/3 and margin
    agreement x strength / scale = 1/3 x 1/2 = 1/6."""
    project = ProjectFactory(overlap=3)
    for _ in range(4):
        gold = ItemFactory(project=project, gold="A")
        label(gold, "good", "A")
        label(gold, "bad1", "B")
        label(gold, "bad2", "B")
    item = ItemFactory(project=project)
    label(item, "good", "A", strength=1)
    label(item, "bad1", "B", strength=2)
    label(item, "bad2", "B", strength=2)
    preferences_recompute(project=project)
    assert Preference.objects.get(item=item).choice == "B"

    switch(project, "gold_weighted")
    p = Preference.objects.get(item=item)
    assert p.method == "gold_weighted" and p.choice == "A"
    assert p.confidence == pytest.approx(5 / 7)
    assert p.agreement == pytest.approx(1 / 3)
    assert p.strength == 1.0
    assert p.margin == pytest.approx(1 / 6)
    assert set(choices(project).values()) == {"A"}


def test_bradley_terry_ranks_a_planted_order(db, switch):
    """Planted order C > A > D > B. Five rankings, no two of three alike (so no majority), each
    one swap away from the planted order at most."""
    project = ProjectFactory(task_type="listwise", overlap=5)
    item = ItemFactory(project=project)
    for who, ranking in [
        ("h1", ["C", "A", "D", "B"]),
        ("h2", ["A", "C", "D", "B"]),
        ("h3", ["C", "D", "A", "B"]),
        ("h4", ["C", "A", "B", "D"]),
        ("h5", ["C", "A", "D", "B"]),
    ]:
        label(item, who, ranking, key="ranking")
    preferences_recompute(project=project)
    assert Preference.objects.get(item=item).choice is None  # 2 of 5 alike: no majority

    switch(project, "bradley_terry")
    p = Preference.objects.get(item=item)
    assert p.method == "bradley_terry" and p.choice == ["C", "A", "D", "B"]
    assert set(p.margins) == {"C>A", "C>D", "C>B", "A>D", "A>B", "D>B"}
    assert all(0.5 < v < 1 for v in p.margins.values())
    assert p.margins["C>B"] > p.margins["C>A"]  # the farther apart, the surer
    assert p.confidence == pytest.approx(p.margins["C>A"])
    assert p.agreement == pytest.approx(4 / 5) and p.margin == p.agreement


def test_new_labels_use_the_projects_method_debounced(
    careless, django_capture_on_commit_callbacks, monkeypatch
):
    from exports import tasks

    project, _, _ = careless
    queued, direct = [], []
    monkeypatch.setattr(
        tasks.preferences_aggregate_task,
        "apply_async",
        lambda args, countdown: queued.append((args, countdown)),
    )
    monkeypatch.setattr(
        tasks.preferences_recompute_task, "delay", lambda *args: direct.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        aggregation.preferences_schedule(project_id=project.pk, item_ids=[1])
    assert direct == [(project.pk, [1])] and queued == []  # majority: the named items, at once

    Aggregation.objects.create(project=project, method="dawid_skene")
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(5):  # a burst of labels
            aggregation.preferences_schedule(project_id=project.pk, item_ids=[n])
    assert queued == [((project.pk,), aggregation.DEBOUNCE_S)]  # coalesced into one
    row = Aggregation.objects.get(project=project)
    assert row.status == "queued" and row.generation == 1

    # Labels that arrive while it runs queue one more recompute, which the first does not end.
    aggregation.aggregation_transition(row, "running", run_generation=1)
    with django_capture_on_commit_callbacks(execute=True):
        aggregation.preferences_schedule(project_id=project.pk, item_ids=[9])
    assert len(queued) == 2
    aggregation._finish(project.pk, 1, "done")
    assert Aggregation.objects.get(project=project).status == "queued"
    # The queued task then takes the request; a duplicate finds nothing to do.
    assert aggregation.aggregation_run(project_id=project.pk).items == 160
    assert aggregation.aggregation_run(project_id=project.pk) is None
    assert Aggregation.objects.get(project=project).status == "done"


# --- the Celery path: progress and failures ----------------------------------------------------


def test_task_reports_progress(careless, switch, monkeypatch):
    from exports import preferences

    project, _, _ = careless
    monkeypatch.setattr(preferences, "CHUNK_ITEMS", 50)
    seen = []
    real_set = aggregation.cache.set

    def record(key, value, timeout=None):
        seen.append(value)
        real_set(key, value, timeout)

    monkeypatch.setattr(aggregation.cache, "set", record)
    switch(project, "dawid_skene")
    assert seen == [
        {"done": 0, "total": None},
        {"done": 50, "total": 160},
        {"done": 100, "total": 160},
        {"done": 150, "total": 160},
        {"done": 160, "total": 160},
    ]


def test_task_failure_records_the_reason(careless, switch, monkeypatch, settings):
    """A worker does not propagate the error to the caller: ``on_failure`` records it."""
    project, _, _ = careless
    settings.CELERY_TASK_EAGER_PROPAGATES = False

    def boom(**_):
        raise ValueError("crowd-kit broke")

    monkeypatch.setattr(aggregation, "preferences_recompute", boom)
    switch(project, "dawid_skene")
    state = aggregation.aggregation_state(project=project)
    assert state["status"] == "failed" and state["error"] == "ValueError: crowd-kit broke"
    assert state["running"] is False


# --- API ---------------------------------------------------------------------------------------


def url(project) -> str:
    return f"/api/v1/projects/{project.pk}/preferences/recompute/"


@pytest.mark.parametrize("who", ["manager", "admin"])
def test_api_recomputes_with_a_method(
    api, careless, eager, who, django_capture_on_commit_callbacks
):
    project, _, _ = careless
    user = UserFactory(role=Role.ADMIN if who == "admin" else Role.MANAGER)
    if who == "manager":
        from annotation.models import Membership
        from tests.factories import MembershipFactory

        MembershipFactory(project=project, user=user, role=Membership.Role.MANAGER)
    client = api(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url(project), {"method": "dawid_skene", "include_judges": False}, format="json"
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["method"] == "dawid_skene" and body["include_judges"] is False
    assert body["status_url"].endswith(url(project))
    state = client.get(body["status_url"]).json()
    assert state["status"] == "done" and state["fraction"] == 1.0
    assert state["result"] == {"items": 160, "written": 160, "resolved": 160}
    assert state["methods"] == ["majority", "dawid_skene", "gold_weighted"]
    assert set(Preference.objects.filter(project=project).values_list("method", flat=True)) == {
        "dawid_skene"
    }


def test_api_refuses_annotators_and_strangers(api, project, annotator, outsider):
    body = {"method": "dawid_skene"}
    assert api(annotator).post(url(project), body, format="json").status_code == 403
    assert api(annotator).get(url(project)).status_code == 403
    assert api(outsider).post(url(project), body, format="json").status_code == 404
    assert api(outsider).get(url(project)).status_code == 404
    assert api().post(url(project), body, format="json").status_code in (401, 403)
    assert not Aggregation.objects.filter(project=project).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"method": "median"},
        {},
        {"method": ["majority"]},
        {"method": "bradley_terry"},  # a pairwise project
        {"method": "majority", "include_judges": "yes"},
    ],
)
def test_api_refuses_bad_input(api, project, manager, body):
    response = api(manager).post(url(project), body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    if "include_judges" not in body:
        assert error["details"]["valid"] == ["majority", "dawid_skene", "gold_weighted"]
    assert not Aggregation.objects.filter(project=project).exists()


def test_api_listwise_offers_bradley_terry(api, manager, db):
    project = ProjectFactory(task_type="listwise")
    from annotation.models import Membership
    from tests.factories import MembershipFactory

    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    response = api(manager).post(url(project), {"method": "dawid_skene"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["valid"] == ["majority", "bradley_terry"]


def test_api_query_counts(api, project, manager, django_assert_max_num_queries):
    client = api(manager)
    with django_assert_max_num_queries(4):
        assert client.get(url(project)).status_code == 200
    with django_assert_max_num_queries(12):
        response = client.post(url(project), {"method": "dawid_skene"}, format="json")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    with django_assert_max_num_queries(4):
        assert client.get(url(project)).json()["status"] == "queued"


# --- the quality page's card -------------------------------------------------------------------


def test_card_on_the_quality_page(client, project, manager, annotator, eager):
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/quality/").content.decode()
    assert f'hx-get="/projects/{project.pk}/aggregation/"' in page
    card = client.get(f"/projects/{project.pk}/aggregation/").content.decode()
    assert 'id="aggregation"' in card and "<script" not in card
    assert '<option value="dawid_skene">' in card and "every 1s" not in card
    ItemFactory(project=project)
    response = client.post(
        f"/projects/{project.pk}/aggregation/", {"method": "gold_weighted", "include_judges": ""}
    )
    assert response.status_code == 200
    assert "<b data-method>gold_weighted</b>" in response.content.decode()
    assert Aggregation.objects.get(project=project).include_judges is None
    bad = client.post(f"/projects/{project.pk}/aggregation/", {"method": "nope"})
    assert bad.status_code == 400
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/aggregation/").status_code == 403


def test_card_polls_while_running(client, project, manager):
    Aggregation.objects.create(project=project, method="dawid_skene", status="running")
    client.force_login(manager)
    card = client.get(f"/projects/{project.pk}/aggregation/").content.decode()
    assert 'hx-trigger="every 1s"' in card and "<progress" in card
