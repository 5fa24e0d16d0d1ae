from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from annotation.signals import items_added, unrouted_held
        from routing.judges.signals import run_finished
        from routing.router import receivers

        items_added.connect(receivers.on_items_added, dispatch_uid="routing.items_added")
        run_finished.connect(receivers.on_run_finished, dispatch_uid="routing.run_finished")
        unrouted_held.connect(receivers.on_unrouted_held, dispatch_uid="routing.unrouted_held")
        from annotation.item_sections import item_section_register
        from routing.router.item_section import routing_section

        item_section_register(routing_section)
