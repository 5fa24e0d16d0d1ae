"""The judge run loop against the real OpenAI and Anthropic SDKs and the fake server."""

import time
from decimal import Decimal

import pytest

from annotation.models import Annotation
from routing.judges import services
from routing.judges.models import JudgeItemResult, JudgeResponseCache, JudgeRun
from routing.judges.runner import judge_run_execute, presentation_orders
from tests.factories import ProjectFactory
from tests.routing.conftest import make_items

pytestmark = pytest.mark.django_db


def run_judge(project, judge, **options):
    run = services.judge_run_create(project=project, judge=judge, enqueue=False, **options)
    return judge_run_execute(run_id=run.pk)


def verdicts(run):
    return list(Annotation.objects.filter(judge_run_id=run.pk).order_by("item_id", "order"))


@pytest.mark.parametrize(
    ("provider", "mode"),
    [
        ("openai", "auto"),  # JSON schema
        ("openai", "json_object"),
        ("openai", "tool"),
        ("openai", "text"),
        ("anthropic", "auto"),  # tool use
        ("anthropic", "text"),
        ("openai_compatible", "auto"),  # tagged text
    ],
)
def test_both_orders_are_stored_in_the_items_own_letters(
    make_judge, pairwise_project, provider, mode
):
    judge = make_judge(provider, output_mode=mode)
    items = make_items(pairwise_project, 3, long_position=1)  # B is the better one

    run = run_judge(pairwise_project, judge)

    assert run.status == JudgeRun.Status.COMPLETED, run.stop_reason
    assert (run.total, run.done, run.failed) == (6, 6, 0)
    stored = verdicts(run)
    assert [(a.item_id, a.order) for a in stored] == [
        (item.pk, order) for item in items for order in ("AB", "BA")
    ]
    for annotation in stored:
        assert annotation.source == Annotation.Source.JUDGE
        assert annotation.judge == judge.name
        assert annotation.payload["choice"] == "B"  # item letters, whatever order was shown
        assert annotation.metadata["parse_status"] == "ok"
        assert annotation.raw_output
        assert (
            annotation.idempotency_key == f"judge:{run.pk}:{annotation.item_id}:{annotation.order}"
        )
    # Shown as BA, the better candidate (item B) was the judge's "A": the raw answer says so.
    shown_ba = next(a for a in stored if a.order == "BA")
    assert '"A"' in shown_ba.raw_output or ">A<" in shown_ba.raw_output
    results = JudgeItemResult.objects.filter(run=run)
    assert results.count() == 3
    assert all(r.consistent and r.label["choice"] == "B" and not r.needs_human for r in results)


def test_tokens_and_cost_per_call_run_and_project(make_judge, pairwise_project):
    judge = make_judge(
        "openai", price_input_per_mtok=Decimal("2"), price_output_per_mtok=Decimal("8")
    )
    make_items(pairwise_project, 2)
    run = run_judge(pairwise_project, judge)
    stored = verdicts(run)
    tokens_in = sum(a.metadata["tokens_in"] for a in stored)
    tokens_out = sum(a.metadata["tokens_out"] for a in stored)
    assert tokens_in > 0 and tokens_out > 0
    expected = (Decimal(tokens_in) * 2 + Decimal(tokens_out) * 8) / Decimal(1_000_000)
    assert (run.tokens_in, run.tokens_out) == (tokens_in, tokens_out)
    assert run.cost == expected
    assert sum(Decimal(a.metadata["cost"]) for a in stored) == expected
    from routing.judges.selectors import project_judge_cost

    assert project_judge_cost(project=pairwise_project)["cost"] == expected


def test_confidence_comes_from_the_verdict_tokens_logprob(make_judge, pairwise_project, llm):
    llm.verdict_prob = 0.7
    judge = make_judge("openai", output_mode="text")
    make_items(pairwise_project, 1)
    run = run_judge(pairwise_project, judge)
    assert [round(a.confidence, 6) for a in verdicts(run)] == [0.7, 0.7]
    assert all(r["body"].get("logprobs") for r in llm.requests)

    anthropic_run = run_judge(pairwise_project, make_judge("anthropic"))
    assert [a.confidence for a in verdicts(anthropic_run)] == [None, None]  # no logprobs there


