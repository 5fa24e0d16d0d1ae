"""Writes on projects and their members. Reads live in ``selectors.py``."""

import secrets
from typing import Any

from django.db import transaction

from accounts.models import Role, User
from accounts.services import user_create
from tandem.errors import Conflict, InvalidInput

from .models import Membership, Project
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


def membership_set(*, project: Project, user: User, role: str) -> Membership:
    """Add ``user`` to ``project`` with ``role``, or change their role there."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def membership_remove(*, project: Project, user: User) -> None:
    Membership.objects.filter(project=project, user=user).delete()


@transaction.atomic
def member_add(
    *, project: Project, username: str, role: str, create: bool = False, password: str = ""
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
    return membership_set(project=project, user=user, role=role), made_up
