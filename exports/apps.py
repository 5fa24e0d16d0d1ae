from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from annotation.signals import labels_added
        from routing.router.selectors import pipeline_resolved_counts_register

        from .models import Snapshot
        from .receivers import on_labels_added, on_snapshot_deleted
        from .selectors import preference_counts

        pipeline_resolved_counts_register(preference_counts)

        labels_added.connect(on_labels_added, dispatch_uid="exports.preferences_recompute")
        post_delete.connect(
            on_snapshot_deleted, sender=Snapshot, dispatch_uid="exports.snapshot_files"
        )
