"""The annotator's comforts in Chromium: a typed ranking, single-key shortcuts turned off,
long responses expanded, highlighted code."""

import pytest

from annotation.models import Annotation
from tests.browser.conftest import log_in
from tests.browser.test_workspace_browser import member_project, open_workspace
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def annotator(db):
    return UserFactory(username="ann")


def test_a_ranking_typed_by_numbers(page, live_server, annotator):
    project = member_project(
        annotator, "listwise", ["one", "two", "three"], label_schema={"allow_tie": True}
    )
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    shown = page.locator(".rank-item").evaluate_all("els => els.map(e => e.dataset.letter)")
    page.fill("input[name=typed_ranking]", "3>1")
    assert "Rank all 3" in page.inner_text("[data-typed-error]")
    page.fill("input[name=typed_ranking]", "3>1=2")
    assert page.locator("[data-typed-error]").is_hidden()
    assert page.locator(".rank-item .rank-pos").all_inner_texts() == ["1.", "2.", "2."]
    page.keyboard.press("Enter")
    page.wait_for_selector("#task[data-state=done]")
    ranking = Annotation.objects.get(project=project).payload["ranking"]
    assert ranking == [shown[2], [shown[0], shown[1]]]
    assert page.errors == []


def test_single_key_shortcuts_can_be_turned_off(page, live_server, annotator, screenshot):
    project = member_project(annotator, "thumbs", ["fine"])
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    page.uncheck("input[data-action=shortcuts]")
    page.keyboard.press("1")
    assert not page.locator("input[name=thumb][value=up]").is_checked()
    page.keyboard.press("g")
    assert not page.locator("#guidelines-dialog").is_visible()
    page.reload()  # remembered in this browser
    page.wait_for_selector("#task-form")
    assert not page.locator("input[data-action=shortcuts]").is_checked()
    page.check("input[data-action=shortcuts]")
    page.keyboard.press("1")
    assert page.locator("input[name=thumb][value=up]").is_checked()


def test_long_responses_expand_and_code_is_highlighted(page, live_server, annotator, shot_docs):
    long_text = "\n\n".join(f"Paragraph {i} of a long answer." for i in range(80))
    code = "Here:\n\n```python\ndef add(a, b):\n    return a + b  # sum\n```"
    project = member_project(annotator, "pairwise", [long_text, code])
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    long_response = page.locator(".response", has_text="Paragraph 0")
    short_response = page.locator(".response", has_text="def add")
    short_box, long_box = short_response.bounding_box(), long_response.bounding_box()
    assert short_box["height"] < long_box["height"] / 2  # no tall empty box beside it
    assert page.locator(".response .highlight span.k", has_text="def").count() == 1
    body = long_response.locator(".response-body.md")
    before = body.bounding_box()["height"]
    page.keyboard.press("x")
    assert body.bounding_box()["height"] > before * 1.5
    shot_docs(page, "workspace-code-expanded")
    assert page.errors == []


@pytest.fixture
def shot_docs():
    from tests.browser.test_campaign_browser import DOCS

    def take(page, name):
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)

    return take
