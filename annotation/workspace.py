"""The annotator workspace: one page, its task swapped in by htmx after each submit or skip.

Views are thin: they authorise, turn the form into a label payload, and call ``assignment``'s
services. Every answer to an htmx request is a partial of ``annotation/workspace.html``.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tandem.errors import Conflict, Forbidden, InvalidInput, NotFound

from . import assignment as assignment_service
from . import selectors
from .models import Annotation, Assignment
from .policies import ProjectAccess
from .rendering import NEAR_IDENTICAL, diff_html, render_markdown, similarity
from .schema import LabelSchema, TaskType

TEMPLATE = "annotation/workspace.html"
SKIP_REASONS = (
    "I cannot judge this (outside my knowledge)",
    "The item is broken or unreadable",
    "Offensive or disturbing content",
)


def _project_for_annotator(request: HttpRequest, project_id: int) -> ProjectAccess:
    access = selectors.project_access_get(user=request.user, project_id=project_id)
    if not access.can_annotate:
        raise Forbidden("This project is archived; it takes no more labels.")
    return access


@dataclass
class Choice:
    value: str
    label: str
    key: int
    side: str = ""


def pairwise_scale(schema: LabelSchema) -> list[Choice]:
    """The verdicts in display order, strongest for the left response first.

    Values name letters by *side* (``L``/``R``); the view maps sides to the item's letters with
    the lease's order, so the page never needs to know which letter is where."""
    scale = list(schema.strength_scale)
    out: list[Choice] = []
    if scale:
        for strength in range(len(scale), 0, -1):
            out.append(Choice(f"L:{strength}", f"Left {scale[strength - 1]}", 0, "left"))
    else:
        out.append(Choice("L", "Left better", 0, "left"))
    if schema.allow_tie:
        out.append(Choice("tie", "Tie", 0, "tie"))
    if scale:
        for strength in range(1, len(scale) + 1):
            out.append(Choice(f"R:{strength}", f"Right {scale[strength - 1]}", 0, "right"))
    else:
        out.append(Choice("R", "Right better", 0, "right"))
    if schema.allow_both_bad:
        out.append(Choice("both_bad", "Both bad", 0, "bad"))
    for key, choice in enumerate(out, start=1):
        choice.key = key
    return out


def _side_letter(value: str, order: str) -> str:
    return {"L": order[0], "R": order[1]}[value]


def payload_from_form(form: QueryDict, *, schema: LabelSchema, order: str) -> dict[str, Any]:
    """The label payload from the workspace form, letters in the item's own order."""
    payload: dict[str, Any] = {}
    if schema.task_type == TaskType.PAIRWISE:
        verdict = form.get("verdict", "")
        if not verdict:
            raise InvalidInput("Choose which response is better (number keys).")
        side, _, strength = verdict.partition(":")
        if side in ("L", "R"):
            payload["choice"] = _side_letter(side, order)
            if strength:
                if _whole_number(strength) is None:
                    raise InvalidInput("Unknown strength.")
                payload["strength"] = int(strength)
        else:
            payload["choice"] = side
    elif schema.task_type == TaskType.LISTWISE:
        ranks, tied = form.getlist("rank"), form.getlist("tied")
        if len(tied) != len(ranks):
            raise InvalidInput("The ranking came in incomplete; rank again.")
        ranking: list[Any] = []
        for letter, with_above in zip(ranks, tied, strict=True):
            if with_above == "1" and ranking:
                last = ranking[-1]
                ranking[-1] = [*last, letter] if isinstance(last, list) else [last, letter]
            else:
                ranking.append(letter)
        payload["ranking"] = ranking
    else:
        thumb = form.get("thumb", "")
        if not thumb:
            raise InvalidInput("Choose thumbs up or down (1 or 2).")
        payload["thumb"] = thumb
    aspects = {}
    for aspect in schema.aspects:
        value = form.get(f"aspect:{aspect.name}", "")
        if value in ("L", "R") and schema.task_type == TaskType.PAIRWISE:
            value = _side_letter(value, order)
        if value:
            aspects[aspect.name] = value
    if aspects:
        payload["aspects"] = aspects
    rationale = form.get("rationale", "").strip()
    if rationale:
        payload["rationale"] = rationale
    return payload


def _aspect_choices(schema: LabelSchema) -> list[dict[str, Any]]:
    names = {"A": ("L", "Left"), "B": ("R", "Right"), "tie": ("tie", "Tie")}
    out = []
    for aspect in schema.aspects:
        if schema.task_type == TaskType.PAIRWISE and set(aspect.choices) <= set(names):
            choices = [names[c] for c in aspect.choices]
        else:
            choices = [(c, c) for c in aspect.choices]
        out.append({"name": aspect.name, "choices": choices})
    return out


