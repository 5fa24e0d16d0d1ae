"""Background imports: service, API (202 then poll), the web form, and a real worker on Redis."""

import io
import json
import os
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.import_jobs import import_job_create, import_job_execute, import_job_state
from annotation.models import ImportJob, Item
from tandem.celery import app as celery_app

ROWS = [{"external_id": f"r{i}", "prompt": f"p{i}", "candidates": ["a", "b"]} for i in range(5)]


def jsonl(rows, name="items.jsonl") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, "".join(json.dumps(r) + "\n" for r in rows).encode())


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def test_job_runs_once_and_removes_its_file(project, manager, media):
    job = import_job_create(
        project=project, user=manager, upload=jsonl(ROWS), name="x.jsonl", fmt="jsonl"
    )
    assert job.total_rows == 5 and os.path.exists(job.path)

    done = import_job_execute(job_id=job.pk)
    assert done.status == "done" and done.result["created"] == 5
    assert not os.path.exists(job.path)
    assert import_job_state(done)["percent"] == 100.0

    again = import_job_execute(job_id=job.pk)  # a redelivered task does nothing
    assert again.result == done.result and Item.objects.count() == 5


def test_unreadable_file_fails_with_a_reason(project, manager, media, tmp_path):
    bad = SimpleUploadedFile("x.parquet", b"not parquet at all")
    job = ImportJob.objects.create(
        project=project, source_name="x.parquet", path=str(tmp_path / "x.parquet"), format="parquet"
    )
    (tmp_path / "x.parquet").write_bytes(bad.read())
    done = import_job_execute(job_id=job.pk)
    assert done.status == "failed" and "could not read the file" in done.error