def test_a_position_biased_judge_is_flagged_inconsistent(make_judge, pairwise_project, llm):
    llm.policy = "first"  # always prefers the response shown first
    judge = make_judge("openai")
    make_items(pairwise_project, 2)
    run = run_judge(pairwise_project, judge)
    choices = {(a.item_id, a.order): a.payload["choice"] for a in verdicts(run)}
    assert set(choices.values()) == {"A", "B"}  # AB -> A, BA -> B (item letters)
    for result in JudgeItemResult.objects.filter(run=run):
        assert result.consistent is False
        assert result.label is None
        assert result.needs_human and result.reason == "inconsistent"


def test_one_random_order_is_stored_once(make_judge, pairwise_project):
    make_items(pairwise_project, 6)
    run = run_judge(pairwise_project, make_judge("openai"), order_mode="random", seed=7)
    stored = verdicts(run)
    assert len(stored) == 6 and run.total == 6
    assert {a.order for a in stored} <= {"AB", "BA"}
    assert all(r.consistent is None and r.label for r in JudgeItemResult.objects.filter(run=run))


def test_listwise_permutations_map_back_to_item_letters(make_judge):
    project = ProjectFactory(task_type="listwise")
    items = make_items(project, 2, long_position=2)  # C longest
    run = run_judge(project, make_judge("openai"), permutations=3)
    stored = verdicts(run)
    assert len(stored) == 6
    for item in items:
        orders = [a.order for a in stored if a.item_id == item.pk]
        assert len(set(orders)) == 3
        # rotations: every candidate is shown in every position once
        for position in range(3):
            assert {o[position] for o in orders} == {"A", "B", "C"}
    assert all(a.payload["ranking"][0] == "C" for a in stored)
    assert all(r.consistent for r in JudgeItemResult.objects.filter(run=run))


def test_thumbs_items_are_judged_once(make_judge):
    project = ProjectFactory(task_type="thumbs")
    make_items(project, 2)
    run = run_judge(project, make_judge("anthropic"))
    assert [a.payload["thumb"] for a in verdicts(run)] == ["up", "up"]
    assert [a.order for a in verdicts(run)] == ["A", "A"]


def test_presentation_orders_are_deterministic_per_seed():
    import random

    first = presentation_orders(4, order_mode="both", permutations=6, rng=random.Random("1:2"))
    again = presentation_orders(4, order_mode="both", permutations=6, rng=random.Random("1:2"))
    assert first == again and len(set(first)) == 6
    assert all(sorted(o) == list("ABCD") for o in first)


def test_scope_routed_by_default_all_or_a_selection(make_judge, pairwise_project):
    routed = make_items(pairwise_project, 2, route="judge")
    make_items(pairwise_project, 1, route="human")
    judge = make_judge("openai")
    assert run_judge(pairwise_project, judge).total == 4
    assert run_judge(pairwise_project, judge, scope="all").total == 6
    selection = run_judge(pairwise_project, judge, scope="selection", item_ids=[routed[0].pk])
    assert selection.total == 2


# --- parsing: never guessed -------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_malformed_answers_and_refusals_are_stored_unparsed(
    make_judge, pairwise_project, llm, provider
):
    judge = make_judge(provider, output_mode="text", max_concurrency=1)
    make_items(pairwise_project, 2)
    llm.faults.extend(
        [{"content": "I think the first one, probably A"}, {"refusal": "I can't help with that."}]
    )
    run = run_judge(pairwise_project, judge)
    assert run.status == JudgeRun.Status.COMPLETED
    first, second, *rest = verdicts(run)
    assert first.payload == {"choice": None}
    assert first.metadata["parse_status"] == "unparsed"
    assert first.raw_output == "I think the first one, probably A"
    assert second.payload == {"choice": None}
    assert second.metadata["parse_status"] == "refusal"
    assert "can't help" in second.raw_output
    assert all(a.metadata["parse_status"] == "ok" for a in rest)
    result = JudgeItemResult.objects.get(run=run, item_id=first.item_id)
    assert result.needs_human and result.reason == "refusal" and result.label is None


