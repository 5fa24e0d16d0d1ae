"""A whole campaign without a terminal, in Chromium: a manager creates a project, edits its
schema, imports a file, adds an annotator, sets a routing policy, dry-runs and routes, opens the
item browser, searches and opens an item; the annotator labels, undoes and corrects a label.
An admin adds a judge, test-calls it, and a manager starts a run with its estimate and watches it
finish. Screenshots of each page go to docs/screenshots/ (README)."""

import json
from pathlib import Path

import pytest

from accounts.models import Role
from annotation.models import Annotation, Item, Membership, Project
from routing.judges.models import JudgeRun
from routing.router.models import RoutingDecision
from tandem.celery import app as celery_app
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory
from tests.llm_server import LLMServer

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "fixtures" / "pandalm_sample.jsonl"
DOCS = ROOT / "docs" / "screenshots"


@pytest.fixture
def eager():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def shot():
    DOCS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)

    return take


ANN_PASSWORD = "sturdy-campaign-passphrase-17"


def log_out(page):
    page.click("header form button")
    page.wait_for_url("**/login/**")


def sample_file(tmp_path, n=24) -> Path:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:n]]
    for row in rows:
        row.pop("labels", None)  # a fresh campaign: no labels yet
    path = tmp_path / "pandalm-24.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_campaign_from_the_browser(page, live_server, tmp_path, eager, shot, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    UserFactory(username="mia", role=Role.MANAGER)
    base = live_server.url

    # The manager creates a project.
    log_in(page, live_server, "mia")
    page.click("text=New project")
    page.fill("#id_name", "Clear writing")
    page.fill("#id_slug", "clear-writing")
    page.select_option("#id_task_type", "pairwise")
    page.fill("#id_guidelines", "Prefer the **clearer** rewrite.\n\n- keep the meaning\n- be brief")
    page.wait_for_selector("#guidelines-preview strong:text('clearer')")  # the htmx preview
    page.fill("#id_strength_scale", "better, much better")
    shot(page, "console-project-new")
    page.click("button:text('Create project')")
    page.wait_for_url(f"{base}/projects/*/")
    project = Project.objects.get(slug="clear-writing")

    # ... edits its schema: an aspect, rationale required, 'both bad' allowed (an error first).
    page.click("a:text('Settings')")
    page.fill("#id_aspects", "meaning: A")
    page.click("button:text('Save settings')")
    page.wait_for_selector("#field-aspects .field-error")
    assert "at least two distinct choices" in page.inner_text("#field-aspects")
    shot(page, "console-settings-error")
    page.fill("#id_aspects", "meaning: A, B, tie")
    page.select_option("#id_rationale", "optional")
    page.check("#id_allow_both_bad")
    page.click("button:text('Save settings')")
    page.wait_for_selector("text=Settings saved.")
    project.refresh_from_db()
    assert project.schema.allow_both_bad and project.schema.aspects[0].name == "meaning"

    # ... imports a file, and the counters follow.
    page.goto(f"{base}/projects/{project.pk}/")
    page.set_input_files("input[type=file]", str(sample_file(tmp_path)))
    page.click("button:text('Import')")
    page.wait_for_selector(".import-job .badge.done")
    page.wait_for_selector("[data-testid=n-items]:text-is('24')")
    shot(page, "console-project-imported")

    # ... adds an annotator (a new account with a password of their choosing).
    page.click("a:text('Members')")
    page.fill("#id_username", "ann")
    page.check("#id_create")
    page.fill("#id_password", "pw")  # too weak: the validators' reason, on the field
    page.click("button:text('Add')")
    page.wait_for_selector(".field-error")
    page.fill("#id_username", "ann")
    page.check("#id_create")
    page.fill("#id_password", ANN_PASSWORD)
    page.click("button:text('Add')")
    page.wait_for_selector("#members td:text-is('ann')")
    assert Membership.objects.get(project=project, user__username="ann").role == "annotator"
    shot(page, "console-members")

    # ... sets a routing policy: a random half to people, dry-runs, saves and routes.
    page.goto(f"{base}/projects/{project.pk}/routing/")
    page.select_option("#id_name", "random")
    assert page.locator("fieldset[data-policy=random]").is_visible()
    assert not page.locator("fieldset[data-policy=learned]").is_visible()
    page.fill("#id_param__random__fraction", "0.5")
    page.fill("#id_calibration_share", "0")
    page.click("button:text('Dry run')")
    page.wait_for_selector("[data-testid=dry-run]")
    assert "24" in page.inner_text("[data-testid=dry-run]")
    assert not RoutingDecision.objects.exists()
    shot(page, "console-routing-dry-run")
    page.click("button:text('Save the policy')")
    page.wait_for_selector("text=Routing policy saved (version 1).")
    page.click("button:text('Route the unrouted items now')")
    page.wait_for_selector("text=Routed")
    assert not Item.objects.filter(project=project, route="unrouted").exists()
    shot(page, "console-routing")

    # ... opens the item browser, searches and opens an item.
    page.goto(f"{base}/projects/{project.pk}/items/")
    page.wait_for_selector("table.items tbody tr")
    assert page.locator("table.items tbody tr").count() == 24
    shot(page, "console-items")
    page.fill("input[name=q]", "sentence")
    page.click("button:text('Search')")
    page.wait_for_url("**q=sentence**")
    matches = page.locator("table.items tbody tr td:first-child a")
    assert 0 < matches.count() < 24
    shot(page, "console-items-search")
    matches.first.click()
    page.wait_for_selector("h2:text('Routing decisions')")
    assert "People" in page.inner_text("body") or "LLM judge" in page.inner_text("body")
    shot(page, "console-item")
    log_out(page)

    # The annotator labels, undoes and corrects a label.
    log_in(page, live_server, "ann", ANN_PASSWORD)
    page.goto(f"{base}/projects/{project.pk}/work/")
    page.wait_for_selector("#task-form")
    page.keyboard.press("2")  # left better
    page.locator("input[name='aspect:meaning'][value=L]").check()
    page.keyboard.press("Enter")
    page.wait_for_selector(".undo-bar")
    shot(page, "workspace-undo")
    first = Annotation.objects.get(project=project)
    page.keyboard.press("u")
    page.wait_for_selector(f"#task[data-correcting='{first.pk}']")
    # Keys act once htmx has taken over the swapped-in form (else Enter submits it natively).
    page.wait_for_function(
        "() => { const f = document.querySelector('#task-form');"
        " return !!(f && f['htmx-internal-data']); }"
    )
    assert page.locator("input[name=verdict][value='L:1']").is_checked()  # answered as it was
    page.keyboard.press("3")  # tie
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Label corrected.")
    correction = Annotation.objects.get(supersedes=first)
    assert correction.payload["choice"] == "tie" and correction.item_id == first.item_id
    first.refresh_from_db()
    assert first.payload["choice"] != "tie"  # kept as it was
    page.goto(f"{base}/my-labels/")
    page.wait_for_selector("#my-labels strong:text-is('tie')")
    shot(page, "my-labels")
    assert page.errors == []


