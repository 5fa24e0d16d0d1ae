from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from annotation.signals import labels_added

        from .models import Snapshot
        from .receivers import on_labels_added, on_snapshot_deleted

        labels_added.connect(on_labels_added, dispatch_uid="exports.preferences_recompute")
        post_delete.connect(
            on_snapshot_deleted, sender=Snapshot, dispatch_uid="exports.snapshot_files"
        )