def test_invalid_json_from_json_mode_is_unparsed(make_judge, pairwise_project, llm):
    judge = make_judge("openai", output_mode="json_schema", max_concurrency=1)
    make_items(pairwise_project, 1)
    llm.faults.extend([{"content": '{"choice": "A", '}, {"content": '{"choice": "Z"}'}])
    run = run_judge(pairwise_project, judge)
    stored = verdicts(run)
    assert [a.metadata["parse_status"] for a in stored] == ["unparsed", "unparsed"]
    assert "not valid JSON" in stored[0].metadata["parse_error"]
    assert [a.payload for a in stored] == [{"choice": None}, {"choice": None}]
    result = JudgeItemResult.objects.get(run=run)
    assert result.needs_human and result.reason == "unparsed" and result.parsed == 0


# --- limits -----------------------------------------------------------------------------------


def test_concurrency_limit_is_honoured(make_judge, pairwise_project, llm):
    llm.latency = 0.1
    make_items(pairwise_project, 10)
    run = run_judge(pairwise_project, make_judge("openai", max_concurrency=3))
    assert run.done == 20
    assert llm.max_in_flight == 3


def test_requests_per_minute_are_honoured(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 12)  # 24 calls at 600/min = 10/s, one second of burst
    judge = make_judge("openai", max_concurrency=32, requests_per_minute=600)
    started = time.monotonic()
    run = run_judge(pairwise_project, judge)
    assert run.done == 24
    starts = sorted(r["start"] for r in llm.requests)
    # Never more than the burst (10) plus 10 per second since the first call.
    for i, t in enumerate(starts):
        assert i + 1 <= 10 + 10 * (t - starts[0]) + 1
    assert time.monotonic() - started >= 1.3


def test_tokens_per_minute_are_honoured(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 4)
    judge = make_judge("openai", tokens_per_minute=60_000, sampling={"max_tokens": 200})
    started = time.monotonic()
    run = run_judge(pairwise_project, judge)
    elapsed = time.monotonic() - started
    used = run.tokens_in + run.tokens_out
    # 1000 tokens a second (burst 1000): the calls' estimated tokens need that long to pass.
    assert run.done == 8 and used > 0
    assert elapsed >= (8 * 200 - 1000) / 1000 * 0.9


# --- faults -----------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_after_waiting(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 1)
    llm.faults.append({"status": 429, "retry_after": "1"})
    run = run_judge(pairwise_project, make_judge("openai", max_concurrency=1))
    assert run.status == JudgeRun.Status.COMPLETED and run.done == 2
    assert len(llm.requests) == 3
    gap = llm.requests[1]["start"] - llm.requests[0]["end"]
    assert gap >= 0.95  # waited as long as Retry-After asked (backoff alone is ~0.01 s)
    assert verdicts(run)[0].metadata["attempts"] == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_server_errors_timeouts_and_dropped_connections_are_retried(
    make_judge, pairwise_project, llm, provider
):
    make_items(pairwise_project, 1)
    llm.faults.extend([{"status": 500}, {"status": 503}, {"delay": 1.5}, {"drop": True}])
    judge = make_judge(provider, max_concurrency=1, timeout_seconds=0.5)
    run = run_judge(pairwise_project, judge)
    assert run.status == JudgeRun.Status.COMPLETED, run.errors
    assert run.done == 2 and run.failed == 0
    assert len(llm.requests) == 6
    assert verdicts(run)[0].metadata["attempts"] == 5


