"""REST API for judges (``/api/v1/judges/``) and judge runs (``/api/v1/judge-runs/``).

Judges are site-wide configuration: admins create, edit and delete them; managers may read them
(to pick one for a run); annotators may not see them. API keys never appear: a judge names the
environment variable that holds its key. Runs belong to projects: their managers (and admins)
list, start, cancel and resume them; anyone else gets 404, as for a missing run.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import selectors as annotation_selectors
from annotation.models import Item
from routing.judges import guards, selectors, services
from routing.judges.estimate import judge_run_estimate
from routing.judges.models import Judge, JudgeRun
from routing.judges.trial import judge_test_call
from tandem.errors import InvalidInput, NotFound
from tandem.inputs import is_id
from tandem.serializers import RejectUnknownFieldsMixin


class JudgeSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = Judge
        fields = ["id", *services.JUDGE_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"name": {"validators": []}}  # uniqueness answered by the service

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["base_url"] = guards.redact_url(data.get("base_url") or "")
        return data


class JudgeRunSerializer(serializers.ModelSerializer):
    judge = serializers.SlugRelatedField(slug_field="name", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = JudgeRun
        fields = [
            "id",
            "project",
            "judge",
            "status",
            "automatic",
            "scope",
            "item_ids",
            "order_mode",
            "permutations",
            "use_cache",
            "cost_cap",
            "total",
            "done",
            "failed",
            "cached",
            "progress",
            "tokens_in",
            "tokens_out",
            "cost",
            "stop_reason",
            "errors",
            "cancel_requested",
            "attempts",
            "judge_config",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, run: JudgeRun) -> float:
        return round((run.done + run.failed) / run.total, 4) if run.total else 0.0

    def to_representation(self, instance):
        data = super().to_representation(instance)
        config = data.get("judge_config")
        if isinstance(config, dict) and config.get("base_url"):
            data["judge_config"] = {**config, "base_url": guards.redact_url(config["base_url"])}
        return data


class JudgeRunCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    project = serializers.IntegerField()
    judge = serializers.CharField(help_text="judge name or id")
    scope = serializers.ChoiceField(choices=JudgeRun.Scope.choices, default="routed")
    item_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    order_mode = serializers.ChoiceField(choices=JudgeRun.OrderMode.choices, default="both")
    permutations = serializers.IntegerField(min_value=1, max_value=24, default=2)
    cost_cap = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, allow_null=True
    )
    use_cache = serializers.BooleanField(default=True)


class ResumeSerializer(serializers.Serializer):
    cost_cap = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, allow_null=True
    )


class TrialSerializer(serializers.Serializer):
    item = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class TrialResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    raw = serializers.CharField()
    error = serializers.CharField()
    payload = serializers.DictField(allow_null=True)
    parse_status = serializers.CharField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=8)


class EstimateSerializer(serializers.Serializer):
    calls = serializers.IntegerField()
    skipped_items = serializers.IntegerField()
    tokens_in_per_call = serializers.IntegerField()
    max_tokens_out_per_call = serializers.IntegerField()
    cost_floor = serializers.DecimalField(max_digits=20, decimal_places=4)
    cost_ceiling = serializers.DecimalField(max_digits=20, decimal_places=4)


class JudgePermission(BasePermission):
    """Read: managers and admins. Write: admins.

    Refusals return False with a ``message`` (DRF answers 403 with it) instead of raising:
    the browsable API asks permissions again to decide which forms to show, and catches only
    DRF's own exceptions there.
    """

    message = "Judges are visible to managers and admins."

    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        if not user.is_authenticated:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            self.message = "Judges are visible to managers and admins."
            return bool(user.is_manager)
        self.message = "Only admins configure judges."
        return bool(user.is_admin)


class JudgeViewSet(viewsets.ModelViewSet):
    serializer_class = JudgeSerializer
    permission_classes = [JudgePermission]
    queryset = Judge.objects.none()

    def get_queryset(self):
        return selectors.judge_list()

    def perform_create(self, serializer) -> None:
        serializer.instance = services.judge_create(**serializer.validated_data)

    def perform_update(self, serializer) -> None:
        serializer.instance = services.judge_update(
            judge=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: Judge) -> None:
        services.judge_delete(judge=instance)

    @extend_schema(request=TrialSerializer, responses=TrialResultSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        """One call with one item (an item id, or a built-in example): the raw answer, the
        parsed label and the cost. Admins; nothing is stored."""
        if not request.user.is_admin:
            self.permission_denied(request, message="Only admins configure judges.")
        serializer = TrialSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = None
        if serializer.validated_data.get("item"):
            item = Item.objects.filter(pk=serializer.validated_data["item"]).first()
            if item is None:
                raise NotFound("No such item.")
        result = judge_test_call(judge=self.get_object(), item=item)
        return Response(TrialResultSerializer(result).data)


class JudgeRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of the projects the caller manages; ``?project=ID`` filters."""

    serializer_class = JudgeRunSerializer
    queryset = JudgeRun.objects.none()

    def get_queryset(self):
        runs = selectors.judge_run_list_for_user(user=self.request.user)
        project = self.request.query_params.get("project")
        if project is not None:
            if not is_id(project):
                raise InvalidInput("project must be a number")
            runs = runs.filter(project_id=project)
        return runs

    def get_object(self) -> JudgeRun:
        return selectors.judge_run_get_for_user(user=self.request.user, run_id=self.kwargs["pk"])

    @extend_schema(request=JudgeRunCreateSerializer, responses=JudgeRunSerializer)
    def create(self, request: Request) -> Response:
        """Start a run (project managers); it goes to the ``judge`` Celery queue."""
        serializer = JudgeRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        project = annotation_selectors.project_get_for_user(
            user=request.user, project_id=data.pop("project"), manage=True
        )
        judge = selectors.judge_get(name_or_id=data.pop("judge"))
        run = services.judge_run_create(
            project=project, judge=judge, created_by=request.user, **data
        )
        return Response(JudgeRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=JudgeRunCreateSerializer, responses=EstimateSerializer)
    @action(detail=False, methods=["post"])
    def estimate(self, request: Request) -> Response:
        """What the run ``POST /judge-runs/`` would start with these fields would cost."""
        serializer = JudgeRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        project = annotation_selectors.project_get_for_user(
            user=request.user, project_id=data.pop("project"), manage=True
        )
        judge = selectors.judge_get(name_or_id=data.pop("judge"))
        if data.get("scope") != JudgeRun.Scope.SELECTION:
            services.check_scope_has_items(project=project, scope=data["scope"])
        estimate = judge_run_estimate(project=project, judge=judge, **data)
        return Response(EstimateSerializer(estimate.as_dict()).data)

    @extend_schema(request=None, responses=JudgeRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = services.judge_run_cancel(run=self.get_object())
        return Response(JudgeRunSerializer(run).data)

    @extend_schema(request=ResumeSerializer, responses=JudgeRunSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        serializer = ResumeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.judge_run_resume(
            run=self.get_object(), cost_cap=serializer.validated_data.get("cost_cap")
        )
        return Response(JudgeRunSerializer(run).data)