def test_judges_and_a_run_from_the_browser(page, live_server, eager, shot, monkeypatch):
    admin = UserFactory(username="root", role=Role.ADMIN, is_staff=True, is_superuser=True)
    project = ProjectFactory(name="Judged", task_type="pairwise")
    MembershipFactory(project=project, user=admin, role="manager")
    for i in range(6):
        ItemFactory(project=project, candidates=[f"short {i}", f"a much longer answer {i} " * 4])
    base = live_server.url
    with LLMServer() as llm:
        log_in(page, live_server, "root")
        page.click("header a:text('Judges')")
        page.click("text=Add a judge")
        page.fill("#id_name", "fake-gpt")
        page.select_option("#id_provider", "openai_compatible")
        page.fill("#id_model", "fake")
        page.fill("#id_base_url", llm.openai_url)
        page.fill("#id_price_input_per_mtok", "1.5")
        page.fill("#id_price_output_per_mtok", "6")
        page.click("button:text('Save')")
        page.wait_for_selector("text=Judge fake-gpt saved.")
        page.click("button:text('Send one item')")
        page.wait_for_selector("[data-testid=trial-cost]")
        assert "B better" in page.inner_text("#trial-result")  # the fake judge: the longer
        shot(page, "judge-test-call")

        page.goto(f"{base}/projects/{project.pk}/judge-runs/")
        page.select_option("#id_judge", "fake-gpt")
        page.select_option("#id_scope", "all")
        page.click("button:text('Estimate the cost')")
        page.wait_for_selector("[data-testid=cost-estimate]")
        assert "12" in page.inner_text("#run-estimate")  # 6 items x 2 orders
        shot(page, "judge-run-estimate")
        page.click("button:text('Start the run')")
        page.wait_for_url(f"{base}/projects/{project.pk}/judge-runs/*/")
        page.wait_for_selector("#progress:has-text('Completed')", timeout=30_000)
        run = JudgeRun.objects.get()
        assert (run.status, run.done) == ("completed", 12)
        page.wait_for_selector(".verdict .label-text")
        assert "{'choice'" not in page.inner_text("#progress")
        shot(page, "judge-run")
    assert page.errors == []
