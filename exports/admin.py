from django.contrib import admin

from .models import Preference, Snapshot


@admin.register(Preference)
class PreferenceAdmin(admin.ModelAdmin):
    """Derived data (``preferences_recompute`` rebuilds it): read-only here."""

    list_display = ["item", "project", "choice", "provenance", "agreement", "n_human", "n_judge"]
    list_filter = ["provenance", "method"]
    raw_id_fields = ["item", "project"]
    list_select_related = ["item", "project"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """Immutable once built: read-only here; deleting one deletes its files."""

    list_display = ["id", "project", "format", "file_format", "status", "rows", "created_at"]
    list_filter = ["status", "format", "file_format"]
    raw_id_fields = ["project", "created_by"]
    list_select_related = ["project"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
