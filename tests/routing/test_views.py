"""The run progress pages: who sees them, htmx polling, sanitised model output, query counts."""

import pytest

from annotation.models import Annotation
from annotation.templatetags.untrusted import untrusted_markdown
from routing.judges import services
from tests.pages import client_for
from tests.routing.conftest import make_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(project):
    judge = services.judge_create(name="j1", provider="openai", model="m", api_key_env="J1_API_KEY")
    items = make_items(project, 1)
    run = services.judge_run_create(project=project, judge=judge, enqueue=False)
    Annotation.objects.create(
        project=project,
        item=items[0],
        source="judge",
        judge="j1",
        judge_run_id=run.pk,
        order="AB",
        payload={"choice": None},
        raw_output='**A** <script>alert("x")</script><img src=x onerror=alert(1)>',
        idempotency_key=f"judge:{run.pk}:{items[0].pk}:AB",
        metadata={"parse_status": "unparsed"},
    )
    return run


@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", 302), ("annotator", 403), ("outsider", 404), ("manager", 200), ("admin", 200)],
)
def test_who_sees_the_run_pages(request, run, project, who, code):
    user = (
        None
        if who == "anonymous"
        else request.getfixturevalue("admin_user" if who == "admin" else who)
    )
    client = client_for(user)
    for url in (
        f"/projects/{project.pk}/judge-runs/",
        f"/projects/{project.pk}/judge-runs/{run.pk}/",
    ):
        assert client.get(url).status_code == code


def test_progress_is_polled_until_finished_and_output_is_sanitised(manager, project, run):
    client = client_for(manager)
    url = f"/projects/{project.pk}/judge-runs/{run.pk}/"
    page = client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in page
    partial = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="progress"')
    assert "<html" not in partial
    assert "<strong>A</strong>" in partial
    assert "<script" not in partial and "<img" not in partial  # shown as text, inert
    services.judge_run_cancel(run=run)
    finished = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in finished and "Cancelled" in finished


def test_cancel_and_resume_buttons(manager, annotator, project, run):
    url = f"/projects/{project.pk}/judge-runs/{run.pk}/cancel/"
    assert client_for(annotator).post(url).status_code == 403  # a member, not a manager
    assert client_for(manager).post(url).status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_project_page_links_to_runs(manager, project):
    page = client_for(manager).get(f"/projects/{project.pk}/").content.decode()
    assert f"/projects/{project.pk}/judge-runs/" in page


def test_query_counts(manager, project, run, django_assert_max_num_queries):
    client = client_for(manager)
    with django_assert_max_num_queries(6):
        client.get(f"/projects/{project.pk}/judge-runs/{run.pk}/", headers={"HX-Request": "true"})
    with django_assert_max_num_queries(8):  # + the start form's judges (exists, choices)
        client.get(f"/projects/{project.pk}/judge-runs/")


def test_untrusted_markdown_keeps_text_and_drops_markup():
    """The judge pages use the workspace's sanitiser: raw HTML is text, bad links lose href."""
    html = untrusted_markdown('[link](javascript:alert(1)) <iframe src="x"></iframe> `code`')
    assert "javascript" not in html and "<iframe" not in html
    assert "&lt;iframe" in html  # shown as text, not dropped silently
    assert "<code>code</code>" in html


def test_verdicts_read_as_labels_with_links_to_their_items(manager, project, run):
    """Regression (issue 17): verdicts were printed as Python dicts."""
    item = project.items.get()
    Annotation.objects.create(
        project=project,
        item=item,
        source="judge",
        judge="j1",
        judge_run_id=run.pk,
        order="BA",
        payload={"choice": "B", "strength": 2, "aspects": {"honesty": "tie"}},
        idempotency_key=f"judge:{run.pk}:{item.pk}:BA",
    )
    page = client_for(manager).get(f"/projects/{project.pk}/judge-runs/{run.pk}/").content.decode()
    assert "{&#x27;choice" not in page and "{'choice" not in page
    assert "B better (strength 2)" in page and "honesty: tie" in page
    assert "no answer parsed" in page  # the fixture's unparsed answer
    assert f'href="/projects/{project.pk}/items/{item.pk}/"' in page
