"""REST API of exports: ``/api/v1/projects/{id}/preferences/`` and ``.../snapshots/``.

Views are thin: they authorise through ``annotation.selectors`` (managers and admins;
annotators 403; anyone else 404, as for a missing project), then read through
``exports.selectors`` and ``exports.snapshots``; the recompute endpoint sets the project's
aggregation method through ``exports.aggregation``."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.selectors import project_get_for_user
from tandem.errors import InvalidInput
from tandem.pagination import KeysetPagination

from . import aggregation, selectors, snapshots
from .builder import STYLES, export_preview, export_spec
from .formats import FORMATS, PAIR_MODES
from .models import Aggregation, Preference, Snapshot
from .writers import FILE_FORMATS

PREFERENCE_FIELDS = [
    "item",
    "external_id",
    *Preference.DECIDED_FIELDS,
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


# --- snapshots ----------------------------------------------------------------------------


class SnapshotInputSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=list(FORMATS))
    file_format = serializers.ChoiceField(choices=FILE_FORMATS)
    filters = serializers.DictField(
        required=False,
        help_text="provenance (list), agreement_min, method, annotators (list), judges (list), "
        "labelled_from / labelled_to (YYYY-MM-DD), metadata ({key: value}), gold (bool)",
    )
    splits = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        help_text='fractions by split name, adding up to 1; default {"train": 1}',
    )
    seed = serializers.IntegerField(required=False, default=0, min_value=0)
    style = serializers.ChoiceField(choices=STYLES, required=False, default="auto")
    pairs = serializers.ChoiceField(choices=PAIR_MODES, required=False, default="all")


class SnapshotFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField()


class SnapshotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Snapshot.Status.choices)
    format = serializers.CharField()
    file_format = serializers.CharField()
    params = serializers.DictField()
    items_done = serializers.IntegerField()
    items_total = serializers.IntegerField(allow_null=True)
    percent = serializers.FloatField(allow_null=True)
    rows = serializers.DictField(child=serializers.IntegerField())
    files = SnapshotFileSerializer(many=True)
    error = serializers.CharField()
    stuck = serializers.BooleanField(help_text="queued or building, and its worker went quiet")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class PreviewSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="items that pass the filters")
    resolved = serializers.IntegerField(help_text="of which have a final label")
    rows = serializers.IntegerField(help_text="rows the export would have, all splits")


def _snapshot_input(request: Request) -> dict:
    serializer = SnapshotInputSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class SnapshotListView(GenericAPIView):
    """The project's snapshots (newest last, keyset-paginated), or a new one (built by a
    worker: answers 202; poll it until ``done`` or ``failed``)."""

    serializer_class = SnapshotSerializer

    @extend_schema(responses=SnapshotSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        page = self.paginate_queryset(snapshots.snapshot_list(project=project))
        return self.get_paginated_response([snapshots.snapshot_state(s) for s in page])

    @extend_schema(request=SnapshotInputSerializer, responses={202: SnapshotSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        snapshot = snapshots.snapshot_create(
            project=project, user=request.user, **_snapshot_input(request)
        )
        return Response(snapshots.snapshot_state(snapshot), status=status.HTTP_202_ACCEPTED)


class SnapshotPreviewView(APIView):
    """How many items and rows a snapshot with these parameters would have; builds nothing."""

    @extend_schema(request=SnapshotInputSerializer, responses=PreviewSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        spec = export_spec(project=project, **_snapshot_input(request))
        return Response(export_preview(project=project, spec=spec))


class SnapshotDetailView(APIView):
    """One snapshot: its status and progress, files and counts; DELETE removes it and its
    files."""

    @extend_schema(responses=SnapshotSerializer)
    def get(self, request: Request, project_id: int, snapshot_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        snapshot = snapshots.snapshot_get(project=project, snapshot_id=snapshot_id)
        return Response(snapshots.snapshot_state(snapshot))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, project_id: int, snapshot_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        snapshot = snapshots.snapshot_get(project=project, snapshot_id=snapshot_id)
        snapshots.snapshot_delete(snapshot=snapshot)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SnapshotResumeView(APIView):
    """Queue a stuck snapshot again (``stuck``: its worker died or its message was lost); 409
    while a live worker builds it or once it has ended."""

    @extend_schema(request=None, responses={202: SnapshotSerializer})
    def post(self, request: Request, project_id: int, snapshot_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        snapshot = snapshots.snapshot_get(project=project, snapshot_id=snapshot_id)
        snapshot = snapshots.snapshot_resume(snapshot=snapshot)
        return Response(snapshots.snapshot_state(snapshot), status=status.HTTP_202_ACCEPTED)


class SnapshotFileView(APIView):
    """Download one file of a done snapshot (streamed from disk)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, project_id: int, snapshot_id: int, path: str):
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        snapshot = snapshots.snapshot_get(project=project, snapshot_id=snapshot_id)
        return snapshot_file_response(snapshot, path)


def snapshot_file_response(snapshot: Snapshot, path: str) -> FileResponse:
    """The file as a streamed attachment named ``<project>-<snapshot>-<path>``."""
    file_path = snapshots.snapshot_file(snapshot=snapshot, path=path)
    name = f"snapshot-{snapshot.pk}-{path.replace('/', '-')}"
    return FileResponse(open(file_path, "rb"), as_attachment=True, filename=name)


class AggregationStateSerializer(serializers.Serializer):
    method = serializers.CharField()
    include_judges = serializers.BooleanField()
    include_judges_default = serializers.BooleanField(
        help_text="include_judges is the method's default (the project did not say)"
    )
    methods = serializers.ListField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=Aggregation.Status.choices)
    items_done = serializers.IntegerField(allow_null=True)
    items_total = serializers.IntegerField(allow_null=True)
    fraction = serializers.FloatField(allow_null=True)
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField()
    requested_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    running = serializers.BooleanField()
    status_url = serializers.CharField()


class RecomputeInputSerializer(serializers.Serializer):
    method = serializers.JSONField(
        help_text="majority | dawid_skene | gold_weighted | bradley_terry"
    )
    include_judges = serializers.JSONField(
        required=False, help_text="true | false | null (the method's default)"
    )


class PreferenceRecomputeView(APIView):
    """The project's aggregation method and its recompute. GET: the method and the latest run's
    progress. POST ``{"method", "include_judges"}``: set the method and recompute every
    preference in a Celery task (202; poll ``status_url``). Managers and admins."""

    @extend_schema(responses=AggregationStateSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        return Response(self._state(request, project))

    @extend_schema(request=RecomputeInputSerializer, responses={202: AggregationStateSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        data = request.data if isinstance(request.data, dict) else {}
        aggregation.aggregation_recompute(
            project=project, method=data.get("method"), include_judges=data.get("include_judges")
        )
        return Response(self._state(request, project), status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _state(request: Request, project) -> dict:
        state = aggregation.aggregation_state(project=project)
        state["status_url"] = request.build_absolute_uri(
            f"/api/v1/projects/{project.pk}/preferences/recompute/"
        )
        return AggregationStateSerializer(state).data
