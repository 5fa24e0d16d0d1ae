"""Django admin for annotation data. Labels are append-only, so they are read-only here."""

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from accounts.models import User
from tandem.errors import ApplicationError

from . import policies, services
from .models import (
    Annotation,
    Assignment,
    Candidate,
    ImportJob,
    Item,
    Membership,
    MembershipChange,
    Project,
)


class MembershipFormSet(BaseInlineFormSet):
    """Checks what ``services.membership_set``/``membership_remove`` would refuse, so the admin
    shows it on the form; ``ProjectAdmin.save_formset`` then writes through those services."""

    def clean(self) -> None:
        super().clean()
        managers_before = set(
            Membership.objects.filter(
                project_id=self.instance.pk, role=Membership.Role.MANAGER
            ).values_list("user_id", flat=True)
            if self.instance.pk
            else ()
        )
        managers_after = set(managers_before)
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data:
                continue
            if form.instance.pk:
                managers_after.discard(form.initial.get("user"))
            user, role = data.get("user"), data.get("role")
            if data.get("DELETE") or user is None:
                continue
            if role == Membership.Role.MANAGER and not policies.may_manage_projects(user):
                form.add_error("role", f"{user.username} is a site annotator: not a manager.")
            if role == Membership.Role.MANAGER:
                managers_after.add(user.pk)
            else:
                managers_after.discard(user.pk)
        if managers_before and not managers_after:
            raise ValidationError("A project keeps at least one manager.")


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    raw_id_fields = ("user",)
    extra = 0


@admin.register(MembershipChange)
class MembershipChangeAdmin(admin.ModelAdmin):
    """The record of role changes: read-only, append-only."""

    list_display = ("created_at", "project", "user", "old_role", "new_role", "changed_by")
    list_filter = ("new_role",)
    search_fields = ("project__slug", "user__username", "changed_by__username")
    list_select_related = ("project", "user", "changed_by")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "task_type", "overlap", "archived", "created_at")
    list_filter = ("task_type", "archived")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]

    def save_formset(self, request, form, formset, change) -> None:
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        # Through the services, so the cap, the last-manager rule and the record hold here too.
        # Promotions first, removals last, so a swap of managers never leaves none in between.
        project, sets, removals = form.instance, [], []
        for row in formset.forms:
            data = getattr(row, "cleaned_data", None)
            if not data or (not row.has_changed() and not data.get("DELETE")):
                continue
            # The form has already copied its data onto row.instance: the old user is initial.
            old_user = User.objects.get(pk=row.initial["user"]) if row.instance.pk else None
            if data.get("DELETE"):
                if old_user is not None:
                    removals.append(old_user)
                continue
            sets.append((data["user"], data["role"]))
            if old_user is not None and old_user.pk != data["user"].pk:
                removals.append(old_user)
        sets.sort(key=lambda pair: pair[1] != Membership.Role.MANAGER)
        try:
            for user, role in sets:
                services.membership_set(
                    project=project, user=user, role=role, changed_by=request.user
                )
            for user in removals:
                services.membership_remove(project=project, user=user, changed_by=request.user)
        except ApplicationError as exc:  # a race the form's check could not see
            self.message_user(request, exc.message, level="error")
        # What the admin's change message reads after saving (formset.save() was not called).
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []


class CandidateInline(admin.StackedInline):
    model = Candidate
    extra = 0


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "external_id", "route", "created_at")
    list_filter = ("route",)
    search_fields = ("external_id",)
    list_select_related = ("project",)
    raw_id_fields = ("project",)
    inlines = [CandidateInline]
    show_full_result_count = False  # COUNT(*) on a big table on every page is slow


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "item", "annotator", "status", "order", "expires_at")
    list_filter = ("status",)
    raw_id_fields = ("project", "item", "annotator")
    list_select_related = ("project", "annotator")
    show_full_result_count = False


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "item", "source", "annotator", "judge", "order", "created_at")
    list_filter = ("source", "imported")
    search_fields = ("judge", "external_annotator")
    list_select_related = ("project", "annotator")
    show_full_result_count = False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # append-only: a correction is a new annotation that supersedes

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "source_name", "status", "total_rows", "created_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in ImportJob._meta.fields]
