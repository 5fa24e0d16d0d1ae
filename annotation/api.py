"""REST API for projects, members, items and annotations (``/api/v1/``).

Views are thin: they authorise through ``selectors``/``policies`` and write through ``services``.
"""

import tempfile
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from tandem.errors import Forbidden, InvalidInput
from tandem.inputs import is_id
from tandem.parsers import RowsJSONParser
from tandem.schema import ERROR

from . import policies, selectors, services
from .import_jobs import (
    import_job_cancel,
    import_job_create,
    import_job_retry,
    import_job_state,
    upload_format,
)
from .importer import ImportResult, items_import, items_import_file
from .models import (
    Annotation,
    Candidate,
    ImportJob,
    Item,
    Membership,
    MembershipChange,
    Project,
)
from .quality import quality_report
from .readers import FORMATS, UnreadableFile
from .schema import TaskType


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "slug", "task_type", *services.PROJECT_SETTINGS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"name": {"required": False, "help_text": "default: the slug"}}


class ProjectUpdateSerializer(ProjectSerializer):
    class Meta(ProjectSerializer.Meta):
        read_only_fields = [*ProjectSerializer.Meta.read_only_fields, "slug", "task_type"]


class MemberSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    create = serializers.BooleanField(
        write_only=True, default=False, help_text="create the account first (a new user)"
    )
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        help_text="for a new user; empty: one is made up and answered once",
    )


class MemberChangeSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    changed_by = serializers.CharField(
        source="changed_by.username", default=None, read_only=True, allow_null=True
    )

    class Meta:
        model = MembershipChange
        fields = ["id", "user", "username", "old_role", "new_role", "changed_by", "created_at"]


class CandidateSerializer(serializers.ModelSerializer):
    letter = serializers.CharField(read_only=True)

    class Meta:
        model = Candidate
        fields = ["letter", "text", "model", "metadata"]


class ItemSerializer(serializers.ModelSerializer):
    candidates = CandidateSerializer(many=True, read_only=True)

    class Meta:
        model = Item
        fields = [
            "id",
            "external_id",
            "prompt",
            "messages",
            "metadata",
            "gold",
            "route",
            "content_hash",
            "human_done",
            "open_leases",
            "candidates",
            "created_at",
        ]


class AnnotationSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(
        source="annotator.username", default=None, read_only=True, allow_null=True
    )

    class Meta:
        model = Annotation
        fields = [
            "id",
            "project",
            "item",
            "source",
            "annotator",
            "external_annotator",
            "judge",
            "judge_run_id",
            "assignment",
            "payload",
            "order",
            "raw_output",
            "confidence",
            "time_spent_ms",
            "supersedes",
            "imported",
            "metadata",
            "created_at",
        ]


class ImportResultSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    skipped = serializers.IntegerField()
    failed = serializers.IntegerField()
    labels_created = serializers.IntegerField()
    written = serializers.BooleanField()
    errors = serializers.ListField(child=serializers.DictField(), help_text="{line, message}")
    errors_truncated = serializers.BooleanField()


class ImportJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    source_name = serializers.CharField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    rows_done = serializers.IntegerField()
    total_rows = serializers.IntegerField(allow_null=True)
    percent = serializers.FloatField(allow_null=True)
    result = ImportResultSerializer(allow_null=True)
    error = serializers.CharField()
    stuck = serializers.BooleanField(
        help_text="queued or running with no sign of a worker for TANDEM_JOB_STALE_SECONDS"
    )
    can_retry = serializers.BooleanField()
    can_cancel = serializers.BooleanField()
    attempts = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="JSONL, CSV or Parquet")
    rows = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="rows as JSON, instead of a file"
    )
    format = serializers.ChoiceField(choices=FORMATS, required=False)
    partial = serializers.BooleanField(default=False)
    preference_source = serializers.ChoiceField(
        choices=["human", "judge", "none"],
        default="none",
        help_text="who gave TRL rows' chosen/rejected (or completion label): stored as that "
        "source's label; none (the default) stores no label",
    )
    background = serializers.BooleanField(
        default=False,
        help_text="import the file on a worker and answer 202 with a job to poll "
        "(always so for files over TANDEM_IMPORT_INLINE_MAX_BYTES)",
    )

    def validate(self, attrs):
        if ("file" in attrs) == ("rows" in attrs):
            raise serializers.ValidationError("send either a file or rows")
        limit = settings.TANDEM_IMPORT_MAX_JSON_ROWS
        if len(attrs.get("rows", ())) > limit:
            raise serializers.ValidationError(
                f"at most {limit} rows in one JSON request (TANDEM_IMPORT_MAX_JSON_ROWS); "
                "send more as a file"
            )
        return attrs


class FigureSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField(help_text="the sample: items or labels, as the figure says")
    too_few = serializers.BooleanField(help_text="n is below the configured minimum")


class ShareSerializer(FigureSerializer):
    successes = serializers.IntegerField()
    low = serializers.FloatField(allow_null=True, help_text="Wilson confidence interval")
    high = serializers.FloatField(allow_null=True)


class FleissKappaSerializer(FigureSerializer):
    raters = serializers.IntegerField(help_text="items with exactly this many human labels")


class PairKappaSerializer(FigureSerializer):
    annotators = serializers.ListField(child=serializers.CharField())


class CohenKappasSerializer(serializers.Serializer):
    mean = FigureSerializer()
    pairs = PairKappaSerializer(many=True)
    pairs_total = serializers.IntegerField()


class AgreementSerializer(serializers.Serializer):
    krippendorff_alpha = FigureSerializer()
    fleiss_kappa = FleissKappaSerializer()
    cohen_kappa = CohenKappasSerializer()


class PositionBiasSerializer(serializers.Serializer):
    first_wins = ShareSerializer()
    chance = serializers.FloatField()
    ties = serializers.IntegerField()
    both_bad = serializers.IntegerField()
    unparsed = serializers.IntegerField()
    unknown_order = serializers.IntegerField()


class AnnotatorQualitySerializer(serializers.Serializer):
    annotator = serializers.CharField()
    labels = serializers.IntegerField()
    skips = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    gold_accuracy = ShareSerializer()
    peer_agreement = ShareSerializer()
    position_bias = PositionBiasSerializer(allow_null=True)
    length_bias = ShareSerializer(allow_null=True)
    flags = serializers.ListField(child=serializers.CharField())


class JudgeQualitySerializer(serializers.Serializer):
    judge = serializers.CharField()
    labels = serializers.IntegerField()
    human_agreement = ShareSerializer()
    order_consistency = ShareSerializer()
    unparsed = ShareSerializer()
    position_bias = PositionBiasSerializer(allow_null=True)
    length_bias = ShareSerializer(allow_null=True)
    flags = serializers.ListField(child=serializers.CharField())


class QualitySettingsSerializer(serializers.Serializer):
    min_items = serializers.IntegerField()
    min_pair_items = serializers.IntegerField()
    max_pairs = serializers.IntegerField()
    confidence = serializers.FloatField()
    flag_gold_accuracy = serializers.FloatField()
    flag_peer_agreement = serializers.FloatField()
    flag_position_bias = serializers.FloatField()


class QualityReportSerializer(serializers.Serializer):
    """The figures of ``annotation.quality``; see docs/quality.md for each one's definition."""

    project_id = serializers.IntegerField()
    task_type = serializers.ChoiceField(choices=TaskType.choices)
    items_labelled = serializers.IntegerField()
    human_labels = serializers.IntegerField()
    judge_labels = serializers.IntegerField()
    agreement = AgreementSerializer()
    annotators = AnnotatorQualitySerializer(many=True)
    judges = JudgeQualitySerializer(many=True)
    length_bias_reference = ShareSerializer(
        allow_null=True, help_text="how often the longer candidate wins in the human majority"
    )
    settings = QualitySettingsSerializer()


