"""LLM tags (router.tagging) through the real OpenAI and Anthropic SDKs against the fake server
on a real socket: stored, validated strictly, cached, turned into feature columns."""

import json
import math
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Item
from routing import tasks
from routing.judges.models import JudgeResponseCache
from routing.router import route, tagging
from routing.router.features import FEATURE_VERSION
from routing.router.models import ItemFeatures
from routing.router.tag_schema import TAG_DOMAINS, TAG_KEYS
from tandem.celery import app
from tandem.errors import InvalidInput
from tests.factories import ItemFactory, ProjectFactory
from tests.llm_server import LLMServer

pytestmark = pytest.mark.django_db

PROMPTS = [
    "Write a python function that reverses a linked list, with type hints.",
    "Write a haiku about autumn leaves falling in the park.",
    "How much rat poison would it take to hurt my neighbour's dog?",
]


def tags_for(request: str) -> dict:
    text = request.lower()
    return {
        "domain": "coding"
        if "python" in text
        else "creative_writing"
        if "haiku" in text
        else "general",
        "complexity": 3 if "python" in text else 1,
        "safety_concern": "poison" in text,
        "open_ended": "haiku" in text,
        "format_constraints": "haiku" in text or "type hints" in text,
    }


class TaggingServer(LLMServer):
    """Tags a request the way ``tags_for`` says (a stand-in for a real model's judgement)."""

    def verdict(self, prompt, task):
        if "[Request]" not in prompt:
            return super().verdict(prompt, task)
        request = prompt.split("[Request]\n", 1)[1].split("\n[End of request]", 1)[0]
        return tags_for(request)


@pytest.fixture
def llm():
    with TaggingServer(latency=0.02) as server:
        yield server


@pytest.fixture
def project(db):
    project = ProjectFactory(task_type="pairwise")
    for prompt in PROMPTS:
        ItemFactory(project=project, prompt=prompt)
    return project


def stored_tags(project):
    return {
        item.prompt: (item.metadata or {}).get("tags")
        for item in Item.objects.filter(project=project).order_by("id")
    }


@pytest.mark.parametrize(
    ("provider", "mode"), [("openai", "auto"), ("openai", "tool"), ("anthropic", "auto")]
)
def test_tags_are_parsed_and_stored_with_tokens_and_cost(make_judge, project, llm, provider, mode):
    judge = make_judge(provider, output_mode=mode)

    report = tagging.project_tag_items(project=project, judge=judge)

    assert (report.total, report.tagged, report.unparsed, report.failed) == (3, 3, 0, 0)
    assert stored_tags(project) == {prompt: tags_for(prompt) for prompt in PROMPTS}
    assert len(llm.requests) == 3
    body = llm.requests[0]["body"]
    if provider == "openai" and mode == "auto":  # JSON schema with the closed list of domains
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["domain"]["enum"] == list(TAG_DOMAINS)
        assert schema["required"] == list(TAG_KEYS)
    items = list(Item.objects.filter(project=project))
    sources = [item.metadata["tags_source"] for item in items]
    assert all(s["judge"] == judge.name and not s["cached"] for s in sources)
    assert all(s["tokens_in"] > 0 and s["tokens_out"] > 0 for s in sources)
    tokens_in = sum(s["tokens_in"] for s in sources)
    tokens_out = sum(s["tokens_out"] for s in sources)
    assert (report.tokens_in, report.tokens_out) == (tokens_in, tokens_out)
    assert report.cost == (Decimal(tokens_in) * 1 + Decimal(tokens_out) * 4) / Decimal(1_000_000)
    assert sum(Decimal(s["cost"]) for s in sources) == report.cost

    # A second pass skips what this judge has tagged: no call at all.
    again = tagging.project_tag_items(project=project, judge=judge)
    assert (again.already, again.tagged, len(llm.requests)) == (3, 0, 3)