def test_client_errors_are_not_retried_and_are_reported(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 1)
    llm.faults.append({"status": 400})
    run = run_judge(pairwise_project, make_judge("openai", max_concurrency=1))
    assert len(llm.requests) == 2  # the failed call once, the other order once
    assert run.status == JudgeRun.Status.INCOMPLETE
    assert (run.done, run.failed) == (1, 1)
    assert run.errors[-1]["status"] == 400 and "400" in run.errors[-1]["error"]
    assert "1 of 2 calls failed" in run.stop_reason


def test_transient_failures_give_up_after_max_attempts(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 1)
    llm.faults.extend([{"status": 502}] * 3)
    run = run_judge(pairwise_project, make_judge("openai", max_concurrency=1, max_attempts=3))
    assert run.status == JudgeRun.Status.INCOMPLETE and run.failed == 1
    # resuming retries only the missing call
    services.judge_run_resume(run=run, enqueue=False)
    run = judge_run_execute(run_id=run.pk)
    assert run.status == JudgeRun.Status.COMPLETED and Annotation.objects.count() == 2


def test_missing_api_key_stops_the_run_with_the_reason(make_judge, pairwise_project, monkeypatch):
    judge = make_judge("openai")
    monkeypatch.delenv("FAKE_OPENAI_KEY")
    make_items(pairwise_project, 1)
    run = run_judge(pairwise_project, judge)
    assert run.status == JudgeRun.Status.INCOMPLETE
    assert "$FAKE_OPENAI_KEY" in run.stop_reason


# --- cost cap, cache, cancellation ------------------------------------------------------------


def test_cost_cap_stops_the_run_cleanly_and_it_resumes_with_a_higher_cap(
    make_judge, pairwise_project, llm
):
    make_items(pairwise_project, 5)
    judge = make_judge("openai", max_concurrency=1)
    probe = run_judge(
        pairwise_project,
        judge,
        scope="selection",
        item_ids=[pairwise_project.items.first().pk],
        use_cache=False,
    )
    per_call = probe.cost / 2
    llm.requests.clear()

    cap = (per_call * Decimal("2.5")).quantize(Decimal("0.000001"))
    run = run_judge(pairwise_project, judge, cost_cap=cap, use_cache=False)
    assert run.status == JudgeRun.Status.CAPPED
    assert "cost cap reached" in run.stop_reason
    assert run.done == 3 and len(llm.requests) == 3
    assert run.cost >= run.cost_cap

    services.judge_run_resume(run=run, cost_cap=Decimal(1000), enqueue=False)
    run = judge_run_execute(run_id=run.pk)
    assert run.status == JudgeRun.Status.COMPLETED and run.done == 10
    assert Annotation.objects.filter(judge_run_id=run.pk).count() == 10


def test_a_repeated_run_is_answered_from_the_cache(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 3)
    judge = make_judge("openai")
    first = run_judge(pairwise_project, judge)
    assert len(llm.requests) == 6 and JudgeResponseCache.objects.count() == 6

    second = run_judge(pairwise_project, judge)
    assert len(llm.requests) == 6  # nothing paid twice
    assert second.status == JudgeRun.Status.COMPLETED and second.done == 6
    assert second.cached == 6 and second.cost == 0 and second.tokens_in == 0
    assert [a.payload for a in verdicts(second)] == [a.payload for a in verdicts(first)]
    assert all(a.metadata["cached"] for a in verdicts(second))

    # another model, or other sampling parameters, is another key
    run_judge(pairwise_project, make_judge("openai", sampling={"temperature": 0.5}))
    assert len(llm.requests) == 12


