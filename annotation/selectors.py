"""Reads: what a user may see. Missing and forbidden look the same (404) to a caller."""

from typing import Any

from django.db.models import (
    Aggregate,
    Avg,
    Count,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.utils import timezone

from accounts.models import User
from tandem.errors import Forbidden, NotFound

from . import policies
from .models import (
    Annotation,
    Assignment,
    ImportJob,
    Item,
    Membership,
    MembershipChange,
    Project,
)
from .routes import people_routes


def project_list_for_user(*, user: User) -> QuerySet[Project]:
    projects = Project.objects.all()
    if user.is_admin:
        return projects
    return projects.filter(Exists(Membership.objects.filter(project=OuterRef("pk"), user=user)))


def project_access_get(
    *, user: User, project_id: int | str, manage: bool = False
) -> policies.ProjectAccess:
    """The caller's access to a project they may see, else NotFound (the same for missing and
    hidden). With ``manage``, a member who may see but not manage it gets Forbidden.

    The role is read in the same query as the project, so the predicates that follow ask none.
    """
    projects = project_list_for_user(user=user).annotate(_member_role=_role_subquery(user))
    try:
        project = projects.get(pk=project_id)
    except (Project.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such project.") from None
    access = policies.ProjectAccess(
        project=project, user=user, role=policies.role_of(user, project._member_role)
    )
    if manage and not access.can_manage:
        raise Forbidden("Only the project's managers may do this.")
    return access


def project_get_for_user(*, user: User, project_id: int | str, manage: bool = False) -> Project:
    """``project_access_get(...).project``, for callers that need no more than the project."""
    return project_access_get(user=user, project_id=project_id, manage=manage).project


def _role_subquery(user: User) -> Subquery:
    return Subquery(Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1])


def project_counts(*, project: Project) -> dict[str, int]:
    """The counters at the top of a project's page: items, human and judge labels."""
    counts = project.annotations.aggregate(
        human=Count("id", filter=Q(source=Annotation.Source.HUMAN)),
        judge=Count("id", filter=Q(source=Annotation.Source.JUDGE)),
    )
    return {"items": project.items.count(), **counts}


def item_list(*, project: Project) -> QuerySet[Item]:
    return Item.objects.filter(project=project)


def annotation_list_for_user(*, user: User) -> QuerySet[Annotation]:
    """Managers see every label of their projects; everyone sees their own."""
    if user.is_admin:
        return Annotation.objects.all()
    if not policies.may_manage_projects(user):
        return Annotation.objects.filter(annotator=user)
    managed = Membership.objects.filter(
        user=user, role=Membership.Role.MANAGER, project=OuterRef("project_id")
    )
    return Annotation.objects.filter(Exists(managed)) | Annotation.objects.filter(annotator=user)


def workspace_progress(*, project: Project, user: User) -> dict[str, int]:
    """What the workspace header shows: the user's labels today and in all, and what the
    project still needs from people (labels and items, gold items aside)."""
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Annotation.objects.filter(
        annotator=user, project=project, source=Annotation.Source.HUMAN
    ).aggregate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=today)))
    left = (
        Item.objects.filter(project=project, route__in=people_routes(project), gold__isnull=True)
        .filter(human_done__lt=project.overlap)
        .aggregate(items=Count("id"), labels=Sum(project.overlap - F("human_done")))
    )
    return {
        "done_today": mine["today"],
        "done_total": mine["total"],
        "left_items": left["items"],
        "left_labels": left["labels"] or 0,
    }


