from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from annotation.item_filters import ItemFilter, item_filter_register
        from annotation.signals import labels_added
        from routing.router.selectors import pipeline_resolved_counts_register

        from .models import Snapshot
        from .receivers import on_labels_added, on_snapshot_deleted
        from .selectors import (
            PROVENANCE_CHOICES,
            preference_counts,
            preference_provenance_condition,
        )

        pipeline_resolved_counts_register(preference_counts)
        # The item browser's "where the preference came from" filter (annotation knows no
        # Preference: it asks for a condition on its items).
        item_filter_register(
            ItemFilter(
                name="provenance",
                label="Preference from",
                choices=PROVENANCE_CHOICES,
                condition=preference_provenance_condition,
            )
        )

        labels_added.connect(on_labels_added, dispatch_uid="exports.preferences_recompute")
        post_delete.connect(
            on_snapshot_deleted, sender=Snapshot, dispatch_uid="exports.snapshot_files"
        )
