"""Every page reachable by links from the home page, for every role, answers without a 500,
and every link to a project leads to its page, not to the API. The browsable API renders every
endpoint for every role without a 500 (issue 17)."""

import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest
from django.test import Client

from accounts.models import Role
from annotation.models import Annotation, ImportJob, Membership
from routing.judges import services as judge_services
from routing.router.models import RoutingDecision
from tests.factories import (
    AnnotationFactory,
    ItemFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
)
from tests.pages import client_for

pytestmark = pytest.mark.django_db

HREF = re.compile(r'href="([^"#]*)"')
ALLOWED = {200, 302, 403, 404}
SKIP_PREFIXES = ("/admin/", "/static/", "/logout/", "/api/v1/docs/", "/api/v1/redoc/")
MAX_PAGES = 400


@pytest.fixture
def campaign(db):
    """A project with items, human and judge labels, a judge run, a routing decision, an import."""
    project = ProjectFactory(name="Campaign", guidelines="Be *fair*.")
    admin = UserFactory(username="boss", role=Role.ADMIN, is_staff=True, is_superuser=True)
    manager = UserFactory(username="mgr", role=Role.MANAGER)
    annotator = UserFactory(username="ann", role=Role.ANNOTATOR)
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    MembershipFactory(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    items = [ItemFactory(project=project, route="judge") for _ in range(3)]
    AnnotationFactory(item=items[0], annotator=annotator, payload={"choice": "A"})
    judge = judge_services.judge_create(
        name="j1", provider="openai", model="m", api_key_env="J1_API_KEY"
    )
    run = judge_services.judge_run_create(project=project, judge=judge, enqueue=False)
    AnnotationFactory(
        item=items[1],
        source=Annotation.Source.JUDGE,
        judge="j1",
        judge_run_id=run.pk,
        order="AB",
        payload={"choice": "B"},
        raw_output="<b>B</b> is better",
    )
    RoutingDecision.objects.create(
        project=project,
        item=items[0],
        policy_name="rules",
        policy_version=1,
        target="judge",
        reason="judge first",
    )
    ImportJob.objects.create(
        project=project, source_name="x.jsonl", path="/nonexistent", format="jsonl"
    )
    return {"project": project, "admin": admin, "manager": manager, "annotator": annotator}


def crawl(client: Client, start: str) -> dict[str, int]:
    """Breadth-first over same-site links; the status of every page reached."""
    seen: dict[str, int] = {}
    queue = deque([start])
    while queue and len(seen) < MAX_PAGES:
        url = queue.popleft()
        if url in seen:
            continue
        response = client.get(url)
        seen[url] = response.status_code
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        for href in HREF.findall(response.content.decode()):
            href = href.replace("&amp;", "&")
            target = urljoin(url, href)
            parts = urlsplit(target)
            if parts.netloc and parts.netloc != "testserver":
                continue
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if not path.startswith("/") or path.startswith(SKIP_PREFIXES):
                continue
            if path not in seen:
                queue.append(path)
    return seen


@pytest.mark.parametrize("role", ["admin", "manager", "annotator", "anonymous"])
def test_every_linked_page_answers_without_a_500(campaign, role):
    user = campaign.get(role)
    seen = crawl(client_for(user), "/")
    bad = {url: code for url, code in seen.items() if code not in ALLOWED}
    assert not bad, bad
    if user is not None:
        assert f"/projects/{campaign['project'].pk}/" in seen  # the home page links the project


@pytest.mark.parametrize("role", ["admin", "manager", "annotator"])
def test_pages_link_to_pages_not_to_the_api(campaign, role):
    """No link on a page leads into the JSON API, but the API's docs (names the page routes
    share with DRF's router resolve to the API: ``project-detail``, then ``judge-list``)."""
    client = client_for(campaign[role])
    for url, code in crawl(client, "/").items():
        if code != 200 or url.startswith("/api/"):
            continue
        html = client.get(url).content.decode()
        api_links = [
            h
            for h in HREF.findall(html)
            if h.startswith("/api/v1/") and not h.startswith("/api/v1/docs/")
        ]
        assert api_links == [], (url, api_links)


@pytest.mark.parametrize("role", ["admin", "manager", "annotator"])
def test_links_to_a_project_open_its_page_not_the_api(campaign, role):
    """Regression: the page and DRF's router both named ``project-detail``."""
    client = client_for(campaign[role])
    project = campaign["project"]
    pages = ["/", f"/projects/{project.pk}/work/", f"/projects/{project.pk}/judge-runs/"]
    for page in pages:
        html = client.get(page).content.decode()
        if client.get(page).status_code != 200:
            continue
        assert f"/api/v1/projects/{project.pk}/" not in HREF.findall(html), page
    html = client.get("/").content.decode()
    assert f'href="/projects/{project.pk}/"' in html
    response = client.get(f"/projects/{project.pk}/")
    assert response.status_code == 200 and "text/html" in response["Content-Type"]


def api_endpoints(campaign) -> list[str]:
    project = campaign["project"]
    item = project.items.order_by("id").first()
    run = project.judge_runs.first()
    annotation = Annotation.objects.first()
    job = project.import_jobs.first()
    return [
        "/api/v1/",
        "/api/v1/projects/",
        f"/api/v1/projects/{project.pk}/",
        f"/api/v1/projects/{project.pk}/members/",
        f"/api/v1/projects/{project.pk}/items/",
        "/api/v1/annotations/",
        f"/api/v1/annotations/{annotation.pk}/",
        "/api/v1/import-jobs/",
        f"/api/v1/import-jobs/{job.pk}/",
        "/api/v1/judges/",
        f"/api/v1/judges/{run.judge_id}/",
        "/api/v1/judge-runs/",
        f"/api/v1/judge-runs/{run.pk}/",
        f"/api/v1/projects/{project.pk}/routing-policy/",
        f"/api/v1/projects/{project.pk}/items/{item.pk}/routing-decisions/",
    ]


@pytest.mark.parametrize("role", ["admin", "manager", "annotator", "anonymous"])
def test_browsable_api_renders_every_endpoint_for_every_role(campaign, role):
    client = client_for(campaign.get(role))
    failures = {}
    for url in api_endpoints(campaign):
        response = client.get(url, {"format": "api"}, HTTP_ACCEPT="text/html")
        if response.status_code not in {200, 401, 403, 404, 405}:
            failures[url] = response.status_code
    assert not failures, failures


def test_browsable_api_root_links_render_for_every_role(campaign):
    """Every endpoint the API root lists renders in the browsable API (the root linked to
    ``/api/v1/judges/``, which crashed for managers and annotators)."""
    root = client_for(campaign["admin"]).get("/api/v1/", HTTP_ACCEPT="application/json").json()
    for role in ("admin", "manager", "annotator"):
        client = client_for(campaign[role])
        for url in root.values():
            path = urlsplit(url).path
            response = client.get(path, {"format": "api"}, HTTP_ACCEPT="text/html")
            assert response.status_code in {200, 403, 404}, (role, path, response.status_code)
