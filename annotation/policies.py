"""Who may do what on a project. Predicates only; selectors and views apply them."""

from accounts.models import User

from .models import Membership, Project


def project_role(user: User, project: Project) -> str | None:
    """The user's role on the project (admins count as managers everywhere)."""
    if not user.is_authenticated:
        return None
    if user.is_admin:
        return Membership.Role.MANAGER
    cached = getattr(project, "_role_for", None)
    if cached is not None and cached[0] == user.pk:
        return cached[1]
    role = (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )
    role = capped_role(user, role)
    project._role_for = (user.pk, role)  # type: ignore[attr-defined]
    return role


def may_manage_projects(user: User) -> bool:
    """Whether the user's site role allows a project's manager role (admins and managers)."""
    return user.is_manager


def capped_role(user: User, role: str | None) -> str | None:
    """The project role as the site role allows it: a site annotator manages nothing, even if a
    membership written before the cap (or an admin's later change of site role) says so."""
    if role == Membership.Role.MANAGER and not may_manage_projects(user):
        return Membership.Role.ANNOTATOR
    return role


def can_view_project(user: User, project: Project) -> bool:
    return project_role(user, project) is not None


def can_manage_project(user: User, project: Project) -> bool:
    return project_role(user, project) == Membership.Role.MANAGER


def can_annotate(user: User, project: Project) -> bool:
    return project_role(user, project) is not None and not project.archived


def can_create_project(user: User) -> bool:
    return user.is_authenticated and user.is_manager