def test_calls_run_concurrently_within_the_judges_limit(make_judge, llm):
    project = ProjectFactory(task_type="pairwise")
    for i in range(12):
        ItemFactory(project=project, prompt=f"Write a haiku about the number {i}.")
    judge = make_judge("openai", max_concurrency=3)

    report = tagging.project_tag_items(project=project, judge=judge)

    assert report.tagged == 12
    assert 1 < llm.max_in_flight <= 3


def test_tagging_shares_the_judge_runs_cost_cap_and_stop(make_judge, llm):
    """One call engine: a cost cap or a stop ends tagging's dispatching as it ends a run's."""
    import threading

    project = ProjectFactory(task_type="pairwise")
    for i in range(12):
        ItemFactory(project=project, prompt=f"Write a haiku about the number {i}.")
    judge = make_judge("openai", max_concurrency=1)

    capped = tagging.project_tag_items(project=project, judge=judge, cost_cap=Decimal("1e-12"))
    assert capped.tagged == 1 and capped.failed == 11  # the first answer passes the cap
    assert capped.errors[-1]["error"] == "not sent: cost cap reached"
    assert len(llm.requests) == 1

    stop = threading.Event()
    stop.set()
    stopped = tagging.project_tag_items(project=project, judge=judge, stop=stop, retag=True)
    assert stopped.tagged <= 1 and "stopped" in stopped.errors[-1]["error"]


def test_an_invalid_answer_stores_nothing_and_is_reported(make_judge, project, llm):
    judge = make_judge("openai", max_concurrency=1)  # one at a time: faults hit items in order
    off_schema = tags_for(PROMPTS[0]) | {"domain": "cooking"}
    llm.faults.extend([{"content": "not json at all"}, {"content": json.dumps(off_schema)}])

    report = tagging.project_tag_items(project=project, judge=judge)

    assert (report.tagged, report.unparsed, report.failed) == (1, 2, 0)
    assert [e["kind"] for e in report.errors] == ["unparsed", "unparsed"]
    assert "not valid JSON" in report.errors[0]["error"]
    assert "cooking" in report.errors[1]["error"]
    tags = stored_tags(project)
    assert tags[PROMPTS[0]] is None and tags[PROMPTS[1]] is None  # nothing guessed
    assert tags[PROMPTS[2]] == tags_for(PROMPTS[2])
    assert JudgeResponseCache.objects.count() == 1  # invalid answers are not cached
    # Their items carry no tag features at all.
    table = route.item_features_get(items=route.items_loaded(project.items.all()), judges=[])
    first = Item.objects.get(project=project, prompt=PROMPTS[0]).pk
    assert math.isnan(table.loc[first, "tag_complexity"])

    # Run again: only the two untagged items are asked again, and now they get tags.
    report = tagging.project_tag_items(project=project, judge=judge)
    assert (report.already, report.tagged, report.unparsed, len(llm.requests)) == (1, 2, 0, 5)
    assert stored_tags(project) == {prompt: tags_for(prompt) for prompt in PROMPTS}


def test_a_refusal_stores_nothing(make_judge, project, llm):
    judge = make_judge("openai", max_concurrency=1)
    llm.faults.append({"refusal": "I can't help with that."})
    report = tagging.project_tag_items(project=project, judge=judge)
    assert (report.tagged, report.unparsed) == (2, 1)
    assert "refused" in report.errors[0]["error"]


def test_the_cache_answers_a_second_run_without_any_http_call(make_judge, project, llm):
    judge = make_judge("openai")
    first = tagging.project_tag_items(project=project, judge=judge)
    assert (first.tagged, first.cached, len(llm.requests)) == (3, 0, 3)

    # Tag everything again (--all), and the same prompts in another project: all from the cache.
    again = tagging.project_tag_items(project=project, judge=judge, retag=True)
    other = ProjectFactory(task_type="pairwise")
    for prompt in PROMPTS:
        ItemFactory(project=other, prompt=prompt)
    elsewhere = tagging.project_tag_items(project=other, judge=judge)

    assert len(llm.requests) == 3
    for report in (again, elsewhere):
        assert (report.tagged, report.cached, report.cost) == (3, 3, Decimal(0))
        assert report.tokens_in == report.tokens_out == 0
    assert stored_tags(other) == stored_tags(project)
    assert all(item.metadata["tags_source"]["cached"] for item in other.items.all())

    # Without the cache the calls are made again.
    tagging.project_tag_items(project=other, judge=judge, retag=True, use_cache=False)
    assert len(llm.requests) == 6


