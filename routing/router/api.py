"""REST API of the router (``/api/v1/projects/{id}/routing-policy/`` and friends).

Views are thin: they load and authorise through ``annotation.selectors`` (managers only; missing
and forbidden both answer 404), then call the router's services.
"""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Item
from annotation.selectors import project_get_for_user
from routing.router import fitting, loop, route, selectors
from routing.router.models import RoutingDecision, RoutingPolicy


class PolicyInputSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=RoutingPolicy.Name.choices, required=False)
    params = serializers.JSONField(required=False)
    judges = serializers.ListField(child=serializers.CharField(), required=False)
    budget_fraction = serializers.FloatField(required=False, allow_null=True)
    budget_count = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    calibration_share = serializers.FloatField(required=False)
    tagging_judge = serializers.CharField(required=False, allow_blank=True, max_length=100)
    judge_cost_cap = serializers.DecimalField(
        max_digits=14, decimal_places=6, required=False, allow_null=True, min_value=0
    )


class PolicyOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = RoutingPolicy
        fields = ["id", *route.POLICY_FIELDS, "version", "updated_at"]


class DryRunInputSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=RoutingPolicy.Name.choices, required=False)
    params = serializers.JSONField(required=False)


class DecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = RoutingDecision
        fields = [
            "id",
            "item",
            "target",
            "kind",
            "calibration",
            "policy_name",
            "policy_version",
            "model_version",
            "score",
            "reason",
            "budget_state",
            "features",
            "supersedes",
            "created_at",
        ]


POLICY_STATE = inline_serializer(
    "RoutingPolicyState",
    {
        "policy": PolicyOutputSerializer(allow_null=True),
        "budget": serializers.DictField(),
        "expected_agreement": serializers.DictField(allow_null=True),
        "routes": serializers.DictField(child=serializers.IntegerField()),
    },
)


def _policy_payload(project) -> dict:
    policy = route.routing_policy_get(project=project)
    return {
        "policy": PolicyOutputSerializer(policy).data if policy else None,
        "budget": route.budget_state(project=project),
        "expected_agreement": fitting.project_expected_agreement(project=project),
        "routes": selectors.route_counts(project=project),
        "history": [
            {"version": v.version, "config": v.config, "created_at": v.created_at}
            for v in route.routing_policy_history(project=project)[:50]
        ],
    }


class RoutingPolicyView(APIView):
    """The project's routing policy, its budget (spent, remaining) and the expected agreement."""

    @extend_schema(responses=POLICY_STATE)
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        return Response(_policy_payload(project))

    @extend_schema(request=PolicyInputSerializer, responses=POLICY_STATE)
    def put(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        serializer = PolicyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        route.routing_policy_set(project=project, **serializer.validated_data)
        return Response(_policy_payload(project))

    patch = put


class RoutingDryRunView(APIView):
    """How many unrouted items each target would get under a policy; writes no decision."""

    @extend_schema(
        request=DryRunInputSerializer,
        responses=inline_serializer(
            "RoutingDryRun",
            {
                "policy": serializers.CharField(),
                "items": serializers.IntegerField(),
                "targets": serializers.DictField(child=serializers.IntegerField()),
                "remaining": serializers.IntegerField(allow_null=True),
            },
        ),
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        serializer = DryRunInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        out = route.routing_dry_run(project=project, **serializer.validated_data)
        return Response(out)


class RouteView(APIView):
    """Route the project's unrouted items now (the loop then asks the judges for them)."""

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "RouteResult",
            {
                "routed": serializers.IntegerField(),
                "targets": serializers.DictField(child=serializers.IntegerField()),
            },
        ),
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        result = loop.project_route_now(project=project)
        return Response({"routed": result.n_routed, "targets": result.counts()})


class ItemDecisionsView(APIView):
    """Every routing decision of an item, oldest first (re-routings supersede)."""

    @extend_schema(
        responses=inline_serializer(
            "ItemDecisions",
            {
                "item": serializers.IntegerField(),
                "route": serializers.ChoiceField(choices=Item.Route.choices),
                "decisions": DecisionSerializer(many=True),
            },
        )
    )
    def get(self, request: Request, project_id: int, item_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        item = selectors.item_get(project=project, item_id=item_id)
        decisions = selectors.decision_list(item=item)
        return Response(
            {
                "item": item.pk,
                "route": item.route,
                "decisions": DecisionSerializer(decisions, many=True).data,
            },
            status=status.HTTP_200_OK,
        )


class PipelineView(APIView):
    """Where the project stands: items by stage, budget, judge cost, and ``idle`` (no routing
    or judging work queued or running). Managers and admins; annotators 403, strangers 404."""

    @extend_schema(
        responses=inline_serializer(
            "Pipeline",
            {
                "project": serializers.IntegerField(),
                "items": serializers.IntegerField(),
                "unrouted": serializers.IntegerField(),
                "judge": serializers.DictField(child=serializers.IntegerField()),
                "people": serializers.DictField(child=serializers.IntegerField()),
                "resolved": serializers.DictField(
                    child=serializers.IntegerField(), allow_null=True
                ),
                "budget": serializers.DictField(),
                "judge_cost": serializers.CharField(),
                "judge_calls": serializers.IntegerField(),
                "routing": serializers.DictField(),
                "idle": serializers.BooleanField(),
            },
        )
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_user(user=request.user, project_id=project_id, manage=True)
        return Response(selectors.project_pipeline(project=project))
