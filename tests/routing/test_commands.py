"""``add_judge`` and ``run_judge``."""

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Annotation
from routing.judges.models import Judge, JudgeRun
from routing.judges.prompts import DEFAULT_TEMPLATES
from tests.routing.conftest import make_items

pytestmark = pytest.mark.django_db


def test_add_judge_uses_the_shipped_templates(capsys):
    call_command(
        "add_judge", "local", "--provider", "openai_compatible", "--model", "smollm2",
        "--base-url", "http://127.0.0.1:8080/v1", "--concurrency", "4",
    )  # fmt: skip
    judge = Judge.objects.get(name="local")
    assert (judge.provider, judge.model, judge.max_concurrency) == (
        "openai_compatible",
        "smollm2",
        4,
    )
    assert judge.templates == {} and set(DEFAULT_TEMPLATES) == {"pairwise", "listwise", "thumbs"}
    with pytest.raises(CommandError, match="base URL"):
        call_command("add_judge", "bad", "--provider", "openai_compatible", "--model", "m")
    with pytest.raises(CommandError, match="NAME of an environment variable"):
        call_command(
            "add_judge", "x", "--provider", "openai", "--model", "m", "--api-key-env", "sk-1"
        )


def test_run_judge_labels_routed_items_or_all(llm, pairwise_project, capsys):
    call_command(
        "add_judge", "fake", "--provider", "openai_compatible", "--model", "m",
        "--base-url", llm.openai_url,
    )  # fmt: skip
    make_items(pairwise_project, 2, route="judge")
    make_items(pairwise_project, 1, route="human")
    call_command("run_judge", pairwise_project.slug, "--judge", "fake", "--no-progress")
    assert "completed; 4/4 done" in capsys.readouterr().out
    call_command("run_judge", pairwise_project.slug, "--judge", "fake", "--all", "--no-progress")
    out = capsys.readouterr().out
    assert "completed; 6/6 done" in out and "4 cached" in out
    assert Annotation.objects.filter(source="judge").count() == 10


def test_run_judge_exits_non_zero_when_the_run_does_not_complete(llm, pairwise_project):
    call_command(
        "add_judge", "fake", "--provider", "openai_compatible", "--model", "m",
        "--base-url", llm.openai_url, "--concurrency", "1",
    )  # fmt: skip
    make_items(pairwise_project, 1)
    llm.faults.append({"status": 401})
    with pytest.raises(CommandError, match="did not complete"):
        call_command("run_judge", pairwise_project.slug, "--judge", "fake", "--no-progress")
    run = JudgeRun.objects.get()
    assert run.status == "incomplete"
    call_command("run_judge", "x", "--judge", "fake", "--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == "completed" and run.done == 2


def test_run_judge_without_all_says_why_when_nothing_is_routed(llm, pairwise_project):
    """Regression (issue 17): it created an empty "completed" run instead."""
    call_command(
        "add_judge", "fake", "--provider", "openai_compatible", "--model", "m",
        "--base-url", llm.openai_url,
    )  # fmt: skip
    with pytest.raises(CommandError, match="has no items yet"):
        call_command("run_judge", pairwise_project.slug, "--judge", "fake", "--no-progress")
    make_items(pairwise_project, 2, route="human")
    with pytest.raises(CommandError, match=r"no item of project .* is routed to judges.*--all"):
        call_command("run_judge", pairwise_project.slug, "--judge", "fake", "--no-progress")
    assert not JudgeRun.objects.exists()
    call_command("run_judge", pairwise_project.slug, "--judge", "fake", "--all", "--no-progress")
    assert JudgeRun.objects.get().status == "completed"


def test_item_features_are_named_in_plural_once_in_the_admin(admin_client):
    from routing.router.models import ItemFeatures

    assert ItemFeatures._meta.verbose_name_plural == "item features"
    html = admin_client.get("/admin/").content.decode()
    assert "Item features" in html and "featuress" not in html
