"""The hybrid loop (routing.router.loop): routing on arrival, automatic judge runs, re-routing
once the verdicts are in, the pipeline, and failures that do not leave a project busy."""

import io
import json
import threading
from decimal import Decimal
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import IntegrityError, connection, connections, transaction

from annotation.importer import items_import
from annotation.models import Annotation, Item
from routing.judges import services as judge_services
from routing.judges.models import JudgeRun
from routing.router import loop, route, selectors
from routing.router.models import RoutingBudget, RoutingDecision, RoutingWork
from routing.tasks import project_route_task
from tandem.celery import app as celery_app
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory

from .conftest import make_items


def rows(n: int, start: int = 0) -> list[tuple[int, dict]]:
    return [
        (
            i + 1,
            {
                "external_id": f"r{i}",
                "prompt": f"question {i}",
                "candidates": [f"short {i}", f"a much longer answer to question {i} " * 3],
            },
        )
        for i in range(start, start + n)
    ]


def jsonl(n: int) -> bytes:
    return "".join(json.dumps(r) + "\n" for _, r in rows(n)).encode()


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def sent():
    """Messages the loop would send to the broker (task ids), without a broker."""
    calls: list[int] = []
    with mock.patch.object(project_route_task, "delay", side_effect=calls.append):
        yield calls


def human_policy(project, **extra):
    values = {"name": "all_human", "budget_count": 3, "calibration_share": 0}
    values.update(extra)
    return route.routing_policy_set(project=project, **values)


# Routing on arrival ------------------------------------------------------------------------------


def test_import_enqueues_one_routing_task_and_a_burst_coalesces(
    project, sent, django_capture_on_commit_callbacks
):
    human_policy(project)
    with django_capture_on_commit_callbacks(execute=True):
        items_import(project=project, rows=rows(5))
    assert sent == [project.pk]  # importing only asked; nothing is routed yet
    assert Item.objects.filter(project=project, route="unrouted").count() == 5
    work = RoutingWork.objects.get(project=project)
    assert work.status == "queued" and work.reason == "5 items added"
    for start in (5, 10):  # more imports while the task waits: no second message
        with django_capture_on_commit_callbacks(execute=True):
            items_import(project=project, rows=rows(5, start))
    assert sent == [project.pk]
    # The task routes everything that arrived, once.
    out = project_route_task.run(project.pk)
    assert out["passes"][0]["routed"] == {"human": 3, "judge": 12, "both": 0}
    assert RoutingWork.objects.get(project=project).status == "idle"
    assert not Item.objects.filter(project=project, route="unrouted").exists()


