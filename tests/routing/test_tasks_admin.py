"""The Celery task (judge queue, eager in tests) and the admin pages."""

import pytest
from django.test import Client

from routing import tasks
from routing.judges import services
from routing.judges.models import JudgeRun
from tandem.celery import app
from tests.routing.conftest import make_items

pytestmark = pytest.mark.django_db


def test_the_task_is_routed_to_the_judge_queue():
    route = app.amqp.router.route({}, "routing.tasks.judge_run_execute")
    assert route["queue"].name == "judge"


def test_the_task_runs_the_service_and_is_idempotent(settings, make_judge, pairwise_project, llm):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    try:
        make_items(pairwise_project, 2)
        run = services.judge_run_create(
            project=pairwise_project, judge=make_judge("anthropic"), enqueue=False
        )
        assert tasks.judge_run_execute.delay(run.pk).get() == "completed"
        assert tasks.judge_run_execute.delay(run.pk).get() == "completed"
        assert len(llm.requests) == 4
        assert JudgeRun.objects.get(pk=run.pk).attempts == 1
    finally:
        app.conf.task_always_eager = False


def test_admin_pages(admin_user, manager, make_judge, pairwise_project):
    judge = make_judge("openai")
    make_items(pairwise_project, 1)
    run = services.judge_run_create(project=pairwise_project, judge=judge, enqueue=False)
    client = Client()
    client.force_login(admin_user)
    for url in (
        "/admin/routing/judge/",
        f"/admin/routing/judge/{judge.pk}/change/",
        "/admin/routing/judgerun/",
        f"/admin/routing/judgerun/{run.pk}/change/",
    ):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/admin/routing/judge/{judge.pk}/change/").content.decode()
    assert "FAKE_OPENAI_KEY" in page and "sk-test" not in page  # the variable, never the key
    manager.is_staff = True  # as accounts.services.user_create makes managers
    manager.save(update_fields=["is_staff"])
    client.force_login(manager)  # staff, not admin: may look, not change
    assert client.get("/admin/routing/judge/").status_code == 200
    response = client.post(f"/admin/routing/judge/{judge.pk}/change/", {"name": "x"})
    assert response.status_code == 403
