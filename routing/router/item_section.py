"""The router's section of an item's page: its routing decisions, with their reasons."""

from annotation.item_sections import ItemSection
from annotation.models import Item, Project
from routing.router.selectors import decision_list


def routing_section(*, project: Project, item: Item) -> ItemSection:
    return ItemSection(
        title="Routing decisions",
        template="routing/item_section.html",
        context={"decisions": list(decision_list(item=item)), "project": project, "item": item},
    )
