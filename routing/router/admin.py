from django.contrib import admin, messages

from routing.router import route
from routing.router.models import (
    ItemFeatures,
    RewardFeature,
    RouterModel,
    RoutingBudget,
    RoutingDecision,
    RoutingPolicy,
    RoutingWork,
)


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    """Edited here, validated by ``RoutingPolicy.clean`` (a bad rule is refused with its reason),
    saved through the router's service so that every change bumps the version."""

    list_display = ["project", "name", "version", "budget_fraction", "budget_count", "active"]
    list_filter = ["name", "active"]
    readonly_fields = ["version", "created_at", "updated_at"]
    actions = ["dry_run"]

    def save_model(self, request, obj, form, change):
        if obj.active:
            values = {f: getattr(obj, f) for f in route.POLICY_FIELDS}
            saved = route.routing_policy_set(project=obj.project, **values)
            obj.pk, obj.version = saved.pk, saved.version
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Dry run: how many unrouted items each target would get")
    def dry_run(self, request, queryset):
        for policy in queryset:
            out = route.routing_dry_run(
                project=policy.project, name=policy.name, params=policy.params
            )
            targets = ", ".join(f"{k}: {v}" for k, v in out["targets"].items())
            self.message_user(
                request,
                f"{policy.project}: {out['items']} unrouted items -> {targets}",
                messages.INFO,
            )


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(admin.ModelAdmin):
    list_display = [
        "item",
        "target",
        "kind",
        "policy_name",
        "policy_version",
        "score",
        "created_at",
    ]
    list_filter = ["target", "kind", "calibration", "policy_name"]
    list_select_related = ["item"]
    raw_id_fields = ["item", "project", "policy", "supersedes"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(RouterModel)
class RouterModelAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "n_train", "feature_version", "created_at"]
    exclude = ["blob"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(RoutingBudget)
class RoutingBudgetAdmin(admin.ModelAdmin):
    list_display = ["project", "spent", "updated_at"]
    readonly_fields = ["spent"]


@admin.register(ItemFeatures)
class ItemFeaturesAdmin(admin.ModelAdmin):
    list_display = ["item", "version", "computed_at"]
    raw_id_fields = ["item"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RoutingWork)
class RoutingWorkAdmin(admin.ModelAdmin):
    """The router's background work per project (read-only: ``routing.router.loop`` owns it)."""

    list_display = ["project", "status", "again", "runs", "requested_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in RoutingWork._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RewardFeature)
class RewardFeatureAdmin(admin.ModelAdmin):
    """Reward models registered as router features (read-only: the "Use for routing" action
    and its scoring task own them)."""

    list_display = ["project", "model_key", "status", "scored", "total", "registered_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in RewardFeature._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
