from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from annotation.signals import labels_added

        from .receivers import on_labels_added

        labels_added.connect(on_labels_added, dispatch_uid="exports.preferences_recompute")
