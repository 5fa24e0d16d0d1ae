"""HTML pages: the project list, a project's page and its quality page. The workspace is in
``workspace.py``."""

import csv
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from tandem.errors import InvalidInput

from . import charts, quality, selectors
from .import_jobs import (
    import_job_cancel,
    import_job_create,
    import_job_retry,
    import_job_state,
    upload_format,
)
from .models import Annotation, ImportJob
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
    counts = project.annotations.aggregate(
        human=Count("id", filter=Q(source=Annotation.Source.HUMAN)),
        judge=Count("id", filter=Q(source=Annotation.Source.JUDGE)),
    )
    can_manage = access.can_manage
    jobs = []
    if can_manage:
        jobs = [import_job_state(j) for j in project.import_jobs.order_by("-id")[:3]]
    context = {
        "project": project,
        "n_items": project.items.count(),
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
    )
    return _render_job(request, project, job)


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
    context = {"project": project, "job": import_job_state(job)}
    return render(request, "annotation/project_detail.html#import-job", context)


@login_required
@require_GET
def project_quality(request: HttpRequest, project_id: int) -> HttpResponse:
    """Label quality for managers: agreement, annotators, judges, position and length bias."""
    project = selectors.project_get_for_user(user=request.user, project_id=project_id, manage=True)
    report = quality.quality_report(project=project)
    config = report.settings
    annotators = [(row, _labels_url(project, annotator=row.annotator)) for row in report.annotators]
    judges = [(row, _labels_url(project, judge=row.judge)) for row in report.judges]
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
    return "/api/v1/annotations/?" + urlencode({"project": project.pk, **filters})


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
