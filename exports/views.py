"""HTML pages of exports: a project's snapshots (Download buttons, progress polled by htmx) and
the "new snapshot" form with its live row-count preview. Managers only (others: 403/404)."""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.selectors import project_get_for_user
from tandem.errors import InvalidInput

from . import snapshots
from .api import snapshot_file_response
from .builder import STYLES, export_preview, export_spec
from .formats import FORMATS, PAIR_MODES
from .models import Preference
from .writers import FILE_FORMATS

RECENT = 50
TEMPLATE = "exports/snapshots.html"


def _form_params(data) -> dict[str, Any]:
    """The form's fields -> the parameters of ``export_spec`` / ``snapshot_create``."""
    metadata = {}
    for line in (data.get("metadata") or "").replace(",", "\n").splitlines():
        key, sep, value = line.strip().partition("=")
        if key:
            if not sep:
                raise InvalidInput("Metadata filters are key=value, one per line.")
            metadata[key.strip()] = value.strip()
    try:
        seed = int(data.get("seed") or 0)
    except ValueError:
        raise InvalidInput("The seed is a whole number.") from None
    filters = {
        "provenance": data.getlist("provenance"),
        "agreement_min": data.get("agreement_min") or None,
        "method": data.get("method") or None,
        "annotators": data.get("annotators") or "",
        "judges": data.get("judges") or "",
        "labelled_from": data.get("labelled_from") or None,
        "labelled_to": data.get("labelled_to") or None,
        "metadata": metadata,
        "gold": {"yes": True, "no": False}.get(data.get("gold", "")),
    }
    return {
        "format": data.get("format", ""),
        "file_format": data.get("file_format", ""),
        "filters": filters,
        "splits": data.get("splits") or None,
        "seed": seed,
        "style": data.get("style") or "auto",
        "pairs": data.get("pairs") or "all",
    }


def _formats_for(project) -> list[tuple[str, str]]:
    return [(f.name, f.title) for f in FORMATS.values() if project.task_type in f.task_types]


@login_required
@require_http_methods(["GET", "POST"])
def snapshot_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The list and the form; POST queues a snapshot and answers its row (htmx)."""
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    if request.method == "POST":
        snapshot = snapshots.snapshot_create(
            project=project, user=request.user, **_form_params(request.POST)
        )
        context = {"project": project, "s": snapshots.snapshot_state(snapshot)}
        return render(request, TEMPLATE + "#snapshot-row", context)
    rows = snapshots.snapshot_list(project=project).order_by("-id")[:RECENT]
    context = {
        "project": project,
        "snapshots": [snapshots.snapshot_state(s) for s in rows],
        "formats": _formats_for(project),
        "file_formats": FILE_FORMATS,
        "styles": STYLES,
        "pair_modes": PAIR_MODES,
        "provenances": Preference.Provenance.choices,
    }
    return render(request, TEMPLATE, context)


@login_required
@require_GET
def snapshot_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """The live count under the form (htmx, on every change)."""
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    params = _form_params(request.GET)
    if not params["format"]:
        params["format"] = _formats_for(project)[0][0]
    params["file_format"] = params["file_format"] or "jsonl"
    spec = export_spec(project=project, **params)
    context = {"project": project, "preview": export_preview(project=project, spec=spec)}
    return render(request, TEMPLATE + "#preview", context)


@login_required
@require_GET
def snapshot_row(request: HttpRequest, project_id: int, snapshot_id: int) -> HttpResponse:
    """One snapshot's row; the page polls it while the snapshot is being built."""
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    snapshot = snapshots.snapshot_get(project=project, snapshot_id=snapshot_id)
    context = {"project": project, "s": snapshots.snapshot_state(snapshot)}
    return render(request, TEMPLATE + "#snapshot-row", context)


@login_required
@require_POST
def snapshot_remove(request: HttpRequest, project_id: int, snapshot_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    snapshot = snapshots.snapshot_get(project=project, snapshot_id=snapshot_id)
    snapshots.snapshot_delete(snapshot=snapshot)
    return HttpResponse("")


@login_required
@require_GET
def snapshot_download(request: HttpRequest, project_id: int, snapshot_id: int, path: str):
    project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
    snapshot = snapshots.snapshot_get(project=project, snapshot_id=snapshot_id)
    return snapshot_file_response(snapshot, path)
