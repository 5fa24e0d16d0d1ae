"""HTML pages: the project list, a project's page and its quality page. The workspace is in
``workspace.py``."""

import csv
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from tandem.errors import InvalidInput

from . import charts, item_browser, quality, selectors
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


@login_required
@require_GET
def project_quality(request: HttpRequest, project_id: int) -> HttpResponse:
    """Label quality for managers: agreement, annotators, judges, position and length bias."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    report = quality.quality_report(project=project)
    config = report.settings
    annotators = [(row, _labels_url(project, annotator=row.annotator)) for row in report.annotators]
    judges = [(row, _labels_url(project, judge="yes")) for row in report.judges]
    context = {
        "project": project,
        "report": report,
        "config": config,
        "annotators": annotators,
        "judges": judges,
        "charts": _quality_charts(report),
    }
    return render(request, "annotation/quality.html", context)


def _labels_url(project, **filters: str) -> str:
    """The item browser showing a labeller's items (a page, not the JSON API)."""
    return reverse("project-items", args=[project.pk]) + "?" + urlencode(filters)


def _quality_charts(report: quality.QualityReport) -> dict[str, str]:
    config = report.settings
    people, judges = report.annotators, report.judges
    chance = [charts.Reference(0.5, "chance")]
    out = {
        "gold": charts.forest(
            [charts.Row(r.annotator, r.gold_accuracy, "gold_accuracy" in r.flags) for r in people],
            title="Gold accuracy per annotator",
            references=[charts.Reference(config.flag_gold_accuracy, "flag below", "threshold")],
        ),
        "peers": charts.forest(
            [
                charts.Row(r.annotator, r.peer_agreement, "peer_agreement" in r.flags)
                for r in people
            ],
            title="Agreement with the peers' majority",
            references=[charts.Reference(config.flag_peer_agreement, "flag below", "threshold")],
        ),
        "judges": charts.forest(
            [charts.Row(r.judge, r.human_agreement, "human_agreement" in r.flags) for r in judges],
            title="Judges: agreement with the human majority",
            references=[charts.Reference(config.flag_peer_agreement, "flag below", "threshold")],
        ),
    }
    if report.task_type != "thumbs":
        labellers = [(r.annotator, r) for r in people] + [(f"{r.judge} (judge)", r) for r in judges]
        out["position"] = charts.forest(
            [
                charts.Row(name, r.position_bias.first_wins, "position_bias" in r.flags)
                for name, r in labellers
                if r.position_bias is not None
            ],
            title="Position bias: the candidate shown first wins",
            references=chance if report.task_type == "pairwise" else [],
        )
        reference = report.length_bias_reference
        out["length"] = charts.forest(
            [charts.Row(name, r.length_bias) for name, r in labellers if r.length_bias is not None],
            title="Length bias: the longer candidate wins",
            references=[
                *(
                    [charts.Reference(reference.value, "human majority", "reference")]
                    if reference is not None and reference.value is not None
                    else []
                ),
            ],
        )
    return out


QUALITY_CSV_COLUMNS = {
    "annotators": [
        "annotator",
        "labels",
        "skips",
        "median_seconds",
        "gold_accuracy",
        "peer_agreement",
        "position_bias",
        "length_bias",
    ],
    "judges": [
        "judge",
        "labels",
        "human_agreement",
        "order_consistency",
        "unparsed",
        "position_bias",
        "length_bias",
    ],
}


@login_required
@require_GET
def project_quality_csv(request: HttpRequest, project_id: int, table: str) -> HttpResponse:
    """The per-annotator or per-judge table as CSV: each share as value, n, low, high."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    if table not in QUALITY_CSV_COLUMNS:
        raise Http404
    report = quality.quality_report(project=project)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-{table}-quality.csv"'
    writer = csv.writer(response)
    columns = QUALITY_CSV_COLUMNS[table]
    header = [columns[0]]
    for name in columns[1:]:
        if name in ("labels", "skips", "median_seconds"):
            header.append(name)
        else:
            header.extend(f"{name}_{part}" for part in ("value", "n", "low", "high"))
    writer.writerow([*header, "flags"])
    for row in getattr(report, table):
        cells = [_csv_text(getattr(row, columns[0]))]
        for name in columns[1:]:
            value = getattr(row, name)
            if name in ("labels", "skips", "median_seconds"):
                cells.append(value)
                continue
            if isinstance(value, quality.PositionBias):
                value = value.first_wins
            share = value if value is not None else quality.Share(None, 0, True, 0, None, None)
            cells.extend([share.value, share.n, share.low, share.high])
        writer.writerow([*cells, " ".join(row.flags)])
    return response


def _csv_text(text: str) -> str:
    """Names are free text (imported annotators, judges): keep spreadsheets from reading one
    as a formula."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