class Median(Aggregate):
    """The median on PostgreSQL; the mean elsewhere (SQLite has no ordered-set aggregates)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return Avg(*self.source_expressions).as_sql(compiler, connection, **extra_context)


def annotator_progress(*, project: Project) -> list[dict[str, Any]]:
    """One row per person who holds or held a lease here: labels (today, in all), skips, open
    leases, median time on task, and agreement with gold answers where there were gold items."""
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    now = timezone.now()
    rows: dict[int, dict[str, Any]] = {}
    leases = (
        Assignment.objects.filter(project=project)
        .values("annotator_id", "annotator__username")
        .annotate(
            submitted=Count("id", filter=Q(status=Assignment.Status.SUBMITTED)),
            today=Count("id", filter=Q(status=Assignment.Status.SUBMITTED, finished_at__gte=today)),
            skipped=Count("id", filter=Q(status=Assignment.Status.SKIPPED)),
            expired=Count("id", filter=Q(status=Assignment.Status.EXPIRED)),
            open=Count("id", filter=Q(status=Assignment.Status.OPEN, expires_at__gt=now)),
        )
        .order_by("annotator__username")
    )
    for row in leases:
        rows[row["annotator_id"]] = {
            "username": row["annotator__username"],
            "submitted": row["submitted"],
            "today": row["today"],
            "skipped": row["skipped"],
            "expired": row["expired"],
            "open": row["open"],
            "median_seconds": None,
            "gold_checked": 0,
            "gold_agreed": 0,
        }
    labels = Annotation.objects.filter(
        project=project, source=Annotation.Source.HUMAN, assignment__isnull=False
    )
    times = labels.values("annotator_id").annotate(median=Median("time_spent_ms")).order_by()
    for row in times:
        if row["annotator_id"] in rows and row["median"] is not None:
            rows[row["annotator_id"]]["median_seconds"] = round(row["median"] / 1000, 1)
    # Gold labels only: a small share of the project, compared in Python (answers are JSON).
    gold_labels = labels.filter(assignment__is_gold=True).values_list(
        "annotator_id", "payload", "item__gold"
    )
    for annotator_id, payload, gold in gold_labels.iterator(chunk_size=2000):
        if annotator_id in rows:
            rows[annotator_id]["gold_checked"] += 1
            rows[annotator_id]["gold_agreed"] += int(gold_agrees(payload, gold))
    return list(rows.values())


def gold_agrees(payload: dict[str, Any], gold: Any) -> bool:
    """Whether a label gives the gold answer: a pairwise choice (``"A"`` or ``{"choice": "A"}``),
    a thumb, or a ranking (letters best first)."""
    if isinstance(gold, dict):
        gold = gold.get("choice", gold.get("ranking", gold.get("thumb")))
    for field in ("choice", "thumb", "ranking"):
        if field in payload:
            return payload[field] == gold
    return False


def import_job_list_for_user(*, user: User) -> QuerySet[ImportJob]:
    """Import jobs of the projects the user manages."""
    if user.is_admin:
        return ImportJob.objects.all()
    if not policies.may_manage_projects(user):
        return ImportJob.objects.none()
    return ImportJob.objects.filter(
        project__memberships__user=user, project__memberships__role=Membership.Role.MANAGER
    )


def membership_change_list(*, project: Project) -> QuerySet[MembershipChange]:
    """The project's role changes, with the people named in them (keyset-paginated by id)."""
    return MembershipChange.objects.filter(project=project).select_related("user", "changed_by")


def member_list(*, project: Project) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(project=project).select_related("user").order_by("user__username")
    )


MY_LABELS_PAGE = 50


def my_labels_page(
    *, user: User, before: int | None = None, limit: int = MY_LABELS_PAGE
) -> tuple[list[Annotation], int | None]:
    """The user's current labels (not corrected since), newest first: one keyset page and the
    cursor of the next."""
    labels = Annotation.objects.filter(
        annotator=user, source=Annotation.Source.HUMAN, superseded_by__isnull=True
    )
    if before is not None:
        labels = labels.filter(pk__lt=before)
    page = list(
        labels.select_related("project", "item")
        .defer("item__messages", "item__metadata", "raw_output")
        .order_by("-id")[: limit + 1]
    )
    next_before = page[limit - 1].pk if len(page) > limit else None
    return page[:limit], next_before
