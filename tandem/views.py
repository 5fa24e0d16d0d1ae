"""Project-wide error pages: under /api/ a 404 has the API's error shape too."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from .errors import NotFound, error_body


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(NotFound("No such endpoint or object.")), status=404)
    return defaults.page_not_found(request, exception)