def selected_answers(payload: dict[str, Any], order: str) -> dict[str, Any]:
    """A label's answers as the task form names them (sides, not letters): to show a label
    that is being corrected."""
    selected: dict[str, Any] = {"rationale": payload.get("rationale", "")}
    choice = payload.get("choice")
    if choice in ("A", "B") and len(order) == 2:
        side = "L" if order[0] == choice else "R"
        strength = payload.get("strength")
        selected["verdict"] = f"{side}:{strength}" if strength else side
    elif choice is not None:
        selected["verdict"] = choice
    selected["thumb"] = payload.get("thumb")
    aspects = {}
    for name, value in (payload.get("aspects") or {}).items():
        if value in ("A", "B") and len(order) == 2:
            value = "L" if order[0] == value else "R"
        aspects[name] = value
    selected["aspects"] = aspects
    return selected


def task_context(lease: Assignment) -> dict[str, Any]:
    """What the task partial shows: the prompt and the responses in the order of the lease."""
    project, item = lease.project, lease.item
    schema = project.schema
    by_letter = {c.letter: c for c in item.candidates.all()}
    shown = [by_letter[letter] for letter in lease.order]
    responses = [
        {"number": i, "letter": c.letter, "html": render_markdown(c.text), "text": c.text}
        for i, c in enumerate(shown, start=1)
    ]
    context: dict[str, Any] = {
        "lease": lease,
        "item": item,
        "schema": schema,
        "responses": responses,
        "messages_html": [
            {"role": m.get("role", ""), "html": render_markdown(str(m.get("content", "")))}
            for m in (item.messages or [])
            if isinstance(m, dict)
        ],
        "prompt_html": render_markdown(item.prompt),
        "idempotency_key": uuid.uuid4().hex,
        "skip_reasons": SKIP_REASONS,
        "aspects": _aspect_choices(schema),
    }
    if project.task_type == TaskType.PAIRWISE and len(shown) == 2:
        context["scale"] = pairwise_scale(schema)
        left, right = shown[0].text, shown[1].text
        if left != right and similarity(left, right) >= NEAR_IDENTICAL:
            context["diff"] = diff_html(left, right)
    return context


def _render_next(
    request: HttpRequest,
    access: ProjectAccess,
    notice: str = "",
    status: int = 200,
    undo: Annotation | None = None,
) -> HttpResponse:
    project = access.project
    lease = assignment_service.assignment_next(project=project, user=request.user, access=access)
    extra = {"project": project, "notice": notice, "undo": undo}
    if undo is not None:
        extra["undo_seconds"] = assignment_service.UNDO_SECONDS
    if lease is None:
        return render(request, f"{TEMPLATE}#done", extra, status=status)
    lease.project = project
    context = {**task_context(lease), **extra}
    return render(request, f"{TEMPLATE}#task", context, status=status)


def correction_context(annotation: Annotation) -> dict[str, Any]:
    """The task form for correcting ``annotation``: its item, in the order it was shown."""
    item = annotation.item
    order = annotation.order or "".join(c.letter for c in item.candidates.all())
    lease = Assignment(project=annotation.project, item=item, order=order)
    context = task_context(lease)
    selected = selected_answers(annotation.payload, order)
    if annotation.project.task_type == TaskType.LISTWISE:
        ranked = [
            letter
            for entry in annotation.payload.get("ranking", [])
            for letter in (entry if isinstance(entry, list) else [entry])
        ]
        position = {letter: i for i, letter in enumerate(ranked)}
        context["responses"].sort(key=lambda r: position.get(r["letter"], len(position)))
    return {**context, "correcting": annotation, "selected": selected}


@login_required
@require_GET
def workspace(request: HttpRequest, project_id: int) -> HttpResponse:
    """The page; its task area asks for work as soon as it loads."""
    access = _project_for_annotator(request, project_id)
    project = access.project
    context = {
        "project": project,
        "guidelines_html": render_markdown(project.guidelines),
        "progress": selectors.workspace_progress(project=project, user=request.user),
    }
    return render(request, TEMPLATE, context)


