"""Turns ApplicationError raised under an HTML view into the right status and a readable page."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .errors import ApplicationError, InvalidInput, error_body
from .inputs import text_problem


class ApplicationErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, ApplicationError) or request.path.startswith("/api/"):
            return None
        template = "partials/error.html" if getattr(request, "htmx", False) else "error.html"
        return render(request, template, {"error": exc}, status=exc.status_code)


class QueryTextMiddleware:
    """A query string whose names or values hold a NUL (``?annotator=%00``) is refused with a 400
    before any view builds a database query from it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            for text in (name, *values):
                if problem := text_problem(text):
                    return _refuse(request, InvalidInput(f"query parameter {name!r} {problem}"))
        return self.get_response(request)


def _refuse(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(error), status=error.status_code)
    return render(request, "error.html", {"error": error}, status=error.status_code)
