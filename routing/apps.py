from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from annotation.item_sections import item_section_register
        from routing.router.item_section import routing_section

        item_section_register(routing_section)