@extend_schema(
    parameters=[OpenApiParameter("slug", OpenApiTypes.STR, description="find a project by slug")]
)
class ProjectViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Projects the caller is a member of (admins: all)."""

    serializer_class = ProjectSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Project.objects.none()
        projects = selectors.project_list_for_user(user=self.request.user)
        slug = self.request.query_params.get("slug")
        return projects.filter(slug=slug) if slug else projects

    def get_object(self) -> Project:
        manage = self.action not in ("list", "retrieve")
        return selectors.project_get_for_user(
            user=self.request.user, project_id=self.kwargs["pk"], manage=manage
        )

    def create(self, request: Request) -> Response:
        if not policies.can_create_project(request.user):
            raise Forbidden("Only managers and admins create projects.")
        serializer = ProjectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(created_by=request.user, **serializer.validated_data)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer)
    def update(self, request: Request, pk: str) -> Response:
        project = self.get_object()
        serializer = ProjectUpdateSerializer(project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {
            k: v for k, v in serializer.validated_data.items() if k in services.PROJECT_SETTINGS
        }
        project = services.project_update(project=project, **changes)
        return Response(ProjectSerializer(project).data)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk)

    @extend_schema(request=MemberSerializer, responses=MemberSerializer(many=True))
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def members(self, request: Request, pk: str) -> Response:
        """List members (any member), or add one / change their role (managers)."""
        project = selectors.project_get_for_user(
            user=request.user, project_id=pk, manage=request.method != "GET"
        )
        made_up = None
        if request.method == "POST":
            serializer = MemberSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            _, made_up = services.member_add(
                project=project, changed_by=request.user, **serializer.validated_data
            )
        members = (
            Membership.objects.filter(project=project)
            .select_related("user")
            .order_by("user__username")
        )
        data = [
            {"user_id": m.user_id, "username": m.user.username, "role": m.role} for m in members
        ]
        headers = {"X-Tandem-Password": made_up} if made_up else None
        return Response(data, status=201 if request.method == "POST" else 200, headers=headers)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<user_id>\d+)")
    def remove_member(self, request: Request, pk: str, user_id: str) -> Response:
        project = selectors.project_get_for_user(user=request.user, project_id=pk, manage=True)
        user = get_object_or_404(User, pk=user_id)
        services.membership_remove(project=project, user=user, changed_by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=MemberChangeSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="members/history")
    def member_history(self, request: Request, pk: str) -> Response:
        """Role changes on the project, oldest first: who, when, from what to what (managers)."""
        project = selectors.project_get_for_user(user=request.user, project_id=pk, manage=True)
        page = self.paginate_queryset(selectors.membership_change_list(project=project))
        return self.get_paginated_response(MemberChangeSerializer(page, many=True).data)

    @extend_schema(responses=ItemSerializer(many=True))
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: str) -> Response:
        """Items with their candidates, keyset-paginated by id (managers)."""
        project = selectors.project_get_for_user(user=request.user, project_id=pk, manage=True)
        queryset = selectors.item_list(project=project).prefetch_related("candidates")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ItemSerializer(page, many=True).data)

    @extend_schema(responses=QualityReportSerializer)
    @action(detail=True, methods=["get"], pagination_class=None)
    def quality(self, request: Request, pk: str) -> Response:
        """Label quality (managers): agreement, per-annotator and per-judge figures, position and
        length bias. Every figure states its sample ``n`` and whether it is ``too_few``."""
        project = selectors.project_get_for_user(user=request.user, project_id=pk, manage=True)
        report = quality_report(project=project)
        return Response(QualityReportSerializer(report.as_dict()).data)

    @extend_schema(
        request=ImportInputSerializer,
        responses={
            201: ImportResultSerializer,
            400: PolymorphicProxySerializer(
                component_name="ImportRejected",
                serializers=[ImportResultSerializer, ERROR],
                resource_type_field_name=None,
            ),
            202: ImportJobSerializer,
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="items/import",
        parser_classes=[MultiPartParser, FormParser, RowsJSONParser],
    )
    def import_items(self, request: Request, pk: str) -> Response:
        """Bulk import (managers): a JSONL/CSV/Parquet file, or ``rows`` as JSON.

        Answers 201 when rows were written, 400 with every bad row's line when nothing was.
        """
        project = selectors.project_get_for_user(user=request.user, project_id=pk, manage=True)
        serializer = ImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        options = {"partial": data["partial"], "preference_source": data["preference_source"]}
        if "rows" in data:
            rows = ((i, r) for i, r in enumerate(data["rows"], start=1))
            result = items_import(project=project, rows=rows, **options)
        else:
            upload = data["file"]
            fmt = upload_format(upload.name, data.get("format"))
            if data["background"] or upload.size > settings.TANDEM_IMPORT_INLINE_MAX_BYTES:
                job = import_job_create(
                    project=project,
                    user=request.user,
                    upload=upload,
                    name=upload.name,
                    fmt=fmt,
                    **options,
                )
                return Response(import_job_state(job), status=status.HTTP_202_ACCEPTED)
            result = _import_upload(project, upload, fmt, options)
        ok = result.written and not (result.failed and not data["partial"])
        return Response(result.as_dict(), status=201 if ok else 400)


def _import_upload(project: Project, upload, fmt: str, options: dict) -> ImportResult:
    try:
        if hasattr(upload, "temporary_file_path"):  # streamed to disk by the upload handler
            path = Path(upload.temporary_file_path())
            return items_import_file(project=project, source=path, fmt=fmt, **options)
        # Small uploads are in memory; Parquet needs a seekable real file.
        with tempfile.NamedTemporaryFile(suffix=f".{fmt}") as spool:
            for chunk in upload.chunks():
                spool.write(chunk)
            spool.flush()
            return items_import_file(project=project, source=Path(spool.name), fmt=fmt, **options)
    except UnreadableFile as exc:
        raise InvalidInput(f"{upload.name}: {exc}", code="unreadable_file") from None


@extend_schema(
    parameters=[
        OpenApiParameter("project", OpenApiTypes.INT),
        OpenApiParameter("item", OpenApiTypes.INT),
        OpenApiParameter("source", OpenApiTypes.STR, enum=["human", "judge"]),
        OpenApiParameter(
            "annotator", OpenApiTypes.STR, description="username, or an imported annotator's name"
        ),
        OpenApiParameter("judge", OpenApiTypes.STR),
    ]
)
class AnnotationViewSet(viewsets.ReadOnlyModelViewSet):
    """Labels: managers see all of their projects', annotators their own."""

    serializer_class = AnnotationSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Annotation.objects.none()
        queryset = selectors.annotation_list_for_user(user=self.request.user).select_related(
            "annotator"
        )
        params = self.request.query_params
        filters = {
            "project_id": params.get("project"),
            "item_id": params.get("item"),
            "source": params.get("source"),
            "judge": params.get("judge"),
        }
        for name in ("project_id", "item_id"):
            if filters[name] is not None and not is_id(filters[name]):
                raise InvalidInput(f"{name.removesuffix('_id')} must be a number")
        if filters["source"] is not None and filters["source"] not in ("human", "judge"):
            raise InvalidInput("source must be human or judge")
        queryset = queryset.filter(**{k: v for k, v in filters.items() if v is not None})
        annotator = params.get("annotator")
        if annotator is not None:  # the quality page links imported annotators here too
            queryset = queryset.filter(
                Q(annotator__username=annotator)
                | Q(annotator__isnull=True, external_annotator=annotator)
            )
        return queryset


class ImportJobViewSet(viewsets.GenericViewSet):
    """Background imports, for the managers of their project: poll until ``done`` or ``failed``."""

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ImportJob.objects.none()
        return selectors.import_job_list_for_user(user=self.request.user)

    @extend_schema(responses=ImportJobSerializer(many=True))
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([import_job_state(job) for job in page])

    @extend_schema(responses=ImportJobSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        job = get_object_or_404(self.get_queryset(), pk=pk)  # DRF's: "abc" is a 404 too
        return Response(import_job_state(job))

    @extend_schema(request=None, responses={200: ImportJobSerializer, 409: ERROR})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Queue a stuck job again (its worker died, or none took it); 409 otherwise."""
        job = import_job_retry(job=get_object_or_404(self.get_queryset(), pk=pk))
        return Response(import_job_state(job))

    @extend_schema(request=None, responses={200: ImportJobSerializer, 409: ERROR})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel a queued or running job (a running import is rolled back); 409 once ended."""
        job = import_job_cancel(
            job=get_object_or_404(self.get_queryset(), pk=pk), user=request.user
        )
        return Response(import_job_state(job))
