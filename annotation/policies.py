"""Who may do what on a project: an explicit access object and predicates over it.

A ``ProjectAccess`` is what a request knows about the caller and a project: the project, the user
and their role there, read once (by ``selectors.project_access_get``, in the same query as the
project). Services and views pass it on and ask the predicates below, which never query; nothing
is cached on model instances, so a role read for one user can never answer for another.
"""

from dataclasses import dataclass

from accounts.models import User

from .models import Membership, Project


@dataclass(frozen=True)
class ProjectAccess:
    """The caller's standing on one project. ``role`` is None for a non-member."""

    project: Project
    user: User
    role: str | None

    @property
    def can_view(self) -> bool:
        return self.role is not None

    @property
    def can_manage(self) -> bool:
        return self.role == Membership.Role.MANAGER

    @property
    def can_annotate(self) -> bool:
        return self.role is not None and not self.project.archived


def role_of(user: User, member_role: str | None) -> str | None:
    """The role to act with, given the membership row's role: admins manage every project."""
    if not user.is_authenticated:
        return None
    if user.is_admin:
        return Membership.Role.MANAGER
    return capped_role(user, member_role)


def project_access(user: User, project: Project) -> ProjectAccess:
    """Read the user's standing on ``project`` (one query; none for admins and anonymous)."""
    member_role = None
    if user.is_authenticated and not user.is_admin:
        member_role = (
            Membership.objects.filter(project=project, user=user)
            .values_list("role", flat=True)
            .first()
        )
    return ProjectAccess(project=project, user=user, role=role_of(user, member_role))


def may_manage_projects(user: User) -> bool:
    """Whether the user's site role allows a project's manager role (admins and managers)."""
    return user.is_manager


def capped_role(user: User, role: str | None) -> str | None:
    """The project role as the site role allows it: a site annotator manages nothing, even if a
    membership written before the cap (or an admin's later change of site role) says so."""
    if role == Membership.Role.MANAGER and not may_manage_projects(user):
        return Membership.Role.ANNOTATOR
    return role


def can_create_project(user: User) -> bool:
    return user.is_authenticated and user.is_manager