def test_cancelling_stops_new_calls_and_resume_finishes(make_judge, pairwise_project, llm):
    llm.latency = 0.2
    make_items(pairwise_project, 20)
    judge = make_judge("openai", max_concurrency=2)
    run = services.judge_run_create(project=pairwise_project, judge=judge, enqueue=False)
    JudgeRun.objects.filter(pk=run.pk).update(cancel_requested=True, status="running")

    run = judge_run_execute(run_id=run.pk)  # a running run told to cancel: picked up, stopped
    assert run.status == JudgeRun.Status.CANCELLED

    def cancel_midway(progress_run):
        if progress_run.done >= 4:
            JudgeRun.objects.filter(pk=progress_run.pk).update(cancel_requested=True)

    services.judge_run_resume(run=run, enqueue=False)
    run = judge_run_execute(run_id=run.pk, on_progress=cancel_midway)
    assert run.status == JudgeRun.Status.CANCELLED
    assert 4 <= run.done < 40
    services.judge_run_resume(run=run, enqueue=False)
    run = judge_run_execute(run_id=run.pk)
    assert run.status == JudgeRun.Status.COMPLETED and run.done == 40
    assert Annotation.objects.filter(judge_run_id=run.pk).count() == 40


def test_a_finished_run_is_left_as_it_is(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 1)
    run = run_judge(pairwise_project, make_judge("openai"))
    requests = len(llm.requests)
    again = judge_run_execute(run_id=run.pk)
    assert again.status == JudgeRun.Status.COMPLETED and len(llm.requests) == requests


def test_the_database_refuses_a_second_verdict_for_the_same_call(make_judge, pairwise_project):
    from django.db import IntegrityError, transaction

    make_items(pairwise_project, 1)
    run = run_judge(pairwise_project, make_judge("openai"))
    existing = verdicts(run)[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(
            project=pairwise_project,
            item_id=existing.item_id,
            source="judge",
            payload={"choice": "A"},
            order=existing.order,
            judge_run_id=run.pk,
            idempotency_key=existing.idempotency_key,
        )


def test_json_mode_sends_the_schema_only_to_compatible_servers(make_judge, pairwise_project, llm):
    make_items(pairwise_project, 1)
    run_judge(pairwise_project, make_judge("openai_compatible", output_mode="json_object"))
    sent = llm.requests[0]["body"]["response_format"]
    assert sent["type"] == "json_object"
    assert sent["schema"]["properties"]["choice"]["enum"] == ["A", "B", "tie"]
    llm.requests.clear()
    run_judge(pairwise_project, make_judge("openai", output_mode="json_object"), use_cache=False)
    assert llm.requests[0]["body"]["response_format"] == {"type": "json_object"}


def test_a_run_another_worker_is_executing_is_left_to_it(make_judge, pairwise_project, llm):
    import psycopg
    from django.db import connection

    from routing.judges.runner import LOCK_NAMESPACE

    if connection.vendor != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    make_items(pairwise_project, 1)
    run = services.judge_run_create(
        project=pairwise_project, judge=make_judge("openai"), enqueue=False
    )
    s = connection.settings_dict
    other = psycopg.connect(
        dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"] or None,
        host=s["HOST"] or None, port=s["PORT"] or None, autocommit=True,
    )  # fmt: skip
    other_pid = other.info.backend_pid
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, run.pk))
        again = judge_run_execute(run_id=run.pk)  # e.g. the broker delivered the task twice
        assert again.status == JudgeRun.Status.PENDING and llm.requests == []
    finally:
        other.close()  # the first worker "dies": its lock goes with its connection
    # The server ends that backend (and frees its lock) shortly after the client hangs up; on a
    # loaded machine "shortly" can be later than the next statement, so wait for it to be gone.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [other_pid])
            if cursor.fetchone() is None:
                break
        time.sleep(0.02)
    assert judge_run_execute(run_id=run.pk).status == JudgeRun.Status.COMPLETED


def test_a_run_left_running_by_a_dead_worker_can_be_resumed(make_judge, pairwise_project):
    from tandem.errors import Conflict

    make_items(pairwise_project, 1)
    run = services.judge_run_create(
        project=pairwise_project, judge=make_judge("openai"), enqueue=False
    )
    with pytest.raises(Conflict):
        services.judge_run_resume(run=run, enqueue=False)  # still waiting for a worker
    JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.RUNNING)
    run = services.judge_run_resume(run=run, enqueue=False)  # nobody holds it
    assert run.status == JudgeRun.Status.PENDING
    assert judge_run_execute(run_id=run.pk).status == JudgeRun.Status.COMPLETED
