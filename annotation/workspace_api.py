"""REST API of the human task queue: next task, submit, skip (``/api/v1/``, token auth).

Thin views: they authorise, call ``assignment``'s services and shape the answer.
"""

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tandem.errors import Forbidden, InvalidInput

from . import assignment as assignment_service
from . import selectors
from .api import AnnotationSerializer
from .models import Assignment

LEASE_FIELDS = {"idempotency_key", "time_spent_ms"}


def lease_data(lease: Assignment) -> dict[str, Any]:
    """A lease as the annotator sees it: candidates in the order shown, each with its letter in
    the item's own order. Gold answers, routes and model names stay hidden (they bias)."""
    item = lease.item
    by_letter = {c.letter: c for c in item.candidates.all()}
    return {
        "assignment": lease.pk,
        "project": lease.project_id,
        "item": {
            "id": item.pk,
            "external_id": item.external_id,
            "prompt": item.prompt,
            "messages": item.messages,
        },
        "candidates": [
            {"letter": letter, "text": by_letter[letter].text} for letter in lease.order
        ],
        "order": lease.order,
        "expires_at": lease.expires_at,
    }


LeaseSerializer = inline_serializer(
    "Lease",
    {
        "assignment": serializers.IntegerField(),
        "project": serializers.IntegerField(),
        "item": serializers.DictField(),
        "candidates": serializers.ListField(child=serializers.DictField()),
        "order": serializers.CharField(),
        "expires_at": serializers.DateTimeField(),
    },
)


class SubmitInputSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=assignment_service.MAX_KEY_LENGTH)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    choice = serializers.CharField(required=False, help_text="pairwise: A, B, tie or both_bad")
    strength = serializers.IntegerField(required=False)
    ranking = serializers.ListField(required=False, help_text="listwise: letters, best first")
    thumb = serializers.CharField(required=False, help_text="thumbs: up or down")
    aspects = serializers.DictField(required=False)
    rationale = serializers.CharField(required=False, allow_blank=True)


class SkipInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=assignment_service.MAX_SKIP_REASON)


class NextTaskView(APIView):
    @extend_schema(request=None, responses={200: LeaseSerializer, 204: None})
    def post(self, request: Request, project_id: int) -> Response:
        """Lease the next task to the caller (or the one they already hold); 204: none left."""
        access = selectors.project_access_get(user=request.user, project_id=project_id)
        if not access.can_annotate:
            raise Forbidden("This project is archived.")
        lease = assignment_service.assignment_next(
            project=access.project, user=request.user, access=access
        )
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(lease_data(lease))


class SubmitView(APIView):
    @extend_schema(request=SubmitInputSerializer, responses={201: AnnotationSerializer})
    def post(self, request: Request, assignment_id: int) -> Response:
        """Label a leased task. 201: recorded; 200: this idempotency_key was already recorded."""
        if not isinstance(request.data, dict):
            raise InvalidInput("Send a JSON object.")
        serializer = SubmitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payload = {k: v for k, v in request.data.items() if k not in LEASE_FIELDS}
        result = assignment_service.annotation_submit(
            assignment_id=assignment_id,
            user=request.user,
            payload=payload,
            idempotency_key=serializer.validated_data["idempotency_key"],
            time_spent_ms=serializer.validated_data.get("time_spent_ms"),
        )
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        annotation = result.annotation
        annotation.annotator = request.user
        return Response(AnnotationSerializer(annotation).data, status=code)


class SkipView(APIView):
    @extend_schema(
        request=SkipInputSerializer,
        responses=inline_serializer(
            "Skipped", {"assignment": serializers.IntegerField(), "status": serializers.CharField()}
        ),
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        """Give a task back with a reason; it is never offered to the caller again."""
        serializer = SkipInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        lease = assignment_service.assignment_skip(
            assignment_id=assignment_id,
            user=request.user,
            reason=serializer.validated_data["reason"],
        )
        return Response({"assignment": lease.pk, "status": lease.status})
