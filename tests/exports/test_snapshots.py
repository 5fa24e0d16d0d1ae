"""Snapshots: the lifecycle and its build task, files under EXPORTS_ROOT, the API (create, list,
status, download, delete; managers of the project only), the manager page and the CLI."""

import hashlib
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import Membership
from exports import snapshots
from exports.models import Snapshot
from tandem.celery import app as celery_app
from tandem.errors import Conflict
from tests.factories import MembershipFactory, ProjectFactory, UserFactory


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def built(project, user=None, **params):
    params.setdefault("format", "preference")
    params.setdefault("file_format", "parquet")
    snapshot = snapshots.snapshot_create(project=project, user=user, **params)
    return snapshots.snapshot_build(snapshot_id=snapshot.pk)


def url(project, *rest) -> str:
    return f"/api/v1/projects/{project.pk}/snapshots/" + "".join(f"{r}/" for r in rest)


# --- service and task ---------------------------------------------------------------------


def test_a_snapshot_is_built_with_its_files_and_manifest(project, pairwise, exports_root):
    snapshot = built(project, splits={"train": 0.5, "test": 0.5}, seed=7)
    assert snapshot.status == "done" and snapshot.attempts == 1
    assert snapshot.folder == f"project-{project.pk}/snapshot-{snapshot.pk}"
    folder = exports_root / snapshot.folder
    names = sorted(f["path"] for f in snapshot.files)
    assert names == ["manifest.json", "test.parquet", "train.parquet"]
    for entry in snapshot.files:
        assert hashlib.sha256((folder / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert sum(snapshot.rows.values()) == 5 and snapshot.items_total == len(pairwise)
    assert snapshot.manifest["seed"] == 7
    state = snapshots.snapshot_state(snapshot)
    assert state["percent"] == 100.0 and state["items_done"] == len(pairwise)
    assert not list((exports_root / ".building").iterdir())  # nothing left half-built


def test_the_same_parameters_give_byte_identical_snapshots(project, pairwise, exports_root):
    one = built(project, file_format="hf", splits={"train": 0.5, "test": 0.5})
    two = built(project, file_format="hf", splits={"train": 0.5, "test": 0.5})
    assert [f["sha256"] for f in one.files] == [f["sha256"] for f in two.files]
    assert one.folder != two.folder


def test_a_done_snapshot_never_changes(project, pairwise):
    snapshot = built(project)
    again = snapshots.snapshot_build(snapshot_id=snapshot.pk)  # a redelivered task
    assert again.status == "done" and again.attempts == 1
    with pytest.raises(Conflict):
        snapshots.snapshot_transition(snapshot_id=snapshot.pk, to="running")


def test_deleting_a_snapshot_deletes_its_files(
    project, pairwise, exports_root, django_capture_on_commit_callbacks
):
    snapshot = built(project)
    folder = exports_root / snapshot.folder
    assert folder.is_dir()
    with django_capture_on_commit_callbacks(execute=True):
        snapshots.snapshot_delete(snapshot=snapshot)
    assert not folder.exists() and not Snapshot.objects.filter(pk=snapshot.pk).exists()


def test_a_failing_build_ends_failed_with_its_reason(project, pairwise, monkeypatch):
    from exports import snapshots as module
    from exports.tasks import snapshot_build_task

    def broken(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, "export_write", broken)
    snapshot = snapshots.snapshot_create(
        project=project, user=None, format="raw", file_format="jsonl"
    )
    result = snapshot_build_task.apply(args=(snapshot.pk,), throw=False)
    assert result.failed()
    snapshot.refresh_from_db()
    assert snapshot.status == "failed" and "RuntimeError: disk on fire" in snapshot.error
    assert snapshot.finished_at is not None and snapshot.folder == ""


def test_a_build_interrupted_too_often_gives_up(project, pairwise):
    snapshot = snapshots.snapshot_create(
        project=project, user=None, format="raw", file_format="jsonl"
    )
    Snapshot.objects.filter(pk=snapshot.pk).update(status="running", attempts=3)
    done = snapshots.snapshot_build(snapshot_id=snapshot.pk)
    assert done.status == "failed" and "gave up after 3 attempts" in done.error


def test_a_redelivered_build_starts_over(project, pairwise):
    snapshot = snapshots.snapshot_create(
        project=project, user=None, format="raw", file_format="jsonl"
    )
    Snapshot.objects.filter(pk=snapshot.pk).update(status="running", attempts=1)
    done = snapshots.snapshot_build(snapshot_id=snapshot.pk)
    assert done.status == "done" and done.attempts == 2


# --- API ----------------------------------------------------------------------------------


def test_api_create_build_list_download_delete(
    api, project, manager, pairwise, eager, exports_root, django_capture_on_commit_callbacks
):
    client = api(manager)
    body = {
        "format": "kto",
        "file_format": "jsonl",
        "splits": {"train": 0.75, "test": 0.25},
        "filters": {"provenance": ["human", "hybrid"]},
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(project), body, format="json")
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["status"] == "queued" and created["params"]["filters"] == {
        "provenance": ["human", "hybrid"]
    }

    state = client.get(url(project, created["id"])).json()
    assert state["status"] == "done" and state["percent"] == 100.0
    listed = client.get(url(project)).json()["results"]
    assert [s["id"] for s in listed] == [created["id"]]

    for entry in state["files"]:
        response = client.get(url(project, created["id"], "files") + entry["path"])
        assert response.status_code == 200 and response.streaming
        content = b"".join(response.streaming_content)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        assert "attachment" in response["Content-Disposition"]
    manifest = json.loads(
        b"".join(client.get(url(project, created["id"], "files") + "manifest.json"))
    )
    assert manifest["filters"] == {"provenance": ["human", "hybrid"]}

    assert client.get(url(project, created["id"], "files") + "../../etc/passwd").status_code == 404
    assert client.get(url(project, created["id"], "files") + "nope.jsonl").status_code == 404

    folder = exports_root / Snapshot.objects.get().folder
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(url(project, created["id"])).status_code == 204
    assert not folder.exists()
    assert client.get(url(project, created["id"])).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"format": "nope", "file_format": "jsonl"},
        {"format": "listwise-pairs", "file_format": "jsonl"},  # a pairwise project
        {"format": "raw", "file_format": "xlsx"},
        {"format": "raw", "file_format": "jsonl", "splits": {"train": 0.5}},
        {"format": "raw", "file_format": "jsonl", "filters": {"agreement_min": 7}},
        {"format": "raw", "file_format": "jsonl", "seed": -1},
    ],
)
def test_api_refuses_bad_parameters(api, project, manager, body):
    response = api(manager).post(url(project), body, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert not Snapshot.objects.exists()


def test_api_preview(api, project, manager, pairwise):
    body = {"format": "preference", "file_format": "parquet", "filters": {"provenance": "human"}}
    response = api(manager).post(url(project, "preview"), body, format="json")
    assert response.status_code == 200
    assert response.json() == {"items": 5, "resolved": 4, "rows": 2}


def test_api_permissions_on_every_endpoint(api, project, manager, annotator, outsider, pairwise):
    snapshot = built(project)
    other = ProjectFactory()
    other_manager = UserFactory(role="manager")
    MembershipFactory(project=other, user=other_manager, role=Membership.Role.MANAGER)
    endpoints = [
        ("get", url(project)),
        ("post", url(project)),
        ("post", url(project, "preview")),
        ("get", url(project, snapshot.pk)),
        ("get", url(project, snapshot.pk, "files") + "train.parquet"),
        ("delete", url(project, snapshot.pk)),
    ]

    def call(user, method, path):
        client = api(user)
        if method == "post":
            return client.post(path, {"format": "raw", "file_format": "jsonl"}, format="json")
        return getattr(client, method)(path)

    for method, path in endpoints:
        assert call(annotator, method, path).status_code == 403, path
        assert call(outsider, method, path).status_code == 404, path
        assert call(other_manager, method, path).status_code == 404, path
        assert call(None, method, path).status_code in (401, 403), path
    # A manager of another project asking through their own project: no such snapshot.
    response = api(other_manager).get(url(other, snapshot.pk, "files") + "train.parquet")
    assert response.status_code == 404
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()


def test_api_list_query_count(api, project, manager, pairwise, django_assert_max_num_queries):
    for _ in range(5):
        snapshots.snapshot_create(project=project, user=manager, format="raw", file_format="csv")
    client = api(manager)
    with django_assert_max_num_queries(4):  # token, project + role, page
        response = client.get(url(project))
    assert response.status_code == 200 and len(response.json()["results"]) == 5


# --- manager page -------------------------------------------------------------------------


def page(project, *rest) -> str:
    return f"/projects/{project.pk}/snapshots/" + "".join(f"{r}/" for r in rest)


def test_page_lists_snapshots_with_download_buttons(
    client, project, manager, pairwise, django_assert_max_num_queries
):
    snapshot = built(project)
    client.force_login(manager)
    with django_assert_max_num_queries(8):
        response = client.get(page(project))
    html = response.content.decode()
    assert response.status_code == 200 and "New snapshot" in html
    download = f"/projects/{project.pk}/snapshots/{snapshot.pk}/files/train.parquet"
    assert download in html and "Download train.parquet" in html
    got = client.get(download)
    assert got.status_code == 200 and got.streaming
    detail = client.get(f"/projects/{project.pk}/").content.decode()
    assert page(project) in detail  # linked from the project page


def test_page_preview_and_create(
    client, project, manager, pairwise, eager, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    response = client.get(
        page(project, "preview"),
        {"format": "preference", "provenance": ["human"], "agreement_min": "0.9"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "<strong>1</strong> rows from 2 items" in response.content.decode()  # b, both_bad
    bad = client.get(page(project, "preview"), {"agreement_min": "9"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and "agreement_min" in bad.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            page(project),
            {"format": "reward", "file_format": "csv", "splits": "train=1", "seed": "2"},
            HTTP_HX_REQUEST="true",
        )
    assert response.status_code == 200 and "snapshot-" in response.content.decode()
    snapshot = Snapshot.objects.get()
    row = client.get(page(project, snapshot.pk), HTTP_HX_REQUEST="true").content.decode()
    assert "done" in row and "Download train.csv" in row
    assert client.post(page(project, snapshot.pk, "delete")).status_code == 200
    assert not Snapshot.objects.exists()


def test_page_permissions(client, project, annotator, outsider, pairwise):
    snapshot = built(project)
    paths = [
        ("get", page(project)),
        ("get", page(project, "preview")),
        ("get", page(project, snapshot.pk)),
        ("post", page(project, snapshot.pk, "delete")),
        ("get", page(project, snapshot.pk, "files") + "train.parquet"),
    ]
    for user, code in ((annotator, 403), (outsider, 404)):
        client.force_login(user)
        for method, path in paths:
            assert getattr(client, method)(path).status_code == code, (user, path)
    client.logout()
    assert client.get(page(project)).status_code == 302  # to the login page


# --- CLI ----------------------------------------------------------------------------------


def test_cli_export_writes_splits_and_manifest(project, pairwise, tmp_path):
    out = tmp_path / "cli"
    stdout = io.StringIO()
    call_command(
        "export",
        project.slug,
        "--format",
        "preference",
        "--file-format",
        "parquet",
        "--out",
        str(out),
        "--split",
        "train=0.5,test=0.5",
        "--seed",
        "1",
        "--provenance",
        "human,hybrid,judge",
        "--no-progress",
        stdout=stdout,
    )
    assert (out / "train.parquet").exists() and (out / "test.parquet").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_total"] == 5 and manifest["seed"] == 1
    assert "5 rows" in stdout.getvalue()


def test_cli_refuses_bad_input(project, tmp_path):
    with pytest.raises(CommandError, match="fractions must add up"):
        call_command(
            "export",
            project.slug,
            "--format",
            "raw",
            "--file-format",
            "jsonl",
            "--out",
            str(tmp_path),
            "--split",
            "train=0.5",
            "--no-progress",
        )
    with pytest.raises(CommandError, match="no project"):
        call_command(
            "export",
            "missing",
            "--format",
            "raw",
            "--file-format",
            "jsonl",
            "--out",
            str(tmp_path),
            "--no-progress",
        )


def test_admin_lists_snapshots_and_preferences(client, admin_user, project, pairwise):
    built(project)
    client.force_login(admin_user)
    assert client.get("/admin/exports/snapshot/").status_code == 200
    assert client.get("/admin/exports/preference/").status_code == 200
