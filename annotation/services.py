"""Writes on projects and their members. Reads live in ``selectors.py``."""

import secrets
from typing import Any

from django.db import transaction
from django.db.models import Q

from accounts.models import Role, User
from accounts.services import user_create
from tandem.errors import Conflict, InvalidInput

from . import policies
from .models import Membership, MembershipChange, Project
from .schema import LabelSchema

PROJECT_SETTINGS = (
    "name",
    "description",
    "guidelines",
    "label_schema",
    "overlap",
    "lease_seconds",
    "max_open_leases",
    "gold_ratio",
    "archived",
)


@transaction.atomic
def project_create(
    *, slug: str, task_type: str, created_by: User | None = None, name: str = "", **settings: Any
) -> Project:
    """Create a project; its creator becomes its manager."""
    unknown = set(settings) - set(PROJECT_SETTINGS)
    if unknown:
        raise TypeError(f"unknown project settings: {', '.join(sorted(unknown))}")
    project = Project(
        slug=slug,
        name=name or slug,
        task_type=task_type,
        created_by=created_by,
        **settings,
    )
    if not project.label_schema:
        project.label_schema = LabelSchema.defaults(task_type).to_dict()
    project.full_clean()
    project.save()
    if created_by is not None:
        membership_set(project=project, user=created_by, role=Membership.Role.MANAGER)
    return project


@transaction.atomic
def project_update(*, project: Project, **changes: Any) -> Project:
    unknown = set(changes) - set(PROJECT_SETTINGS)
    if unknown:
        raise TypeError(f"these settings cannot be changed: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(project, name, value)
    project.full_clean()
    project.save()
    return project


def membership_set(
    *, project: Project, user: User, role: str, changed_by: User | None = None
) -> Membership:
    """Add ``user`` to ``project`` with ``role``, or change their role there.

    The user's site role caps the project role (a site annotator is never a project manager),
    and the project's last manager cannot be demoted. Every change is recorded.
    """
    if role not in Membership.Role.values:
        raise InvalidInput(f"unknown project role {role!r}", details={"role": "unknown"})
    if role == Membership.Role.MANAGER and not policies.may_manage_projects(user):
        raise InvalidInput(
            f"{user.username} is a site annotator and cannot be a project manager; "
            "an admin must make them a site manager first.",
            code="role_cap",
            details={"role": "above the user's site role"},
        )
    with transaction.atomic():
        old_role = _lock_roles(project, user)
        if old_role == role:
            return Membership.objects.get(project=project, user=user)
        if old_role == Membership.Role.MANAGER:
            _refuse_last_manager(project, user)
        membership, _ = Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )
        MembershipChange.objects.create(
            project=project,
            user=user,
            changed_by=changed_by,
            old_role=old_role or "",
            new_role=role,
        )
    return membership


def membership_remove(*, project: Project, user: User, changed_by: User | None = None) -> None:
    """Take ``user`` off ``project``; the project's last manager stays."""
    with transaction.atomic():
        old_role = _lock_roles(project, user)
        if old_role is None:
            return
        if old_role == Membership.Role.MANAGER:
            _refuse_last_manager(project, user)
        Membership.objects.filter(project=project, user=user).delete()
        MembershipChange.objects.create(
            project=project, user=user, changed_by=changed_by, old_role=old_role, new_role=""
        )


def _lock_roles(project: Project, user: User) -> str | None:
    """Lock the project row (role changes on one project run one at a time); the user's role."""
    Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def _refuse_last_manager(project: Project, user: User) -> None:
    # Only managers whose site role lets them manage count (see policies.capped_role).
    others = (
        Membership.objects.filter(project=project, role=Membership.Role.MANAGER)
        .filter(Q(user__role__in=[Role.ADMIN, Role.MANAGER]) | Q(user__is_superuser=True))
        .exclude(user=user)
        .exists()
    )
    if not others:
        raise InvalidInput(
            f"{user.username} is the project's last manager; make someone else a manager first.",
            code="last_manager",
        )


@transaction.atomic
def member_add(
    *,
    project: Project,
    username: str,
    role: str,
    create: bool = False,
    password: str = "",
    changed_by: User | None = None,
) -> tuple[Membership, str | None]:
    """Add a user to the project with ``role`` (or change their role). With ``create``, make the
    account first (its site role follows the project role) and return its password when it was
    made up here, to be shown once; else the user must exist."""
    user = User.objects.filter(username=username).first()
    made_up = None
    if create:
        if user is not None:
            raise Conflict(f"a user named {username!r} exists", details={"username": "exists"})
        made_up = None if password else secrets.token_urlsafe(12)
        site_role = Role.MANAGER if role == Membership.Role.MANAGER else Role.ANNOTATOR
        user = user_create(username=username, role=site_role, password=password or made_up)
    elif user is None:
        raise InvalidInput("No such user.", details={"username": "unknown"})
    return membership_set(project=project, user=user, role=role, changed_by=changed_by), made_up