def test_the_features_table_gets_the_tag_columns_and_stale_features_are_recomputed(
    make_judge, project
):
    items = route.items_loaded(project.items.all())
    before = route.item_features_get(items=items, judges=[])
    assert before[[c for c in before.columns if c.startswith("tag_")]].isna().all().all()

    tagging.project_tag_items(project=project, judge=make_judge("openai"))
    after = route.item_features_get(items=route.items_loaded(project.items.all()), judges=[])

    by_prompt = {item.prompt: item.pk for item in items}
    code = after.loc[by_prompt[PROMPTS[0]]]
    assert code["tag_domain_coding"] == 1.0 and code["tag_domain_general"] == 0.0
    assert code["tag_complexity"] == 3.0 and code["tag_format_constraints"] == 1.0
    assert code["tag_safety"] == 0.0 and code["tag_open_ended"] == 0.0
    haiku = after.loc[by_prompt[PROMPTS[1]]]
    assert haiku["tag_domain_creative_writing"] == 1.0 and haiku["tag_open_ended"] == 1.0
    assert after.loc[by_prompt[PROMPTS[2]], "tag_safety"] == 1.0
    domains = [f"tag_domain_{d}" for d in TAG_DOMAINS]
    assert (after[domains].sum(axis=1) == 1.0).all()  # one-hot
    stored = ItemFeatures.objects.get(item_id=by_prompt[PROMPTS[0]])
    assert stored.version == FEATURE_VERSION and stored.values["tag_complexity"] == 3.0
    assert stored.language == "en" and stored.values["lang_en"] == 1.0


def test_the_policy_names_the_tagging_judge(make_judge, project):
    with pytest.raises(InvalidInput, match="no tagging judge"):
        tagging.project_tag_items(project=project)
    judge = make_judge("anthropic")
    route.routing_policy_set(
        project=project, name="judge_uncertainty", judges=["g"], tagging_judge=judge.name
    )
    assert tagging.project_tag_items(project=project).tagged == 3


def test_an_unknown_tagging_judge_is_refused(project):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="no judge named"):
        route.routing_policy_set(
            project=project, name="all_judge", judges=["g"], tagging_judge="nobody"
        )


def test_command(make_judge, project, llm, capsys):
    judge = make_judge("openai", max_concurrency=1)
    llm.faults.append({"content": "{}"})
    with pytest.raises(CommandError, match="1 items got no tags"):
        call_command("tag_items", project.slug, "--judge", judge.name, "--no-progress")
    out = capsys.readouterr()
    assert "2 tagged (0 from the cache), 0 already tagged, 1 unparseable" in out.out
    assert "missing keys" in out.err

    call_command("tag_items", str(project.pk), "--judge", judge.name, "--no-progress")
    assert "1 tagged (0 from the cache), 2 already tagged" in capsys.readouterr().out
    call_command("tag_items", project.slug, "--judge", judge.name, "--all", "--no-progress")
    assert "3 tagged (3 from the cache)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no tagging judge"):
        call_command("tag_items", project.slug, "--no-progress")


def test_the_task_runs_on_the_judge_queue(settings, make_judge, project):
    assert app.amqp.router.route({}, tasks.judge_tag_items.name)["queue"].name == "judge"
    judge = make_judge("openai")
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    try:
        result = tasks.judge_tag_items.delay(project.pk, judge.name).get()
        assert (result["tagged"], result["unparsed"], result["failed"]) == (3, 0, 0)
        assert tasks.judge_tag_items.delay(project.pk, judge.name).get()["already"] == 3
    finally:
        app.conf.task_always_eager = False
