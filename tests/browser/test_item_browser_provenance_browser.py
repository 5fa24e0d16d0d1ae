"""A manager filters the item browser by where each item's final preference came from
("Preference from": people, LLM judge, none yet). Choosing a value reloads the table by htmx;
the screenshot is docs/screenshots/console-items-provenance.png."""

from pathlib import Path

import pytest

from accounts.models import Role
from annotation.models import Membership
from exports.preferences import preferences_recompute
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.routing.factories import item_with_labels

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
BOTH_ORDERS = [("AB", "A", 0.9), ("BA", "A", 0.8)]


def build_project():
    """Twelve items: four decided by people, four by the judge, four not yet decided."""
    project = ProjectFactory(name="Helpfulness, round 3", slug="helpfulness-3", overlap=3)
    kinds = {
        "people": {"humans": ["A", "A", "B"]},
        "judge": {"judges": {"gpt-4o/v1": BOTH_ORDERS}},
        "open": {"humans": ["A", "B"]},
    }
    for i in range(4):
        for kind, labels in kinds.items():
            item = item_with_labels(project, **labels)
            item.external_id = f"{kind}-{i}"
            item.prompt = f"Question {i} ({kind})"
            item.save(update_fields=["external_id", "prompt"])
    preferences_recompute(project=project)
    return project


def test_filter_items_by_provenance(page, live_server):
    project = build_project()
    boss = UserFactory(username="boss", role=Role.MANAGER)
    MembershipFactory(project=project, user=boss, role=Membership.Role.MANAGER)
    log_in(page, live_server, "boss")

    page.goto(f"{live_server.url}/projects/{project.pk}/items/")
    rows = page.locator("table.items tbody tr td:first-child a")
    rows.first.wait_for()
    assert rows.count() == 12
    page.select_option("select[name=provenance]", "judge")  # htmx swaps the table in
    page.wait_for_url("**provenance=judge**")
    page.wait_for_function(
        "() => document.querySelectorAll('table.items tbody tr td:first-child a').length === 4"
    )
    assert sorted(rows.all_inner_texts()) == [f"judge-{i}" for i in range(4)]
    assert page.locator("label[for=id_provenance]").inner_text().startswith("Preference from")
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "console-items-provenance.png"), full_page=True)

    page.select_option("select[name=provenance]", "none")
    page.wait_for_url("**provenance=none**")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.items tbody tr td:first-child a')]"
        ".every(a => a.textContent.startsWith('open-'))"
    )
    assert rows.count() == 4
    assert page.errors == []