def test_no_policy_no_routing_work(project, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        items_import(project=project, rows=rows(3))
    assert sent == [] and not RoutingWork.objects.exists()


def test_cli_import_routes_the_items(project, eager, tmp_path, django_capture_on_commit_callbacks):
    human_policy(project)
    path = tmp_path / "items.jsonl"
    path.write_bytes(jsonl(4))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_items", project.slug, str(path), "--no-progress", stdout=io.StringIO())
    routes = sorted(Item.objects.filter(project=project).values_list("route", flat=True))
    assert routes == ["human"] * 3 + ["judge"]
    assert RoutingDecision.objects.filter(project=project).count() == 4


def test_api_import_routes_the_items(
    project, manager, api, eager, django_capture_on_commit_callbacks
):
    human_policy(project)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(manager).post(
            f"/api/v1/projects/{project.id}/items/import/",
            {"file": SimpleUploadedFile("x.jsonl", jsonl(4))},
            format="multipart",
        )
    assert response.status_code in (200, 201), response.content
    assert not Item.objects.filter(project=project, route="unrouted").exists()
    assert RoutingBudget.objects.get(project=project).spent == 3


def test_background_import_job_routes_the_items(
    project, manager, api, eager, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    human_policy(project)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(manager).post(
            f"/api/v1/projects/{project.id}/items/import/",
            {"file": SimpleUploadedFile("x.jsonl", jsonl(4)), "background": "true"},
            format="multipart",
        )
    assert response.status_code == 202
    assert Item.objects.filter(project=project).count() == 4
    assert not Item.objects.filter(project=project, route="unrouted").exists()


def test_setting_a_policy_routes_items_already_there(
    project, sent, django_capture_on_commit_callbacks
):
    ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        human_policy(project)
    assert sent == [project.pk]
    project_route_task.run(project.pk)
    assert Item.objects.get(project=project).route == "human"


def test_a_judge_policy_without_a_judge_is_refused(project, manager, api):
    response = api(manager).put(
        f"/api/v1/projects/{project.id}/routing-policy/",
        {"name": "judge_uncertainty", "budget_fraction": 0.3},
        format="json",
    )
    assert response.status_code == 400
    assert "name at least one judge" in str(response.json()["error"]["details"]["judges"])


# Failures -----------------------------------------------------------------------------------------


def test_a_failing_routing_task_records_why_and_the_project_is_not_busy(
    project, sent, django_capture_on_commit_callbacks
):
    ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        human_policy(project)
    assert RoutingWork.objects.get(project=project).status == "queued"
    with mock.patch.object(loop, "project_advance", side_effect=RuntimeError("boom")):
        assert project_route_task.apply(
            args=[project.pk], throw=False
        ).failed()  # on_failure records it
    work = RoutingWork.objects.get(project=project)
    assert work.status == "failed" and "RuntimeError: boom" in work.error
    state = selectors.project_pipeline(project=project)
    assert state["idle"] is True and state["routing"]["error"] == "RuntimeError: boom"
    # The next request starts afresh and routes.
    with django_capture_on_commit_callbacks(execute=True):
        loop.routing_work_request(project_id=project.pk, reason="again")
    assert sent == [project.pk, project.pk]
    project_route_task.run(project.pk)
    assert RoutingWork.objects.get(project=project).status == "idle"
    assert Item.objects.get(project=project).route == "human"


def test_a_broker_that_is_down_marks_the_work_failed(project, django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    human_policy(project)
    down = mock.patch.object(project_route_task, "delay", side_effect=OperationalError("down"))
    with down, django_capture_on_commit_callbacks(execute=True):
        loop.routing_work_request(project_id=project.pk, reason="test")
    work = RoutingWork.objects.get(project=project)
    assert work.status == "failed" and "could not enqueue" in work.error


def test_a_failing_judge_task_leaves_the_run_incomplete(pairwise_project, make_judge):
    from routing.judges.tasks import judge_run_execute

    judge = make_judge("openai")
    make_items(pairwise_project, 2)
    run = judge_services.judge_run_create(project=pairwise_project, judge=judge, enqueue=False)
    with mock.patch("routing.judges.tasks.judge_run_execute_service", side_effect=ValueError("x")):
        result = judge_run_execute.apply(args=[run.pk], throw=False)
    assert result.failed()
    run.refresh_from_db()
    assert run.status == "incomplete" and "ValueError: x" in run.stop_reason


# Automatic judge runs ------------------------------------------------------------------------


def test_one_open_automatic_run_per_project_and_judge(pairwise_project, make_judge):
    judge = make_judge("openai")
    items = make_items(pairwise_project, 3)
    first = judge_services.judge_run_automatic_request(
        project=pairwise_project, judge=judge, enqueue=False
    )
    assert first.automatic and first.scope == "selection"
    assert first.item_ids == [i.pk for i in items]
    # Items routed while it waits join it.
    more = make_items(pairwise_project, 2)
    same = judge_services.judge_run_automatic_request(
        project=pairwise_project, judge=judge, enqueue=False
    )
    assert same.pk == first.pk and same.item_ids == [i.pk for i in items + more]
    # While it runs, new items wait for the next run.
    JudgeRun.objects.filter(pk=first.pk).update(status="running")
    later = make_items(pairwise_project, 1)
    assert (
        judge_services.judge_run_automatic_request(
            project=pairwise_project, judge=judge, enqueue=False
        ).pk
        == first.pk
    )
    JudgeRun.objects.filter(pk=first.pk).update(status="completed")
    nxt = judge_services.judge_run_automatic_request(
        project=pairwise_project, judge=judge, enqueue=False
    )
    assert nxt.pk != first.pk and nxt.item_ids == [later[0].pk]
    # The database refuses a second open automatic run.
    with pytest.raises(IntegrityError), transaction.atomic():
        JudgeRun.objects.create(
            project=pairwise_project, judge=judge, automatic=True, status="pending"
        )


def test_automatic_runs_cap_cancel_and_resume_like_manual_ones(pairwise_project, make_judge):
    from routing.judges.runner import judge_run_execute
    from tandem.errors import Conflict

    judge = make_judge("openai")
    items = make_items(pairwise_project, 4)
    run = judge_services.judge_run_automatic_request(
        project=pairwise_project, judge=judge, cost_cap=Decimal("0"), enqueue=False
    )
    judge_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "capped" and run.cost_cap == Decimal("0")
    # A stopped run keeps its items: no second automatic run takes them behind its back.
    assert judge_services.judge_backlog(project=pairwise_project, judge=judge) == []
    assert (
        judge_services.judge_run_automatic_request(
            project=pairwise_project, judge=judge, enqueue=False
        )
        is None
    )
    # Items routed later make a new run; the stopped one cannot be resumed beside it.
    later = make_items(pairwise_project, 1)
    nxt = judge_services.judge_run_automatic_request(
        project=pairwise_project, judge=judge, enqueue=False
    )
    assert nxt.item_ids == [later[0].pk]
    with pytest.raises(Conflict, match="another automatic run"):
        judge_services.judge_run_resume(run=run, cost_cap=Decimal("100"), enqueue=False)
    judge_services.judge_run_cancel(run=nxt)
    resumed = judge_services.judge_run_resume(run=run, cost_cap=Decimal("100"), enqueue=False)
    judge_run_execute(run_id=resumed.pk)
    resumed.refresh_from_db()
    assert resumed.status == "completed" and resumed.automatic
    assert Annotation.objects.filter(item__in=items, source="judge").count() == 8


def test_the_loop_judges_reroutes_within_the_budget_and_goes_idle(
    pairwise_project, make_judge, llm, eager, django_capture_on_commit_callbacks
):
    """Import -> routed to the judges -> an automatic run per judge -> verdicts -> re-routed:
    the items whose primary judge's orders disagree go to people, within the budget."""
    project = pairwise_project
    primary = make_judge("openai", price_input_per_mtok=Decimal("1"))
    second = make_judge("openai")
    # The primary judge is position-biased on items whose prompt ends in an odd number.
    llm.policy = lambda shown, task: {"rationale": "r", "choice": "A"}
    route.routing_policy_set(
        project=project,
        name="judge_uncertainty",
        judges=[primary.name, second.name],
        budget_count=2,
        calibration_share=0,
        judge_cost_cap=Decimal("5"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        items_import(project=project, rows=rows(5))
    runs = JudgeRun.objects.filter(project=project).order_by("id")
    assert [(r.judge_id, r.automatic, r.status) for r in runs] == [
        (primary.pk, True, "completed"),
        (second.pk, True, "completed"),
    ]
    assert all(r.cost_cap == Decimal("5") for r in runs)
    assert Annotation.objects.filter(item__project=project, source="judge").count() == 20
    # "Always the first shown" disagrees with itself across orders: every item is uncertain,
    # and two (the budget) go to people, as re-routings that supersede the first decisions.
    routes = list(Item.objects.filter(project=project).values_list("route", flat=True))
    assert sorted(routes) == ["human", "human", "judge", "judge", "judge"]
    rerouted = RoutingDecision.objects.filter(project=project, kind="reroute")
    assert rerouted.count() == 5 and all(d.supersedes_id for d in rerouted)
    assert not RoutingDecision.objects.filter(
        project=project, superseded_by__isnull=True, waiting=True
    ).exists()
    assert RoutingBudget.objects.get(project=project).spent == 2
    state = selectors.project_pipeline(project=project)
    assert state["idle"] is True and state["judge_runs"] == {"open": 0, "automatic": 2}
    assert state["people"] == {"waiting": 2, "done": 0}
    assert state["judge"]["judged"] == 3 and state["unrouted"] == 0  # 2 went on to people
    assert state["budget"]["remaining"] == 0
    # Items that arrive later get the next automatic runs, and no budget is left for them.
    with django_capture_on_commit_callbacks(execute=True):
        items_import(project=project, rows=rows(2, 5))
    assert JudgeRun.objects.filter(project=project, automatic=True).count() == 4
    assert Item.objects.filter(project=project, route="human").count() == 2


def test_rerouting_waits_for_every_open_run_of_the_policys_judges(pairwise_project, make_judge):
    project = pairwise_project
    first, second = make_judge("openai"), make_judge("openai")
    route.routing_policy_set(
        project=project,
        name="judge_uncertainty",
        judges=[first.name, second.name],
        budget_count=5,
        calibration_share=0,
    )
    item = ItemFactory(project=project)
    with mock.patch.object(judge_services, "_enqueue"):
        loop.project_advance(project=project)
    config = route.routing_policy_get(project=project)
    AnnotationFactory(item=item, source="judge", judge=first.name, payload={"choice": "A"})
    assert loop.items_ready(project=project, config=config) == []  # the second run holds it
    JudgeRun.objects.filter(project=project).update(status="completed")
    assert loop.items_ready(project=project, config=config) == [item.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_rerouting_never_exceeds_the_budget():
    """Six routers re-route overlapping sets of judged items at once: the budget's row lock
    keeps the people's share at the limit, and each item ends with one current decision."""
    project = ProjectFactory()
    route.routing_policy_set(
        project=project,
        name="judge_uncertainty",
        judges=["g"],
        budget_count=7,
        calibration_share=0,
    )
    items = [ItemFactory(project=project) for _ in range(30)]
    route.project_route(project=project)  # all parked with the judge
    for item in items:  # the judge's orders disagree on every item: all want people
        for order, choice in (("AB", "A"), ("BA", "B")):
            AnnotationFactory(
                item=item, source="judge", judge="g", order=order, payload={"choice": choice}
            )
    barrier = threading.Barrier(6)
    errors = []

    def work(chunk):
        try:
            barrier.wait()
            route.items_reroute(project=project, item_ids=[i.pk for i in chunk])
            config = route.routing_policy_get(project=project)
            loop.items_reroute_ready(project=project, config=config)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connections.close_all()

    chunks = [items[i::3] + items[(i + 1) :: 5] for i in range(6)]
    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Item.objects.filter(project=project, route__in=["human", "both"]).count() == 7
    assert RoutingBudget.objects.get(project=project).spent == 7
    current = RoutingDecision.objects.filter(project=project, superseded_by__isnull=True)
    assert current.count() == 30
    assert current.filter(target="human").count() == 7


# The pipeline ---------------------------------------------------------------------------------


def pipeline_url(project) -> str:
    return f"/api/v1/projects/{project.id}/pipeline/"


def test_pipeline_counts(project, manager, api):
    route.routing_policy_set(
        project=project, name="judge_uncertainty", judges=["g"], budget_count=4, calibration_share=0
    )
    unrouted = ItemFactory(project=project)
    queued = ItemFactory(project=project, route="judge")
    judged = ItemFactory(project=project, route="judge")
    AnnotationFactory(item=judged, source="judge", judge="g", payload={"choice": "A"})
    waiting = ItemFactory(project=project, route="human")
    done = ItemFactory(project=project, route="both")
    Item.objects.filter(pk=done.pk).update(human_done=project.overlap)
    RoutingBudget.objects.filter(project=project).update(spent=2)
    JudgeRun.objects.create(
        project=project,
        judge=_judge("g"),
        status="completed",
        done=3,
        cost=Decimal("0.25"),
        stop_reason="",
    )
    body = api(manager).get(pipeline_url(project)).json()
    assert body["items"] == 5 and body["unrouted"] == 1
    assert body["judge"]["queued"] == 2 and body["judge"]["judged"] == 1  # "both" counts too
    assert body["people"] == {"waiting": 1, "done": 1}
    assert body["budget"]["limit"] == 4 and body["budget"]["remaining"] == 2
    assert body["judge_cost"] == "0.250000" and body["judge_calls"] == 3
    assert body["resolved"] == {"human": 0, "judge": 0, "hybrid": 0, "unresolved": 0}
    assert body["idle"] is False  # an unrouted item under a policy: routing is due
    assert {unrouted.pk, queued.pk, waiting.pk}  # (the items above, by stage)


def _judge(name):
    from routing.judges.models import Judge

    return Judge.objects.get_or_create(name=name, defaults={"provider": "openai", "model": "m"})[0]


def test_pipeline_counts_resolved_preferences(project, manager, api):
    from exports.preferences import preferences_recompute

    item = ItemFactory(project=project, route="human")
    for i in range(project.overlap):
        AnnotationFactory(
            item=item, source="human", external_annotator=f"h{i}", payload={"choice": "A"}
        )
    Item.objects.filter(pk=item.pk).update(human_done=project.overlap)
    preferences_recompute(project=project)
    body = api(manager).get(pipeline_url(project)).json()
    assert body["resolved"]["human"] == 1 and body["idle"] is True


def test_pipeline_permissions(project, manager, annotator, outsider, admin_user, api):
    assert api(manager).get(pipeline_url(project)).status_code == 200
    assert api(admin_user).get(pipeline_url(project)).status_code == 200
    assert api(annotator).get(pipeline_url(project)).status_code == 403
    assert api(outsider).get(pipeline_url(project)).status_code == 404
    assert api().get(pipeline_url(project)).status_code == 401
    assert api(manager).get("/api/v1/projects/999999/pipeline/").status_code == 404


def test_pipeline_query_count_does_not_grow_with_the_project(
    project, manager, api, django_assert_max_num_queries
):
    route.routing_policy_set(
        project=project, name="judge_uncertainty", judges=["g"], budget_count=4, calibration_share=0
    )
    for _ in range(3):
        ItemFactory(project=project, route="judge")
    client = api(manager)
    with django_assert_max_num_queries(14):
        assert client.get(pipeline_url(project)).status_code == 200
    for _ in range(20):
        item = ItemFactory(project=project, route="judge")
        AnnotationFactory(item=item, source="judge", judge="g", payload={"choice": "A"})
    with django_assert_max_num_queries(14):
        assert client.get(pipeline_url(project)).status_code == 200


def test_pipeline_block_on_the_project_page(client, project, manager, annotator, outsider):
    client.force_login(manager)
    page = client.get(f"/projects/{project.id}/").content.decode()
    block_url = f"/projects/{project.id}/pipeline/"
    assert f'hx-get="{block_url}"' in page and "<script" not in page.split("<main", 1)[-1]
    block = client.get(block_url, HTTP_HX_REQUEST="true")
    assert block.status_code == 200
    html = block.content.decode()
    assert 'id="pipeline"' in html and "hx-trigger" in html and "<script" not in html
    client.force_login(annotator)
    assert client.get(block_url).status_code == 403
    client.force_login(outsider)
    assert client.get(block_url).status_code == 404


def test_pipeline_command(project, sent):
    human_policy(project)
    ItemFactory(project=project)
    out = io.StringIO()
    call_command("pipeline", str(project.pk), "--json", stdout=out)
    state = json.loads(out.getvalue())
    assert state["unrouted"] == 1 and state["idle"] is False
    project_route_task.run(project.pk)
    out = io.StringIO()
    call_command("pipeline", project.slug, "--wait", "--timeout", "5", stdout=out)
    assert "idle" in out.getvalue() and "people" in out.getvalue()
    ItemFactory(project=project)  # routing due but nobody asked: --wait times out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not idle"):
        call_command(
            "pipeline", project.slug, "--wait", "--timeout", "0.2", "--interval", "0.05",
            stdout=io.StringIO(),
        )  # fmt: skip


def test_routing_work_in_the_admin(client, admin_user, project, sent):
    human_policy(project)
    loop.routing_work_request(project_id=project.pk, reason="test")
    client.force_login(admin_user)
    page = client.get("/admin/routing/routingwork/")
    assert page.status_code == 200 and "queued" in page.content.decode()


def test_route_now_routes_in_the_request_and_hands_on_to_the_loop(
    project, manager, api, sent, django_capture_on_commit_callbacks
):
    route.routing_policy_set(
        project=project, name="all_judge", judges=["g"], budget_count=0, calibration_share=0
    )
    ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(manager).post(f"/api/v1/projects/{project.id}/routing/route/")
    assert response.json() == {"routed": 1, "targets": {"human": 0, "judge": 1, "both": 0}}
    assert sent == [project.pk]  # the loop asks the judges for the routed item


def test_people_wait_for_routing_on_a_project_with_a_policy(project, annotator, sent):
    from annotation.assignment import assignment_next

    item = ItemFactory(project=project)
    human_policy(project)
    project.refresh_from_db()
    assert assignment_next(project=project, user=annotator) is None  # unrouted: not yet
    project_route_task.run(project.pk)
    project.refresh_from_db()
    lease = assignment_next(project=project, user=annotator)
    assert lease is not None and lease.item_id == item.pk


def test_without_a_policy_people_get_unrouted_items(project, annotator):
    from annotation.assignment import assignment_next

    item = ItemFactory(project=project)
    assert assignment_next(project=project, user=annotator).item_id == item.pk


def test_the_routing_work_records_a_failure_even_without_on_failure(project, sent):
    human_policy(project)
    loop.routing_work_request(project_id=project.pk, reason="test")
    with (
        mock.patch.object(loop, "project_advance", side_effect=KeyError("k")),
        pytest.raises(KeyError),
    ):
        loop.routing_work_execute(project_id=project.pk)
    work = RoutingWork.objects.get(project=project)
    assert work.status == "failed" and work.error == "KeyError: 'k'"
