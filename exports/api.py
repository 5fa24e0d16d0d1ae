"""REST API of exports: ``/api/v1/projects/{id}/preferences/`` (and, with their issues,
snapshots). Views are thin: they authorise through ``annotation.selectors`` (managers and
admins; annotators 403; anyone else 404, as for a missing project) and read through
``exports.selectors``."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.selectors import project_get_for_user
from tandem.errors import InvalidInput
from tandem.pagination import KeysetPagination

from . import selectors
from .models import Preference

PREFERENCE_FIELDS = [
    "item",
    "external_id",
    "choice",
    "strength",
    "margin",
    "provenance",
    "agreement",
    "n_human",
    "n_judge",
    "method",
    "decided_by",
    "confidence",
    "resolved",
    "resolved_at",
    "updated_at",
]


class PreferenceSerializer(serializers.ModelSerializer):
    item = serializers.IntegerField(source="item_id", read_only=True)
    external_id = serializers.CharField(read_only=True)
    choice = serializers.JSONField(
        read_only=True,
        help_text='pairwise "A" | "B" | "tie" | "both_bad"; listwise a ranking (letters, best '
        'first); thumbs "up" | "down"; null while unresolved',
    )
    resolved = serializers.BooleanField(read_only=True)

    class Meta:
        model = Preference
        fields = PREFERENCE_FIELDS
        read_only_fields = PREFERENCE_FIELDS


class PreferencePagination(KeysetPagination):
    ordering = "item_id"


def _bool(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise InvalidInput(f"{name} must be true or false", details={name: value})


def _fraction(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise InvalidInput(f"{name} must be a number from 0 to 1", details={name: value})
    return number


class PreferenceListView(GenericAPIView):
    """The final preference of each item of the project, keyset-paginated by item id."""

    serializer_class = PreferenceSerializer
    pagination_class = PreferencePagination

    @extend_schema(
        parameters=[
            OpenApiParameter("provenance", OpenApiTypes.STR, enum=Preference.Provenance.values),
            OpenApiParameter("resolved", OpenApiTypes.BOOL),
            OpenApiParameter(
                "agreement_min", OpenApiTypes.FLOAT, description="0..1: at least this agreement"
            ),
        ],
        responses=PreferenceSerializer(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        params = request.query_params
        provenance = params.get("provenance")
        if provenance is not None and provenance not in Preference.Provenance.values:
            raise InvalidInput(
                "provenance must be one of " + ", ".join(Preference.Provenance.values),
                details={"provenance": provenance},
            )
        rows = selectors.preference_list(
            project=project,
            provenance=provenance,
            resolved=_bool("resolved", params.get("resolved")),
            agreement_min=_fraction("agreement_min", params.get("agreement_min")),
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(PreferenceSerializer(page, many=True).data)