def test_api_background_import_answers_202_then_the_job(
    api, project, manager, media, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(manager).post(
            f"/api/v1/projects/{project.id}/items/import/",
            {"file": jsonl(ROWS), "background": "true"},
            format="multipart",
        )
    assert response.status_code == 202
    job_id = response.json()["id"]

    state = api(manager).get(f"/api/v1/import-jobs/{job_id}/").json()
    assert state["status"] == "done" and state["result"]["created"] == 5


def test_big_uploads_go_to_the_background(api, project, manager, media, settings):
    settings.TANDEM_IMPORT_INLINE_MAX_BYTES = 10
    response = api(manager).post(
        f"/api/v1/projects/{project.id}/items/import/", {"file": jsonl(ROWS)}, format="multipart"
    )
    assert response.status_code == 202 and response.json()["status"] == "queued"


def test_import_jobs_are_for_their_projects_managers(
    api, project, manager, annotator, outsider, media
):
    job = import_job_create(
        project=project, user=manager, upload=jsonl(ROWS), name="x.jsonl", fmt="jsonl"
    )
    assert api(manager).get(f"/api/v1/import-jobs/{job.pk}/").status_code == 200
    assert api(annotator).get(f"/api/v1/import-jobs/{job.pk}/").status_code == 404
    assert api(outsider).get(f"/api/v1/import-jobs/{job.pk}/").status_code == 404
    assert api().get(f"/api/v1/import-jobs/{job.pk}/").status_code == 401
    assert [j["id"] for j in api(manager).get("/api/v1/import-jobs/").json()["results"]] == [job.pk]
    assert api(outsider).get("/api/v1/import-jobs/").json()["results"] == []


def test_web_upload_shows_a_polling_progress_bar_then_the_summary(
    client, project, manager, annotator, media, eager, django_capture_on_commit_callbacks
):
    url = f"/projects/{project.id}/import/"
    client.force_login(annotator)
    assert client.post(url, {"file": jsonl(ROWS)}).status_code == 403

    client.force_login(manager)
    rows = [*ROWS, {"external_id": "bad", "prompt": "x", "candidates": ["only one"]}]
    response = client.post(url, {"file": jsonl(rows)}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'hx-trigger="every 1s"' in response.content  # queued: the partial polls
    job = ImportJob.objects.get()

    import_job_execute(job_id=job.pk)
    page = client.get(f"/projects/{project.id}/import-jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert b"every 1s" not in page.content
    assert b"nothing was written" in page.content
    assert b"line 6: a pairwise item needs exactly 2 candidates" in page.content

    bad = client.post(url, {"file": jsonl(ROWS, name="x.txt")}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and b"cannot tell the format" in bad.content


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_imports_through_redis(project, manager, settings, tmp_path):
    """The production path: the task crosses a real Redis broker to a worker thread."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("CELERY_BROKER_URL is not Redis (make test sets it)")
    settings.MEDIA_ROOT = tmp_path
    celery_app.control.purge()  # messages left by an interrupted earlier run
    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=["default"]):
        # transaction=True: on_commit fires at once and the task goes through Redis.
        job = import_job_create(
            project=project,
            user=manager,
            upload=io.BytesIO("".join(json.dumps(r) + "\n" for r in ROWS).encode()),
            name="x.jsonl",
            fmt="jsonl",
        )
        deadline = time.monotonic() + 20
        while job.status != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
            job.refresh_from_db()
    assert job.status == "done" and Item.objects.filter(project=project).count() == 5


def test_import_job_partial_is_for_managers_only(
    client, project, manager, annotator, outsider, media
):
    job = import_job_create(
        project=project, user=manager, upload=jsonl(ROWS), name="x.jsonl", fmt="jsonl"
    )
    path = f"/projects/{project.id}/import-jobs/{job.pk}/"
    assert client.get(path).status_code == 302  # anonymous: to the login page
    client.force_login(outsider)
    assert client.get(path).status_code == 404
    client.force_login(annotator)
    assert client.get(path).status_code == 403
    client.force_login(manager)
    assert client.get(path).status_code == 200
    assert client.get(f"/projects/{project.id}/import-jobs/{job.pk + 1}/").status_code == 404


def test_rejected_import_shows_failed_and_a_done_one_refreshes_the_counters(
    client, project, manager, media
):
    """Regression (issue 17): a file rejected as a whole showed a green "done" badge, and the
    page's counters stayed stale after an import."""
    client.force_login(manager)
    url = f"/projects/{project.id}/import/"
    bad_rows = [*ROWS, {"external_id": "bad", "prompt": "x", "candidates": ["only one"]}]
    client.post(url, {"file": jsonl(bad_rows)}, HTTP_HX_REQUEST="true")
    rejected = ImportJob.objects.get()
    import_job_execute(job_id=rejected.pk)
    page = client.get(f"/projects/{project.id}/import-jobs/{rejected.pk}/", HTTP_HX_REQUEST="true")
    assert b'<span class="badge failed">rejected</span>' in page.content
    assert b"badge done" not in page.content

    client.post(url, {"file": jsonl(ROWS)}, HTTP_HX_REQUEST="true")
    done = ImportJob.objects.latest("id")
    queued = client.get(f"/projects/{project.id}/import-jobs/{done.pk}/", HTTP_HX_REQUEST="true")
    assert b"hx-swap-oob" not in queued.content  # still running: counters unchanged
    import_job_execute(job_id=done.pk)
    page = client.get(f"/projects/{project.id}/import-jobs/{done.pk}/", HTTP_HX_REQUEST="true")
    html = page.content.decode()
    assert '<span class="badge done">done</span>' in html
    assert 'id="project-stats" hx-swap-oob="true"' in html
    assert '<dd data-testid="n-items">5</dd>' in html


def test_web_import_records_trl_labels_only_from_the_named_source(
    client, project, manager, media, eager, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    trl = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(2)]
    url = f"/projects/{project.id}/import/"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"file": jsonl(trl)}, HTTP_HX_REQUEST="true")
    assert Item.objects.count() == 2 and not project.annotations.exists()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            url,
            {
                "file": jsonl([{"prompt": "q", "chosen": "c", "rejected": "r"}]),
                "preference_source": "judge",
            },
            HTTP_HX_REQUEST="true",
        )
    assert list(project.annotations.values_list("source", flat=True)) == ["judge"]
    bad = client.post(
        url, {"file": jsonl(trl), "preference_source": "robot"}, HTTP_HX_REQUEST="true"
    )
    assert bad.status_code == 400
