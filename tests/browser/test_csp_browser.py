"""The pages work under the Content-Security-Policy, and the policy really blocks inline script."""

import pytest

from accounts.models import Role
from annotation.models import Membership
from tests.browser.conftest import log_in
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_manager_pages_and_api_docs_run_under_the_policy(page, live_server):
    boss = UserFactory(username="boss", role=Role.MANAGER, is_staff=True)
    project = ProjectFactory()
    MembershipFactory(project=project, user=boss, role=Membership.Role.MANAGER)
    ItemFactory(project=project)
    log_in(page, live_server, "boss")

    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.wait_for_selector("h1")
    # htmx (a static file) runs: it has set up its global.
    assert page.evaluate("typeof window.htmx") == "object"

    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .info .title")  # Swagger UI's own script ran
    assert "Tandem API" in page.inner_text(".swagger-ui .info .title")

    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#content")
    assert not page.errors


def test_an_injected_inline_script_is_blocked(page, live_server):
    UserFactory(username="ann")
    log_in(page, live_server, "ann")
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = true'; document.body.appendChild(s); }"
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.__ran === undefined")
    assert any("script-src" in v for v in page.csp_violations)
    page.csp_violations.clear()  # expected here
