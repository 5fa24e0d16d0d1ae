"""Admin for judges (site-wide configuration) and judge runs (read-only records)."""

from django.contrib import admin

from routing.judges import services
from routing.judges.models import Judge, JudgeItemResult, JudgeRun

LIMITS = [
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_seconds",
    "max_attempts",
]


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "model", "output_mode", "max_concurrency", "active"]
    list_filter = ["provider", "active"]
    search_fields = ["name", "model"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "provider", "model", "base_url", "api_key_env", "active"]}),
        ("Prompting", {"fields": ["templates", "sampling", "output_mode", "logprobs"]}),
        ("USD per million tokens", {"fields": ["price_input_per_mtok", "price_output_per_mtok"]}),
        ("Limits", {"fields": LIMITS}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request) -> bool:
        return request.user.is_active and getattr(request.user, "is_admin", False)

    def has_change_permission(self, request, obj=None) -> bool:
        return self.has_add_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.has_add_permission(request) and (obj is None or not obj.runs.exists())

    def save_model(self, request, obj, form, change) -> None:
        services.judge_check(obj)
        super().save_model(request, obj, form, change)


@admin.register(JudgeRun)
class JudgeRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "judge", "status", "done", "failed", "total", "cost"]
    list_filter = ["status", "judge"]
    list_select_related = ["project", "judge"]
    actions = ["cancel_runs"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Cancel the selected runs")
    def cancel_runs(self, request, queryset) -> None:
        for run in queryset:
            if not run.is_finished:
                services.judge_run_cancel(run=run)


@admin.register(JudgeItemResult)
class JudgeItemResultAdmin(admin.ModelAdmin):
    list_display = ["run", "item", "orders", "parsed", "consistent", "needs_human", "reason"]
    list_filter = ["needs_human", "reason"]
    raw_id_fields = ["run", "item"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
