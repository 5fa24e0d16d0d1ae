"""REST API of training jobs: ``/api/v1/training-jobs/``.

Create from a snapshot (kind, base model, hyperparameters), list, detail with metrics, cancel.
Managers of the snapshot's project (and admins) only; for anyone else a job, or the snapshot
asked for, does not exist (404).
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from routing.router.models import RewardFeature
from tandem.pagination import KeysetPagination

from . import jobs, routing_scores, selectors
from .models import TrainingJob

JOB_FIELDS = [
    "id",
    "project",
    "snapshot",
    "kind",
    "base_model",
    "hyperparameters",
    "status",
    "cancel_requested",
    "reason",
    "artifacts",
    "worker",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
]


class TrainingJobSerializer(serializers.ModelSerializer):
    """A job in a list: everything but the log and the metrics (the detail has them)."""

    class Meta:
        model = TrainingJob
        fields = JOB_FIELDS
        read_only_fields = fields


class TrainingJobDetailSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingJob
        fields = [*JOB_FIELDS, "log", "metrics"]
        read_only_fields = fields


class TrainingJobCreateSerializer(serializers.Serializer):
    snapshot = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=TrainingJob.Kind.choices)
    base_model = serializers.CharField(
        required=False, allow_blank=True, help_text="A local folder; default TRAINING_BASE_MODEL."
    )
    hyperparameters = serializers.DictField(required=False, default=dict)


class RewardFeatureSerializer(serializers.ModelSerializer):
    """A reward model registered on a project's router, and how far its scoring is."""

    class Meta:
        model = RewardFeature
        fields = [
            "project",
            "training_job_id",
            "model_key",
            "description",
            "status",
            "scored",
            "total",
            "error",
            "registered_at",
            "finished_at",
        ]
        read_only_fields = fields


class TrainingJobPagination(KeysetPagination):
    ordering = "-id"


class TrainingJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Training jobs of the projects the caller manages; ``?project=`` and ``?snapshot=``
    filter."""

    queryset = TrainingJob.objects.none()
    pagination_class = TrainingJobPagination

    def get_serializer_class(self):
        return TrainingJobSerializer if self.action == "list" else TrainingJobDetailSerializer

    def get_queryset(self):
        jobs_ = selectors.training_job_list_for_user(user=self.request.user)
        for name in ("project", "snapshot"):
            value = self.request.query_params.get(name)
            if value is not None:
                jobs_ = jobs_.filter(**{f"{name}_id": value if value.isdigit() else -1})
        return jobs_

    def get_object(self) -> TrainingJob:
        return selectors.training_job_get_for_user(user=self.request.user, job_id=self.kwargs["pk"])

    @extend_schema(
        parameters=[
            OpenApiParameter("project", int, description="jobs of this project"),
            OpenApiParameter("snapshot", int, description="jobs on this snapshot"),
        ]
    )
    def list(self, request: Request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=TrainingJobCreateSerializer, responses=TrainingJobDetailSerializer)
    def create(self, request: Request) -> Response:
        """Queue a job on the ``gpu`` Celery queue (managers of the snapshot's project)."""
        serializer = TrainingJobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        snapshot = selectors.snapshot_get_for_manager(
            user=request.user, snapshot_id=data["snapshot"]
        )
        job = jobs.training_job_create(
            snapshot=snapshot,
            user=request.user,
            kind=data["kind"],
            base_model=data.get("base_model") or None,
            hyperparameters=data.get("hyperparameters") or {},
        )
        return Response(TrainingJobDetailSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=TrainingJobDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel: a queued job at once, a running one at its next step."""
        job = jobs.training_job_cancel(job=self.get_object())
        return Response(TrainingJobDetailSerializer(job).data)

    @extend_schema(request=None, responses={202: RewardFeatureSerializer})
    @action(detail=True, methods=["post"], url_path="use-for-routing")
    def use_for_routing(self, request: Request, pk: str) -> Response:
        """Register a succeeded reward model on its project's router (replacing the one before)
        and queue the scoring of the project's items: the ``rm_margin`` feature."""
        feature = routing_scores.reward_routing_register(job=self.get_object(), user=request.user)
        return Response(RewardFeatureSerializer(feature).data, status=status.HTTP_202_ACCEPTED)
