"""Human tasks: leasing items to annotators, and taking their labels back.

Every step that can race is made safe by the database, not by luck:

- ``assignment_next`` locks the annotator's own user row (so one person's parallel requests
  queue up and the open-lease limit holds), then takes the head of the item queue with
  ``SELECT ... FOR UPDATE SKIP LOCKED``: two annotators never wait on each other, they take
  different rows. The queue is the partial index ``item_human_pool`` on
  ``(project, human_done + open_leases DESC, id)``, so the query reads a few index entries
  however large the project is; fuller items come first, so items get finished.
- ``Item.human_done`` and ``Item.open_leases`` change in the same transaction as the lease or
  label that changes them; an item is leased only while ``human_done + open_leases < overlap``.
- ``annotation_submit`` locks the lease row, and answers a repeated idempotency key with the
  annotation it already made; the unique key in the database backs this up.
- Expired leases are reclaimed (status ``expired``, the item's ``open_leases`` given back) by the
  next request for work in the project, before it picks an item.

Letters always name candidates in the item's own order; ``Assignment.order`` is the order shown.
"""

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery, prefetch_related_objects
from django.utils import timezone

from accounts.models import User
from tandem.errors import Conflict, InvalidInput, NotFound
from tandem.inputs import text_problem

from . import policies
from .models import Annotation, Assignment, Item, Membership, Project
from .routes import people_routes
from .schema import letters
from .signals import send_labels_added

RECLAIM_BATCH = 500
MAX_SKIP_REASON = 500
MAX_KEY_LENGTH = 200

_rng = random.SystemRandom()


def item_queue(*, project: Project, gold: bool) -> QuerySet[Item]:
    """Items of ``project`` that people may be given (routing decides; see ``people_routes``)."""
    return Item.objects.filter(
        project=project, route__in=people_routes(project), gold__isnull=not gold
    )


def _load():
    return F("human_done") + F("open_leases")


def assignment_reclaim_expired(*, project: Project, now=None) -> int:
    """Mark the project's expired open leases expired and give their items back to the pool.

    Leases locked by a submit in flight are skipped (the submit decides them). Returns how many
    leases were reclaimed. Runs inside the caller's transaction when there is one.
    """
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        expired = list(
            Assignment.objects.filter(project=project, status=Assignment.Status.OPEN)
            .filter(expires_at__lte=now)
            .select_for_update(skip_locked=True)
            .order_by("expires_at")
            .values_list("id", "item_id")[:RECLAIM_BATCH]
        )
        if not expired:
            return 0
        Assignment.objects.filter(id__in=[a for a, _ in expired]).update(
            status=Assignment.Status.EXPIRED, finished_at=now
        )
        _release_leases(Counter(item for _, item in expired))
    return len(expired)


