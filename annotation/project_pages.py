"""The manager's pages of a project: create, settings and label schema (with a markdown
preview), members. Thin: forms validate, ``services`` write, ``selectors`` authorise."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from tandem.errors import ApplicationError, Forbidden, InvalidInput, NotFound

from . import policies, selectors, services
from .forms import MemberAddForm, ProjectForm
from .models import Membership
from .rendering import render_markdown

PREVIEW_MAX_CHARS = 100_000


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    if not policies.can_create_project(request.user):
        raise Forbidden("Only managers and admins create projects.")
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            project = services.project_create(
                slug=data["slug"],
                task_type=data["task_type"],
                created_by=request.user,
                **form.settings(),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Project {project.name} created.")
            return redirect("project-detail", project_id=project.pk)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "annotation/project_form.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    form = ProjectForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(project=project, **form.settings())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("project-settings", project_id=project.pk)
    status = 400 if form.is_bound and form.errors else 200
    context = {"form": form, "project": project}
    return render(request, "annotation/project_form.html", context, status=status)


@login_required
@require_POST
def markdown_preview(request: HttpRequest) -> HttpResponse:
    """The guidelines as annotators will see them (sanitised), for the editor's preview."""
    text = request.POST.get("guidelines", "")[:PREVIEW_MAX_CHARS]
    return HttpResponse(render_markdown(text) or '<p class="muted">Nothing to preview.</p>')


@login_required
@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, project_id: int) -> HttpResponse:
    access = selectors.project_access_get(
        user=request.user, project_id=project_id, manage=request.method == "POST"
    )
    project = access.project
    if not access.can_manage:
        raise Forbidden("Only the project's managers may see its members here.")
    form = MemberAddForm(request.POST or None)
    password = None
    if request.method == "POST" and form.is_valid():
        try:
            membership, password = services.member_add(
                project=project, changed_by=request.user, **form.cleaned_data
            )
        except ApplicationError as exc:
            form.add_error("username", exc.message)
        except ValidationError as exc:  # the password fails the validators
            form.add_error("password", exc.messages)
        else:
            role = membership.get_role_display().lower()
            messages.success(request, f"{membership.user.username} is a member now ({role}).")
            if password is None:
                return redirect("project-members", project_id=project.pk)
            form = MemberAddForm()
    context = {
        "project": project,
        "form": form,
        "members": selectors.member_list(project=project),
        "roles": Membership.Role.choices,
        "new_password": password,
    }
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "annotation/members.html", context, status=status)


@login_required
@require_POST
def project_member_change(request: HttpRequest, project_id: int, user_id: int) -> HttpResponse:
    """Change a member's role (``role``) or remove them (``remove``)."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    member = User.objects.filter(pk=user_id, memberships__project=project).first()
    if member is None:
        raise NotFound("No such member.")
    if "remove" in request.POST:
        services.membership_remove(project=project, user=member, changed_by=request.user)
        messages.success(request, f"{member.username} was removed from the project.")
    else:
        role = request.POST.get("role", "")
        if role not in Membership.Role.values:
            raise InvalidInput("Choose a role.")
        services.membership_set(project=project, user=member, role=role)
        messages.success(request, f"{member.username} is now {role} here.")
    return redirect("project-members", project_id=project.pk)
