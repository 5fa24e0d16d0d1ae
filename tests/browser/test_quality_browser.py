"""A manager opens the quality page of a project with a careless annotator and a judge that
favours the first response shown: both are flagged, the charts render, the CSV downloads.
The screenshot is docs/screenshots/quality.png."""

import random
import shutil
from pathlib import Path

import pytest

from accounts.models import Role
from annotation.models import Annotation, Candidate, Item, Membership
from exports.models import Preference
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PEOPLE = ["ada", "bruno", "chen", "dana", "emeka", "farah"]


def build_project(seed=4, n_items=150):
    """Six annotators, three per item; ``emeka`` answers at random, ``farah`` picks the first
    shown most of the time. Judge ``gpt-4o/v1`` answers both orders and favours the first."""
    rng = random.Random(seed)
    project = ProjectFactory(name="Helpfulness, round 2", slug="helpfulness-2")
    users = {name: UserFactory(username=name) for name in PEOPLE}
    for user in users.values():
        MembershipFactory(project=project, user=user)
    items = Item.objects.bulk_create(
        Item(
            project=project,
            external_id=f"h-{i}",
            prompt=f"Question {i}",
            content_hash=f"{i:064x}",
            gold=rng.choice(["A", "B"]) if i % 3 == 0 else None,
        )
        for i in range(n_items)
    )
    candidates, labels = [], []
    for item in items:
        truth = item.gold or rng.choices(["A", "B", "tie"], weights=[45, 45, 10])[0]
        lengths = [rng.randint(50, 900), rng.randint(50, 900)]
        candidates += [
            Candidate(item=item, position=p, text="x" * n) for p, n in enumerate(lengths)
        ]
        for name in rng.sample(PEOPLE, 3):
            order = rng.choice(["AB", "BA"])
            if name == "emeka":
                choice = rng.choice(["A", "B", "tie"])
            elif name == "farah" and rng.random() < 0.7:
                choice = order[0]
            else:
                choice = truth if rng.random() < 0.88 else rng.choice(["A", "B", "tie"])
            labels.append(
                Annotation(
                    project=project,
                    item=item,
                    source="human",
                    annotator=users[name],
                    payload={"choice": choice},
                    order=order,
                    time_spent_ms=int(rng.lognormvariate(9.6, 0.4)),
                )
            )
        for order in ("AB", "BA"):
            roll = rng.random()
            choice = None if roll < 0.03 else order[0] if roll < 0.35 else truth
            labels.append(
                Annotation(
                    project=project,
                    item=item,
                    source="judge",
                    judge="gpt-4o/v1",
                    payload={"choice": choice},
                    order=order,
                )
            )
    Candidate.objects.bulk_create(candidates)
    Annotation.objects.bulk_create(labels)
    return project


@pytest.fixture
def eager(settings):
    from tandem.celery import app as celery_app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_quality_page(page, live_server, screenshot, settings, eager):
    settings.TANDEM_QUALITY = {"min_items": 20}
    project = build_project()
    boss = UserFactory(username="boss", role=Role.MANAGER)
    MembershipFactory(project=project, user=boss, role=Membership.Role.MANAGER)

    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.click("a:text-is('Label quality')")
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/quality/")
    page.wait_for_selector("#annotators table")
    page.wait_for_selector("#aggregation form")  # exports' card, loaded by htmx

    assert page.locator("tr.flagged-row[data-annotator=emeka]").count() == 1
    assert page.locator("tr.flagged-row[data-annotator=farah]").count() == 1
    assert page.locator("tr.flagged-row[data-annotator=ada]").count() == 0
    farah = page.locator("tr[data-annotator=farah] .badge").all_inner_texts()
    assert "position bias" in farah
    assert "position bias" in page.locator("tr[data-judge='gpt-4o/v1'] .badge").all_inner_texts()
    assert page.locator("svg.chart").count() == 5
    assert page.locator("svg.chart .point.flagged").count() >= 3
    assert page.locator("script:not([src])").count() == 0
    assert page.errors == []

    with page.expect_download() as download:
        page.click("a:text-is('annotators')")
    text = Path(download.value.path()).read_text()
    assert text.startswith("annotator,labels,skips,median_seconds,gold_accuracy_value")
    assert "emeka" in text and "peer_agreement" in text

    path = screenshot(page, "quality")
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS / "quality.png")

    # Choose Dawid-Skene and recompute: the card shows the run to its end.
    page.select_option("#aggregation select[name=method]", "dawid_skene")
    page.click("#aggregation button:text-is('Recompute')")
    page.wait_for_selector("#aggregation-status .badge.done")
    assert page.locator("#aggregation [data-method]").inner_text() == "dawid_skene"
    assert "150 items" in page.locator("#aggregation-status").inner_text()
    assert Preference.objects.filter(project=project, method="dawid_skene").count() == 150
    assert page.errors == []