def _release_leases(per_item: Counter) -> None:
    """Take ``n`` open leases off each item; rows are locked in id order so that two reclaims
    running at once cannot deadlock."""
    ids = sorted(per_item)
    list(Item.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id"))
    by_count: dict[int, list[int]] = {}
    for item_id, n in per_item.items():
        by_count.setdefault(n, []).append(item_id)
    for n, item_ids in by_count.items():
        Item.objects.filter(id__in=item_ids).update(open_leases=F("open_leases") - n)


def assignment_open_for_user(*, project: Project, user: User, now=None) -> list[Assignment]:
    """The user's live leases in the project, oldest first."""
    now = now or timezone.now()
    return list(
        Assignment.objects.filter(
            project=project,
            annotator=user,
            status=Assignment.Status.OPEN,
            expires_at__gt=now,
        )
        .select_related("item")
        .order_by("id")
    )


def _pick(project: Project, user: User, *, gold: bool) -> Item | None:
    queue = item_queue(project=project, gold=gold).exclude(
        Exists(Assignment.objects.filter(item=OuterRef("pk"), annotator=user))
    )
    if gold:
        # Gold items check people: each annotator may get each one, whatever the overlap.
        queue = queue.order_by("id")
    else:
        queue = (
            queue.alias(load=_load())
            .filter(load__lt=project.overlap)
            .order_by(_load().desc(), "id")
        )
    return queue.select_for_update(skip_locked=True, of=("self",)).first()


def assignment_next(
    *,
    project: Project,
    user: User,
    access: policies.ProjectAccess | None = None,
    rng: random.Random | None = None,
) -> Assignment | None:
    """Lease the next item to ``user``, or give back a lease they hold; None when nothing is left.

    At most ``project.max_open_leases`` live leases per person: at the limit the oldest one is
    returned again (a reload or a retried request does not burn items). Among new leases, a share
    ``project.gold_ratio`` (at random) comes from gold items when the person has any left.
    ``access`` (the caller's, from ``selectors.project_access_get``) saves reading the role again.
    """
    if access is None or access.user.pk != user.pk or access.project.pk != project.pk:
        access = policies.project_access(user, project)
    if not access.can_annotate:
        raise NotFound("No such project.")
    rng = rng or _rng
    now = timezone.now()
    with transaction.atomic():
        # One person's requests queue up here; different people never wait on each other.
        User.objects.select_for_update().filter(pk=user.pk).values_list("pk").get()
        assignment_reclaim_expired(project=project, now=now)
        open_leases = assignment_open_for_user(project=project, user=user, now=now)
        if len(open_leases) >= project.max_open_leases:
            return open_leases[0]

        want_gold = project.gold_ratio > 0 and rng.random() < project.gold_ratio
        item = _pick(project, user, gold=True) if want_gold else None
        is_gold = item is not None
        if item is None:
            item = _pick(project, user, gold=False)
        if item is None:
            return None

        # Loaded once here; the caller serialises the same cached candidates.
        prefetch_related_objects([item], "candidates")
        order = letters(len(item.candidates.all()))
        rng.shuffle(order)
        assignment = Assignment.objects.create(
            project=project,
            item=item,
            annotator=user,
            order="".join(order),
            is_gold=is_gold,
            expires_at=now + timedelta(seconds=project.lease_seconds),
        )
        Item.objects.filter(pk=item.pk).update(open_leases=F("open_leases") + 1)
    return assignment


@dataclass
class SubmitResult:
    annotation: Annotation
    created: bool


def _lease_for_update(assignment_id: int | str, user: User) -> Assignment:
    """Lock the lease; 404 when it does not exist or its project is not the user's."""
    try:
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("project")
            .annotate(
                _member_role=Subquery(
                    Membership.objects.filter(project=OuterRef("project_id"), user=user).values(
                        "role"
                    )[:1]
                )
            )
            .get(pk=assignment_id)
        )
    except (Assignment.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such task.") from None
    role = policies.role_of(user, assignment._member_role)
    if not policies.ProjectAccess(project=assignment.project, user=user, role=role).can_annotate:
        raise NotFound("No such task.")
    if assignment.annotator_id != user.pk:
        raise Conflict(
            "This task is leased to someone else; ask for your own next task.",
            code="lease_foreign",
        )
    return assignment


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput("An idempotency_key (any unique text made by the client) is required.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"idempotency_key is longer than {MAX_KEY_LENGTH} characters.")
    if problem := text_problem(key):
        raise InvalidInput(f"idempotency_key {problem}.")
    return key


def _existing(key: str, user: User, assignment: Assignment) -> Annotation | None:
    annotation = Annotation.objects.filter(idempotency_key=key).first()
    if annotation is None:
        return None
    if annotation.annotator_id != user.pk or annotation.assignment_id != assignment.pk:
        raise Conflict(
            "This idempotency_key was already used for another submission.", code="key_reused"
        )
    return annotation


def _expire_one(assignment: Assignment, now) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(
        status=Assignment.Status.EXPIRED, finished_at=now
    )
    Item.objects.filter(pk=assignment.item_id).update(open_leases=F("open_leases") - 1)


def _refuse_closed(assignment: Assignment) -> None:
    if assignment.status == Assignment.Status.EXPIRED:
        raise Conflict(
            "This task's lease expired and the item went back to the pool; your answer was not "
            "recorded. Ask for the next task.",
            code="lease_expired",
        )
    if assignment.status == Assignment.Status.SKIPPED:
        raise Conflict("This task was skipped; it takes no label.", code="lease_skipped")
    raise Conflict("This task was already submitted.", code="lease_submitted")


def annotation_submit(
    *,
    assignment_id: int | str,
    user: User,
    payload: Any,
    idempotency_key: Any,
    time_spent_ms: int | None = None,
) -> SubmitResult:
    """Record the user's label on their lease. Idempotent by ``idempotency_key``.

    A repeated key returns the annotation it made (``created=False``), even once the lease is
    closed. A closed, expired or foreign lease is refused with ``Conflict``; an invalid label with
    ``InvalidInput`` and nothing changes. ``time_spent_ms`` (measured by the client) is kept when
    it is plausible, else the time since the lease was made.
    """
    key = _check_key(idempotency_key)
    now = timezone.now()
    expired = False
    with transaction.atomic():
        assignment = _lease_for_update(assignment_id, user)
        existing = _existing(key, user, assignment)
        if existing is not None:
            return SubmitResult(existing, created=False)
        if assignment.status != Assignment.Status.OPEN:
            _refuse_closed(assignment)
        if assignment.expires_at <= now:
            _expire_one(assignment, now)
            expired = True
        else:
            project = assignment.project
            try:
                label = project.schema.validate_label(
                    payload, n_candidates=len(assignment.order), strict=True
                )
            except ValidationError as exc:
                raise InvalidInput("; ".join(exc.messages), details=exc.messages) from None
            elapsed_ms = int((now - assignment.created_at).total_seconds() * 1000)
            if (
                not isinstance(time_spent_ms, int)
                or isinstance(time_spent_ms, bool)
                or not 0 <= time_spent_ms <= elapsed_ms + 5000
            ):
                time_spent_ms = elapsed_ms
            try:
                # No savepoint needed: a failure here rolls the whole submit back.
                annotation = Annotation.objects.create(
                    project_id=assignment.project_id,
                    item_id=assignment.item_id,
                    source=Annotation.Source.HUMAN,
                    annotator=user,
                    assignment=assignment,
                    payload=label,
                    order=assignment.order,
                    time_spent_ms=time_spent_ms,
                    idempotency_key=key,
                    metadata={"gold": True} if assignment.is_gold else {},
                )
            except IntegrityError:
                # The same key was used at the same moment for another lease.
                raise Conflict(
                    "This idempotency_key was already used for another submission.",
                    code="key_reused",
                ) from None
            Assignment.objects.filter(pk=assignment.pk).update(
                status=Assignment.Status.SUBMITTED, finished_at=now
            )
            Item.objects.filter(pk=assignment.item_id).update(
                human_done=F("human_done") + 1, open_leases=F("open_leases") - 1
            )
            send_labels_added(
                project_id=assignment.project_id, source="human", item_ids=[assignment.item_id]
            )
    if expired:
        # Committed above: the item is back in the pool; now tell the person.
        _refuse_closed(Assignment(status=Assignment.Status.EXPIRED))
    return SubmitResult(annotation, created=True)


def assignment_skip(*, assignment_id: int | str, user: User, reason: Any) -> Assignment:
    """Give the lease back with a reason; the item returns to the pool, never to this person."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("Say why you skip (a reason is required).")
    if len(reason) > MAX_SKIP_REASON:
        raise InvalidInput(f"A skip reason is at most {MAX_SKIP_REASON} characters.")
    if problem := text_problem(reason):
        raise InvalidInput(f"The skip reason {problem}.")
    now = timezone.now()
    with transaction.atomic():
        assignment = _lease_for_update(assignment_id, user)
        if assignment.status == Assignment.Status.SKIPPED:
            return assignment  # a repeated skip is harmless
        if assignment.status != Assignment.Status.OPEN:
            _refuse_closed(assignment)
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = reason.strip()
        assignment.finished_at = now
        Assignment.objects.filter(pk=assignment.pk).update(
            status=assignment.status, skip_reason=assignment.skip_reason, finished_at=now
        )
        Item.objects.filter(pk=assignment.item_id).update(open_leases=F("open_leases") - 1)
    return assignment


# How long after a submit the workspace offers "Undo" (a correction of the label just given).
UNDO_SECONDS = 120


def annotation_correct(
    *, annotation_id: int | str, user: User, payload: Any, idempotency_key: Any
) -> SubmitResult:
    """Correct one of the user's own labels: a new annotation that supersedes it (the old one
    stays, append-only). Idempotent by ``idempotency_key``; only the latest label of a chain
    can be corrected (``Conflict`` otherwise); the item's counters do not change."""
    key = _check_key(idempotency_key)
    with transaction.atomic():
        old = (
            Annotation.objects.select_for_update()
            .select_related("project")
            .filter(pk=annotation_id, annotator=user, source=Annotation.Source.HUMAN)
            .first()
        )
        if old is None:
            raise NotFound("No such label of yours.")
        repeated = Annotation.objects.filter(idempotency_key=key).first()
        if repeated is not None:
            if repeated.annotator_id != user.pk or repeated.supersedes_id != old.pk:
                raise Conflict(
                    "This idempotency_key was already used for another submission.",
                    code="key_reused",
                )
            return SubmitResult(repeated, created=False)
        if Annotation.objects.filter(supersedes=old).exists():
            raise Conflict("This label was corrected already; correct the latest one.")
        n_candidates = len(old.order) or old.item.candidates.count()
        try:
            label = old.project.schema.validate_label(
                payload, n_candidates=n_candidates, strict=True
            )
        except ValidationError as exc:
            raise InvalidInput("; ".join(exc.messages), details=exc.messages) from None
        annotation = Annotation.objects.create(
            project_id=old.project_id,
            item_id=old.item_id,
            source=Annotation.Source.HUMAN,
            annotator=user,
            assignment_id=old.assignment_id,
            payload=label,
            order=old.order,
            time_spent_ms=None,
            idempotency_key=key,
            supersedes=old,
            metadata={**old.metadata, "correction": True},
        )
        send_labels_added(project_id=old.project_id, source="human", item_ids=[old.item_id])
    return SubmitResult(annotation, created=True)


def annotation_undoable(*, project_id: int, user: User) -> Annotation | None:
    """The user's last label in the project if it is still within the undo window."""
    since = timezone.now() - timedelta(seconds=UNDO_SECONDS)
    return (
        Annotation.objects.filter(
            project_id=project_id,
            annotator=user,
            source=Annotation.Source.HUMAN,
            created_at__gte=since,
            superseded_by__isnull=True,
        )
        .order_by("-id")
        .first()
    )
