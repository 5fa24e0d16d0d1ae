"""The CLI: import_items and createuser, as a person would run them."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from accounts.models import User
from annotation.models import Item, Membership, Project


def call(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def sample(settings):
    return settings.BASE_DIR / "tests" / "fixtures" / "pandalm_sample.jsonl"


@pytest.mark.django_db
def test_import_items_creates_the_project_and_prints_a_summary(sample):
    out, err = call("import_items", "pl", str(sample), "--create", "--task-type", "pairwise")

    assert out.strip() == "pl: 120 created, 0 skipped, 0 failed, 600 labels"
    assert "120/120" in err  # the progress bar
    assert Project.objects.get(slug="pl").items.count() == 120

    out, _ = call("import_items", "pl", str(sample), "--no-progress")
    assert out.strip() == "pl: 0 created, 120 skipped, 0 failed, 0 labels"


@pytest.mark.django_db
def test_import_items_reports_bad_lines_and_fails(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "a", "candidates": ["x", "y"]})
        + "\n"
        + json.dumps({"prompt": "b", "candidates": ["x"]})
        + "\n"
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 bad rows"):
        call_command(
            "import_items",
            "p",
            str(path),
            "--create",
            "--task-type",
            "pairwise",
            "--no-progress",
            stdout=out,
            stderr=err,
        )
    assert f"{path}:2: a pairwise item needs exactly 2 candidates" in err.getvalue()
    assert "nothing written" in out.getvalue()
    assert not Item.objects.exists()


@pytest.mark.django_db
def test_import_items_explains_missing_project_and_file(sample, tmp_path):
    with pytest.raises(CommandError, match="--create --task-type"):
        call("import_items", "nope", str(sample))
    with pytest.raises(CommandError, match="no such file"):
        call("import_items", "nope", str(tmp_path / "missing.jsonl"))
    with pytest.raises(CommandError, match="cannot tell the format"):
        (tmp_path / "x.txt").write_text("")
        call("import_items", "nope", str(tmp_path / "x.txt"), "--create", "--task-type", "pairwise")


@pytest.mark.django_db
def test_createuser_prints_a_working_token_last(project):
    out, _ = call("createuser", "ann", "--role", "annotator", "--project", project.slug)

    token = out.strip().splitlines()[-1]
    user = User.objects.get(username="ann")
    assert Token.objects.get(key=token).user == user
    assert "password: " in out
    assert Membership.objects.get(user=user, project=project).role == "annotator"


@pytest.mark.django_db
def test_createuser_refuses_unknown_projects_and_duplicates(project):
    with pytest.raises(CommandError, match="no such project: ghost"):
        call("createuser", "x", "--project", "ghost")
    call(
        "createuser",
        "boss",
        "--role",
        "manager",
        "--project",
        project.slug,
        "--password",
        "correct-horse-battery",
    )
    assert Membership.objects.get(user__username="boss").role == "manager"
    with pytest.raises(CommandError, match="already exists"):
        call("createuser", "boss")


@pytest.mark.django_db
def test_load_demo_is_idempotent_and_prints_logins(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first, _ = call("load_demo")
    second, _ = call("load_demo")

    assert "demo-pairwise: 120 created" in first
    assert "demo-pairwise: 0 created, 120 skipped" in second
    logins = [line for line in second.splitlines() if line.startswith("login:")]
    assert [line.split()[1] for line in logins] == ["admin", "annotator"]
    assert set(Project.objects.values_list("task_type", flat=True)) == {
        "pairwise",
        "listwise",
        "thumbs",
    }


@pytest.mark.django_db
def test_createuser_refuses_a_site_annotator_as_project_manager(project):
    """--role annotator never makes a project manager; a weak --password is refused."""
    call("createuser", "ann2", "--role", "annotator", "--project", project.slug)
    assert Membership.objects.get(user__username="ann2").role == "annotator"
    with pytest.raises(CommandError, match="too short"):
        call("createuser", "weak", "--password", "a")


@pytest.mark.django_db
def test_import_items_reports_a_corrupt_parquet(tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(CommandError, match="not a readable Parquet file"):
        call("import_items", "p", str(bad), "--create", "--task-type", "pairwise")
