"""A manager builds a snapshot from the Exports page: the row count follows the filters as they
change (htmx), the new snapshot's progress is polled, and its Download buttons appear."""

import pytest

from accounts.models import Role
from annotation.models import Membership
from exports.preferences import preferences_recompute
from tandem.celery import app as celery_app
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.routing.factories import item_with_labels

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def eager(settings, tmp_path):
    settings.EXPORTS_ROOT = tmp_path / "exports"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_new_snapshot_with_live_preview(page, live_server, screenshot, eager):
    boss = UserFactory(username="boss", role=Role.MANAGER)
    project = ProjectFactory(overlap=1)
    MembershipFactory(project=project, user=boss, role=Membership.Role.MANAGER)
    for _ in range(3):
        item_with_labels(project, humans=["A"])
    for _ in range(2):
        item_with_labels(project, judges={"gpt": [("AB", "B", None), ("BA", "B", None)]})
    preferences_recompute(project=project)

    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.click("text=Exports")
    page.wait_for_selector("#preview:has-text('rows from 5 items')")

    page.check("input[name=provenance][value=judge]")
    page.wait_for_selector("#preview:has-text('2 rows from 2 items')")
    page.select_option("select[name=file_format]", "jsonl")
    page.fill("input[name=splits]", "train=1")
    page.click("button:has-text('Build snapshot')")
    row = page.locator("#snapshot-rows tr").first
    row.locator("a:has-text('Download train.jsonl')").wait_for()
    assert "done" in row.inner_text()
    href = row.locator("a:has-text('Download train.jsonl')").get_attribute("href")
    body = page.request.get(f"{live_server.url}{href}").text()
    assert body.count("\n") == 2 and '"provenance":"judge"' in body
    screenshot(page, "exports-snapshots")
    assert page.errors == []
