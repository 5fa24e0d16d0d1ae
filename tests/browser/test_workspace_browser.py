"""An annotator logs in and labels a pairwise, a listwise and a thumbs task with the keyboard;
a malicious response renders inert."""

import pytest

from annotation.models import Annotation, Assignment
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MALICIOUS = (
    "Sure! <script>window.__pwned = 'script'</script>\n\n"
    '<img src="x" onerror="window.__pwned = \'onerror\'">\n\n'
    "[click me](javascript:window.__pwned='link')\n\n"
    "```python\nprint('<b>not bold</b>')\n```"
)


@pytest.fixture
def annotator(db):
    return UserFactory(username="ann")


def member_project(annotator, task_type, candidates, **settings):
    project = ProjectFactory(
        task_type=task_type, guidelines="Prefer **correct** answers.", **settings
    )
    MembershipFactory(project=project, user=annotator)
    ItemFactory(project=project, prompt="Write a haiku about *rain*.", candidates=candidates)
    return project


def open_workspace(page, live_server, project):
    page.goto(f"{live_server.url}/projects/{project.pk}/work/")
    page.wait_for_selector("#task-form")


def wait_done(page, count):
    page.wait_for_selector(f"[data-testid=done-today]:text-is('{count}')")


def test_pairwise_by_keyboard_with_a_malicious_response(page, live_server, annotator, screenshot):
    project = member_project(
        annotator, "pairwise", ["Drops on the tin roof / ...", MALICIOUS], overlap=1
    )
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)

    # The malicious response is on the page, as text, and nothing of it ran.
    assert page.locator(".response-body", has_text="window.__pwned").count() == 1
    assert page.locator(".response-body code", has_text="<b>not bold</b>").count() == 1
    assert page.locator(".response-body script, .response-body img").count() == 0
    assert page.locator(".response-body a[href^=javascript]").count() == 0
    assert page.evaluate("window.__pwned") is None

    page.keyboard.press("?")
    assert page.locator("#keys-dialog").is_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    assert page.locator("#guidelines-dialog strong", has_text="correct").is_visible()
    page.keyboard.press("Escape")

    page.keyboard.press("2")  # "Left better"
    assert page.locator("input[name=verdict][value='L:1']").is_checked()
    screenshot(page, "pairwise")
    page.keyboard.press("Enter")
    wait_done(page, 1)
    page.wait_for_selector("#task[data-state=done]")

    annotation = Annotation.objects.get(project=project)
    lease = Assignment.objects.get(project=project)
    assert annotation.payload == {"choice": lease.order[0], "strength": 1}
    assert annotation.order == lease.order
    assert annotation.time_spent_ms is not None
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_listwise_by_keyboard(page, live_server, annotator, screenshot):
    project = member_project(annotator, "listwise", ["first", "second", "third"])
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    shown = page.locator(".rank-item").evaluate_all("els => els.map(e => e.dataset.letter)")
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")  # the third response is now first
    page.keyboard.press("2")
    page.keyboard.press("ArrowDown")  # what was first is now last
    expected = [shown[2], shown[1], shown[0]]
    current = page.locator(".rank-item").evaluate_all("els => els.map(e => e.dataset.letter)")
    assert current == expected
    assert page.locator(".rank-item .rank-pos").all_inner_texts() == ["1.", "2.", "3."]
    screenshot(page, "listwise")
    page.keyboard.press("Enter")
    wait_done(page, 1)
    assert Annotation.objects.get(project=project).payload == {"ranking": expected}
    assert page.errors == []


def test_listwise_ties_and_drag(page, live_server, annotator):
    project = member_project(
        annotator, "listwise", ["one", "two", "three"], label_schema={"allow_tie": True}
    )
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    shown = page.locator(".rank-item").evaluate_all("els => els.map(e => e.dataset.letter)")
    page.locator(".rank-item").nth(2).drag_to(page.locator(".rank-item").nth(0))
    after_drag = page.locator(".rank-item").evaluate_all("els => els.map(e => e.dataset.letter)")
    assert after_drag[0] == shown[2]
    page.keyboard.press("3")
    page.keyboard.press("t")  # tie the last with the one above
    assert page.locator(".rank-item .rank-pos").all_inner_texts() == ["1.", "2.", "2."]
    page.keyboard.press("Enter")
    wait_done(page, 1)
    ranking = Annotation.objects.get(project=project).payload["ranking"]
    assert ranking == [after_drag[0], [after_drag[1], after_drag[2]]]


def test_thumbs_by_keyboard_and_skip(page, live_server, annotator, screenshot):
    project = member_project(annotator, "thumbs", ["The answer is 42."])
    ItemFactory(project=project, candidates=["Another answer."])
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    page.keyboard.press("2")
    page.fill("textarea[name=rationale]", "not sourced")
    page.keyboard.press("Escape")  # leave the text box, keys work again
    screenshot(page, "thumbs")
    page.keyboard.press("Enter")
    wait_done(page, 1)
    first = Annotation.objects.get(project=project)
    assert first.payload == {"thumb": "down", "rationale": "not sourced"}

    page.wait_for_selector("#task-form")
    page.keyboard.press("s")
    assert page.locator("#skip-dialog").is_visible()
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#task[data-state=done]")
    skipped = Assignment.objects.get(project=project, status="skipped")
    assert skipped.skip_reason == "The item is broken or unreadable"
    assert page.errors == []


def test_a_validation_error_keeps_the_task(page, live_server, annotator):
    project = member_project(annotator, "pairwise", ["a", "b"])
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    # The browser's own check stops an empty submit; without it the server still refuses.
    page.evaluate(
        "document.querySelectorAll('[required]').forEach(e => e.removeAttribute('required'))"
    )
    page.keyboard.press("Enter")
    page.wait_for_selector("#task-errors .error")
    assert "Choose which response" in page.inner_text("#task-errors")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_done(page, 1)
    assert Annotation.objects.get(project=project).payload == {"choice": "tie"}


def test_diff_toggle_and_narrow_screen(page, live_server, annotator, screenshot):
    project = member_project(
        annotator, "pairwise", ["The capital of France is Paris.", "The capital of France is Lyon."]
    )
    log_in(page, live_server, "ann")
    page.set_viewport_size({"width": 420, "height": 900})
    open_workspace(page, live_server, project)
    left, right = page.locator(".response").all()
    assert right.bounding_box()["y"] > left.bounding_box()["y"]  # stacked on a narrow screen
    assert not page.locator(".response .diff").first.is_visible()
    page.keyboard.press("d")
    assert page.locator(".response .diff ins").is_visible()
    screenshot(page, "pairwise-diff-narrow")
    page.keyboard.press("d")
    assert not page.locator(".response .diff").first.is_visible()


def test_an_ended_session_leads_to_login_and_back(page, live_server, annotator):
    project = member_project(annotator, "thumbs", ["fine"])
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    page.context.clear_cookies(name="sessionid")  # the session ends; the CSRF cookie stays
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_url("**/login/?next=*")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/projects/{project.pk}/work/")
    page.wait_for_selector("#task-form")
    assert Annotation.objects.filter(project=project).count() == 0