@login_required
@require_POST
def task_next(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _project_for_annotator(request, project_id)
    return _render_next(request, access)


@login_required
@require_GET
def progress(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _project_for_annotator(request, project_id)
    project = access.project
    context = {
        "project": project,
        "progress": selectors.workspace_progress(project=project, user=request.user),
    }
    return render(request, f"{TEMPLATE}#progress", context)


def _whole_number(value: str, digits: int = 9) -> int | None:
    """``value`` as a whole number when it is one written in ASCII digits ("²" is a digit to
    str.isdigit, not to int), small enough for the database; else None."""
    if value.isascii() and value.isdigit() and len(value) <= digits:
        return int(value)
    return None


def _time_spent(form: QueryDict) -> int | None:
    return _whole_number(form.get("time_spent_ms", ""))


@login_required
@require_POST
def task_submit(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    """Record the label, then answer with the next task (HX-Trigger refreshes the progress)."""
    access = _project_for_annotator(request, project_id)
    project = access.project
    lease = Assignment.objects.filter(pk=assignment_id, project=project).only("order").first()
    if lease is None:
        raise NotFound("No such task.")
    try:
        payload = payload_from_form(request.POST, schema=project.schema, order=lease.order)
        assignment_service.annotation_submit(
            assignment_id=assignment_id,
            user=request.user,
            payload=payload,
            idempotency_key=request.POST.get("idempotency_key"),
            time_spent_ms=_time_spent(request.POST),
        )
    except InvalidInput as exc:
        # The task stays on screen with what was chosen; only the message area changes.
        response = render(request, "partials/error.html", {"error": exc}, status=422)
        response["HX-Retarget"] = "#task-errors"
        response["HX-Reswap"] = "innerHTML"
        return response
    except Conflict as exc:
        response = _render_next(request, access, notice=exc.message)
        response["HX-Trigger"] = "tandem:submitted"
        return response
    undo = assignment_service.annotation_undoable(project_id=project.pk, user=request.user)
    response = _render_next(request, access, undo=undo)
    response["HX-Trigger"] = "tandem:submitted"
    return response


@login_required
@require_POST
def task_undo(request: HttpRequest, project_id: int) -> HttpResponse:
    """Undo the label just given: its task comes back, answered as it was, for a correction
    (a new label that supersedes it). Only within ``UNDO_SECONDS`` of the submit."""
    access = _project_for_annotator(request, project_id)
    project = access.project
    annotation = assignment_service.annotation_undoable(project_id=project.pk, user=request.user)
    if annotation is None:
        raise Conflict("Too late to undo here; correct the label from My labels.")
    annotation.project = project
    context = {**correction_context(annotation), "project": project}
    return render(request, f"{TEMPLATE}#task", context)


@login_required
@require_http_methods(["GET", "POST"])
def label_correct(request: HttpRequest, project_id: int, annotation_id: int) -> HttpResponse:
    """GET: a page with the label's task form, answered as it was. POST: the correction; then
    back to My labels (``return=my-labels``) or on to the next task."""
    access = _project_for_annotator(request, project_id)
    project = access.project
    annotation = (
        Annotation.objects.filter(
            pk=annotation_id, project=project, annotator=request.user, source="human"
        )
        .select_related("item")
        .first()
    )
    if annotation is None:
        raise NotFound("No such label of yours.")
    annotation.project = project
    if request.method == "GET":
        context = {
            **correction_context(annotation),
            "project": project,
            "guidelines_html": render_markdown(project.guidelines),
        }
        return render(request, "annotation/correct.html", context)
    order = annotation.order or "".join(c.letter for c in annotation.item.candidates.all())
    try:
        payload = payload_from_form(request.POST, schema=project.schema, order=order)
        assignment_service.annotation_correct(
            annotation_id=annotation.pk,
            user=request.user,
            payload=payload,
            idempotency_key=request.POST.get("idempotency_key"),
        )
    except InvalidInput as exc:
        response = render(request, "partials/error.html", {"error": exc}, status=422)
        response["HX-Retarget"] = "#task-errors"
        response["HX-Reswap"] = "innerHTML"
        return response
    if request.POST.get("return") == "my-labels":
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("my-labels")
        return response
    response = _render_next(request, access, notice="Label corrected.")
    response["HX-Trigger"] = "tandem:submitted"
    return response


@login_required
@require_POST
def task_skip(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    access = _project_for_annotator(request, project_id)
    reason = request.POST.get("reason", "")
    if reason == "other":
        reason = request.POST.get("reason_text", "")
    try:
        assignment_service.assignment_skip(
            assignment_id=assignment_id, user=request.user, reason=reason
        )
    except InvalidInput as exc:
        response = render(request, "partials/error.html", {"error": exc}, status=422)
        response["HX-Retarget"] = "#skip-errors"
        response["HX-Reswap"] = "innerHTML"
        return response
    except Conflict as exc:
        return _render_next(request, access, notice=exc.message)
    return _render_next(request, access, notice="Skipped.")
