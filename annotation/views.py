"""HTML pages: the project list and a project's page. The workspace is in ``workspace.py``."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from tandem.errors import InvalidInput

from . import item_browser, selectors
from .forms import ItemFilterForm
from .import_jobs import (
    import_job_cancel,
    import_job_create,
    import_job_retry,
    import_job_state,
    upload_format,
)
from .item_sections import item_sections
from .models import ImportJob
from .rendering import render_markdown


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = selectors.project_list_for_user(user=request.user).annotate(
        n_items=Count("items", distinct=True)
    )
    return render(request, "annotation/home.html", {"projects": projects})


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    access = selectors.project_access_get(user=request.user, project_id=project_id)
    project = access.project
    counts = selectors.project_counts(project=project)
    can_manage = access.can_manage
    jobs = []
    if can_manage:
        jobs = [import_job_state(j) for j in project.import_jobs.order_by("-id")[:3]]
    context = {
        "project": project,
        "n_items": counts["items"],
        "counts": counts,
        "can_manage": can_manage,
        "can_annotate": access.can_annotate,
        "guidelines_html": render_markdown(project.guidelines),
        "annotators": selectors.annotator_progress(project=project) if can_manage else None,
        "jobs": jobs,
    }
    return render(request, "annotation/project_detail.html", context)


@login_required
@require_POST
def project_import(request: HttpRequest, project_id: int) -> HttpResponse:
    """Upload a file from the project page; the worker imports it while the page polls."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    upload = request.FILES.get("file")
    if upload is None:
        raise InvalidInput("Choose a file to import.")
    fmt = upload_format(upload.name)
    job = import_job_create(
        project=project,
        user=request.user,
        upload=upload,
        name=upload.name,
        fmt=fmt,
        partial=request.POST.get("partial") == "on",
        preference_source=_choice(
            request.POST.get("preference_source") or "none", ("none", "human", "judge")
        ),
    )
    return _render_job(request, project, job)


def _choice(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidInput(f"Choose one of: {', '.join(allowed)}.")
    return value


@login_required
@require_GET
def import_job_detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """The progress partial that the project page polls until the import ends."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    job = ImportJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404
    return _render_job(request, project, job)


@login_required
@require_POST
def import_job_control(
    request: HttpRequest, project_id: int, job_id: int, verb: str
) -> HttpResponse:
    """Retry or cancel an import from the project page (managers); answers the job's partial."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    job = ImportJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404
    if verb == "retry":
        job = import_job_retry(job=job)
    elif verb == "cancel":
        job = import_job_cancel(job=job, user=request.user)
    else:
        raise Http404
    return _render_job(request, project, job)


def _render_job(request: HttpRequest, project, job: ImportJob) -> HttpResponse:
    """The job's partial; once it has ended, the page's counters come along (out of band)."""
    state = import_job_state(job)
    context = {"project": project, "job": state}
    response = render(request, "annotation/project_detail.html#import-job", context)
    if state["finished"]:
        stats = {"project": project, "counts": selectors.project_counts(project=project)}
        stats["n_items"], stats["oob"] = stats["counts"]["items"], True
        response.content += render(request, "annotation/project_detail.html#stats", stats).content
    return response


@login_required
@require_GET
def item_list(request: HttpRequest, project_id: int) -> HttpResponse:
    """The item browser: filters and search in the query string, keyset pages (``after``).
    htmx asks for the ``#items`` partial only."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    form = ItemFilterForm(request.GET or None)
    items, next_after = [], None
    if form.is_bound and not form.is_valid():
        status = 400
    else:
        status = 200
        filters = form.filters() if form.is_bound else item_browser.ItemFilters()
        after = form.cleaned_data.get("after") if form.is_bound else None
        items, next_after = item_browser.item_browse(project=project, filters=filters, after=after)
    query = request.GET.copy()
    query.pop("after", None)
    context = {
        "project": project,
        "form": form,
        "items": items,
        "next_after": next_after,
        "query": query.urlencode(),
        "paged": "after" in request.GET,
    }
    template = "annotation/items.html#items" if request.htmx else "annotation/items.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def item_detail(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    """One item: prompt, candidates (sanitised markdown), every label, the other apps'
    sections (routing decisions), the judges' raw answers (escaped)."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    item = item_browser.item_get(project=project, item_id=item_id)
    context = {
        "project": project,
        "item": item,
        "prompt_html": render_markdown(item.prompt),
        "messages": [
            {"role": str(m.get("role", "")), "html": render_markdown(str(m.get("content", "")))}
            for m in (item.messages or [])
            if isinstance(m, dict)
        ],
        "candidates": [
            {"letter": c.letter, "model": c.model, "html": render_markdown(c.text)}
            for c in item.candidates.order_by("position")
        ],
        "labels": item_browser.item_labels(item=item),
        "sections": item_sections(project=project, item=item),
    }
    return render(request, "annotation/item_detail.html", context)


@login_required
@require_GET
def my_labels(request: HttpRequest) -> HttpResponse:
    """The user's own labels, newest first (the current version of each; ``before`` pages)."""
    before = request.GET.get("before", "")
    labels, next_before = selectors.my_labels_page(
        user=request.user, before=int(before) if before.isdigit() else None
    )
    context = {"labels": labels, "next_before": next_before, "paged": bool(before)}
    return render(request, "annotation/my_labels.html", context)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
