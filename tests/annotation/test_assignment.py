"""The assignment service: leases, overlap, expiry, skip, gold mix, idempotent submit."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.assignment import (
    annotation_submit,
    assignment_next,
    assignment_reclaim_expired,
    assignment_skip,
)
from annotation.models import Annotation, Assignment, Item, Membership
from tandem.errors import Conflict, InvalidInput, NotFound
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory


def members(project, n):
    users = UserFactory.create_batch(n)
    for user in users:
        MembershipFactory(project=project, user=user)
    return users


def submit(lease, user, key=None, **payload):
    payload = payload or {"choice": "A"}
    return annotation_submit(
        assignment_id=lease.pk,
        user=user,
        payload=payload,
        idempotency_key=key or f"k-{lease.pk}",
    )


def refresh(item):
    item.refresh_from_db()
    return item.human_done, item.open_leases


@pytest.mark.django_db
class TestNext:
    def test_leases_an_item_with_a_shuffled_order_and_counts_it(self, project, annotator):
        item = ItemFactory(project=project)
        lease = assignment_next(project=project, user=annotator, rng=random.Random(3))
        assert lease.item == item
        assert sorted(lease.order) == ["A", "B"]
        assert lease.status == Assignment.Status.OPEN
        assert lease.expires_at > timezone.now()
        assert refresh(item) == (0, 1)

    def test_order_is_randomised_per_lease(self, project):
        # 12 leases of 3 candidates: all in one order by chance has probability 6 ** -11.
        ItemFactory.create_batch(12, project=project, candidates=["a", "b", "c"])
        project.overlap = 1
        users = members(project, 12)
        orders = {assignment_next(project=project, user=u).order for u in users}
        assert len(orders) > 1
        assert all(sorted(order) == ["A", "B", "C"] for order in orders)

    def test_at_the_open_lease_limit_the_held_lease_comes_back(self, project, annotator):
        ItemFactory.create_batch(3, project=project)
        first = assignment_next(project=project, user=annotator)
        assert assignment_next(project=project, user=annotator) == first
        project.max_open_leases = 2
        second = assignment_next(project=project, user=annotator)
        assert second != first
        assert assignment_next(project=project, user=annotator) == first
        assert Assignment.objects.filter(annotator=annotator, status="open").count() == 2

    def test_overlap_caps_people_per_item_and_nobody_gets_an_item_twice(self, project):
        project.overlap = 2
        project.save()
        item = ItemFactory(project=project)
        a, b, c = members(project, 3)
        la = assignment_next(project=project, user=a)
        lb = assignment_next(project=project, user=b)
        assert la.item == lb.item == item
        assert assignment_next(project=project, user=c) is None  # two open leases fill it
        submit(la, a)
        assert assignment_next(project=project, user=a) is None  # never twice to a
        submit(lb, b)
        assert refresh(item) == (2, 0)
        assert assignment_next(project=project, user=c) is None

    def test_fuller_items_come_first(self, project):
        project.overlap = 3
        project.save()
        first, _second = ItemFactory.create_batch(2, project=project)
        a, b = members(project, 2)
        assert assignment_next(project=project, user=a).item == first
        # b gets the item already started, so items finish rather than all half-done.
        assert assignment_next(project=project, user=b).item == first

    def test_only_items_routed_to_people(self, project, annotator):
        ItemFactory(project=project, route=Item.Route.JUDGE)
        both = ItemFactory(project=project, route=Item.Route.BOTH)
        assert assignment_next(project=project, user=annotator).item == both

    def test_nothing_left_is_none(self, project, annotator):
        assert assignment_next(project=project, user=annotator) is None

    def test_non_member_and_archived_are_refused(self, project, outsider, annotator):
        ItemFactory(project=project)
        with pytest.raises(NotFound):
            assignment_next(project=project, user=outsider)
        project.archived = True
        with pytest.raises(NotFound):
            assignment_next(project=project, user=annotator)


@pytest.mark.django_db
class TestExpiry:
    def test_expired_lease_returns_the_item_to_the_pool(self, project):
        item = ItemFactory(project=project)
        a, b = members(project, 2)
        lease = assignment_next(project=project, user=a)
        assert assignment_next(project=project, user=b) is None
        Assignment.objects.filter(pk=lease.pk).update(expires_at=timezone.now())
        other = assignment_next(project=project, user=b)
        assert other.item == item
        lease.refresh_from_db()
        assert lease.status == Assignment.Status.EXPIRED
        assert refresh(item) == (0, 1)

    def test_submit_on_an_expired_lease_is_refused_and_gives_the_item_back(self, project):
        item = ItemFactory(project=project)
        (a,) = members(project, 1)
        lease = assignment_next(project=project, user=a)
        Assignment.objects.filter(pk=lease.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        with pytest.raises(Conflict) as exc:
            submit(lease, a)
        assert exc.value.code == "lease_expired"
        assert "expired" in exc.value.message
        assert Annotation.objects.count() == 0
        assert refresh(item) == (0, 0)
        lease.refresh_from_db()
        assert lease.status == Assignment.Status.EXPIRED
        with pytest.raises(Conflict):  # and stays refused
            submit(lease, a)

    def test_reclaim_counts(self, project):
        items = ItemFactory.create_batch(3, project=project)
        users = members(project, 3)
        for user in users:
            assignment_next(project=project, user=user)
        Assignment.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
        assert assignment_reclaim_expired(project=project) == 3
        assert assignment_reclaim_expired(project=project) == 0
        assert [refresh(i) for i in items] == [(0, 0)] * 3


@pytest.mark.django_db
class TestSubmit:
    def test_records_label_order_and_time(self, project, annotator):
        item = ItemFactory(project=project)
        lease = assignment_next(project=project, user=annotator)
        result = annotation_submit(
            assignment_id=lease.pk,
            user=annotator,
            payload={"choice": "B", "strength": 2, "rationale": "clearer"},
            idempotency_key="key-1",
            time_spent_ms=1200,
        )
        assert result.created
        annotation = result.annotation
        assert annotation.payload == {"choice": "B", "strength": 2, "rationale": "clearer"}
        assert annotation.order == lease.order
        assert annotation.source == Annotation.Source.HUMAN
        assert annotation.annotator == annotator
        assert annotation.item == item
        assert annotation.time_spent_ms == 1200
        lease.refresh_from_db()
        assert lease.status == Assignment.Status.SUBMITTED
        assert refresh(item) == (1, 0)

    def test_implausible_client_time_falls_back_to_lease_age(self, project, annotator):
        ItemFactory(project=project)
        lease = assignment_next(project=project, user=annotator)
        result = annotation_submit(
            assignment_id=lease.pk,
            user=annotator,
            payload={"choice": "A"},
            idempotency_key="k",
            time_spent_ms=10**9,
        )
        assert 0 <= result.annotation.time_spent_ms < 60_000

    def test_same_key_twice_makes_one_annotation(self, project, annotator):
        item = ItemFactory(project=project)
        lease = assignment_next(project=project, user=annotator)
        first = submit(lease, annotator, key="dup")
        again = submit(lease, annotator, key="dup")
        assert first.created and not again.created
        assert again.annotation.pk == first.annotation.pk
        assert Annotation.objects.count() == 1
        assert refresh(item) == (1, 0)

    def test_other_key_on_a_submitted_lease_is_refused(self, project, annotator):
        ItemFactory(project=project)
        lease = assignment_next(project=project, user=annotator)
        submit(lease, annotator, key="one")
        with pytest.raises(Conflict) as exc:
            submit(lease, annotator, key="two")
        assert exc.value.code == "lease_submitted"

    def test_key_of_another_submission_is_refused(self, project, annotator):
        project.max_open_leases = 2
        ItemFactory.create_batch(2, project=project)
        one = assignment_next(project=project, user=annotator)
        two = assignment_next(project=project, user=annotator)
        submit(one, annotator, key="same")
        with pytest.raises(Conflict) as exc:
            submit(two, annotator, key="same")
        assert exc.value.code == "key_reused"
        assert Annotation.objects.count() == 1

    def test_foreign_lease_is_refused_and_outsiders_see_nothing(self, project, annotator):
        ItemFactory(project=project)
        (other,) = members(project, 1)
        lease = assignment_next(project=project, user=annotator)
        with pytest.raises(Conflict) as exc:
            submit(lease, other)
        assert exc.value.code == "lease_foreign"
        with pytest.raises(NotFound):
            submit(lease, UserFactory())
        with pytest.raises(NotFound):
            annotation_submit(assignment_id=999999, user=annotator, payload={}, idempotency_key="x")
        assert Annotation.objects.count() == 0

    def test_invalid_label_changes_nothing(self, project, annotator):
        item = ItemFactory(project=project)
        lease = assignment_next(project=project, user=annotator)
        for payload in ({"choice": "C"}, {"choice": "both_bad"}, {"choice": "A", "strength": 9}):
            with pytest.raises(InvalidInput):
                submit(lease, annotator, **payload)
        with pytest.raises(InvalidInput):
            annotation_submit(
                assignment_id=lease.pk, user=annotator, payload={"choice": "A"}, idempotency_key=""
            )
        assert Annotation.objects.count() == 0
        assert refresh(item) == (0, 1)
        assert submit(lease, annotator, choice="tie").created

    def test_listwise_and_thumbs_payloads(self, db):
        for task_type, payload in (
            ("listwise", {"ranking": ["C", "A", "B"]}),
            ("thumbs", {"thumb": "down", "rationale": "wrong"}),
        ):
            project = ProjectFactory(task_type=task_type)
            user = members(project, 1)[0]
            ItemFactory(project=project)
            lease = assignment_next(project=project, user=user)
            assert len(lease.order) == (3 if task_type == "listwise" else 1)
            result = annotation_submit(
                assignment_id=lease.pk, user=user, payload=payload, idempotency_key=task_type
            )
            assert result.annotation.payload == payload


@pytest.mark.django_db
class TestSkip:
    def test_skip_frees_the_item_for_others_not_for_me(self, project):
        item = ItemFactory(project=project)
        a, b = members(project, 2)
        lease = assignment_next(project=project, user=a)
        skipped = assignment_skip(assignment_id=lease.pk, user=a, reason="not my field")
        assert skipped.status == Assignment.Status.SKIPPED
        assert skipped.skip_reason == "not my field"
        assert refresh(item) == (0, 0)
        assert assignment_next(project=project, user=a) is None
        assert assignment_next(project=project, user=b).item == item
        # Skipping twice is harmless; a label on a skipped lease is refused.
        assignment_skip(assignment_id=lease.pk, user=a, reason="again")
        assert refresh(item) == (0, 1)
        with pytest.raises(Conflict):
            submit(lease, a)

    def test_reason_required(self, project, annotator):
        ItemFactory(project=project)
        lease = assignment_next(project=project, user=annotator)
        with pytest.raises(InvalidInput):
            assignment_skip(assignment_id=lease.pk, user=annotator, reason="  ")


@pytest.mark.django_db
class TestGold:
    def test_gold_mix_follows_the_ratio(self, project):
        project.gold_ratio = 0.25
        project.overlap = 1
        ItemFactory.create_batch(5, project=project, gold="A")
        ItemFactory.create_batch(200, project=project)
        (user,) = members(project, 1)
        rng = random.Random(7)
        served = []
        for _ in range(100):
            lease = assignment_next(project=project, user=user, rng=rng)
            served.append(lease.is_gold)
            submit(lease, user)
        # Five gold items, each once for this person; the rest are regular items.
        assert sum(served) == 5
        assert served.index(True) < 30

    def test_gold_items_ignore_overlap_and_never_fill_the_regular_queue(self, project):
        project.gold_ratio = 1.0
        project.overlap = 1
        gold = ItemFactory(project=project, gold="B")
        regular = ItemFactory(project=project)
        a, b = members(project, 2)
        assert assignment_next(project=project, user=a).item == gold
        assert assignment_next(project=project, user=b).item == gold
        project.max_open_leases = 2
        assert assignment_next(project=project, user=a).item == regular

    def test_no_gold_without_ratio(self, project, annotator):
        ItemFactory(project=project, gold="A")
        regular = ItemFactory(project=project)
        assert assignment_next(project=project, user=annotator).item == regular


def test_human_routes_are_route_values():
    from annotation.models import HUMAN_ROUTES

    assert set(HUMAN_ROUTES) <= set(Item.Route.values)
    assert Item.Route.JUDGE not in HUMAN_ROUTES


@pytest.mark.django_db
def test_manager_may_annotate(project, manager):
    ItemFactory(project=project)
    assert assignment_next(project=project, user=manager) is not None
    assert Membership.objects.filter(user=manager).exists()
