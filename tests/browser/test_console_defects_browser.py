"""Browser regressions of issue 17: the "Other" skip reason takes the typed text; the header
stays readable on a phone."""

import itertools

import pytest

from accounts.models import Role
from annotation.models import Assignment
from annotation.workspace import SKIP_REASONS
from tests.browser.conftest import log_in
from tests.browser.test_workspace_browser import member_project, open_workspace
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def annotator(db):
    return UserFactory(username="ann")


def test_other_skip_reason_by_keyboard_focuses_its_text_box(page, live_server, annotator):
    project = member_project(annotator, "thumbs", ["fine"])
    log_in(page, live_server, "ann")
    open_workspace(page, live_server, project)
    page.keyboard.press("s")
    page.keyboard.press(str(len(SKIP_REASONS) + 1))  # "Other"
    assert page.evaluate("document.activeElement.name") == "reason_text"
    page.keyboard.type("Needs a Finnish speaker")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#task[data-state=done]")
    skipped = Assignment.objects.get(project=project, status="skipped")
    assert skipped.skip_reason == "Needs a Finnish speaker"
    assert page.errors == []


def test_the_header_does_not_run_words_together_on_a_phone(page, live_server, db):
    UserFactory(username="ann", role=Role.ADMIN, is_staff=True, is_superuser=True)
    page.set_viewport_size({"width": 360, "height": 740})
    log_in(page, live_server, "ann")
    boxes = page.locator(".topbar .brand, .topbar nav > *").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom, e.textContent.trim()]; })"
    )
    for i, a in enumerate(boxes):
        assert a[2] <= 360 + 0.5, f"{a[4]!r} runs off the screen"
        for b in boxes[i + 1 :]:
            overlap_x = min(a[2], b[2]) - max(a[0], b[0])
            overlap_y = min(a[3], b[3]) - max(a[1], b[1])
            assert overlap_x <= 0 or overlap_y <= 0, f"{a[4]!r} overlaps {b[4]!r}"
    # Separate items keep a visible gap between them on the same line.
    same_line = [(a, b) for a, b in itertools.pairwise(boxes) if abs(a[1] - b[1]) < 4]
    assert all(b[0] - a[2] >= 6 for a, b in same_line), same_line
