"""Import jobs end: one transition function, failures recorded with their reason and the upload
removed, stuck jobs detected, retried or cancelled by managers (API and page)."""

import json
import os
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from annotation import import_jobs
from annotation.import_jobs import (
    import_job_create,
    import_job_execute,
    import_job_state,
    import_job_transition,
)
from annotation.models import ImportJob, Item
from annotation.tasks import import_job_run
from tandem.celery import app as celery_app
from tandem.errors import Conflict

pytestmark = pytest.mark.django_db
ROWS = [{"external_id": f"r{i}", "prompt": f"p{i}", "candidates": ["a", "b"]} for i in range(5)]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    cache.clear()


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def make_job(project, manager, rows=ROWS, text=None) -> ImportJob:
    body = text if text is not None else "".join(json.dumps(r) + "\n" for r in rows)
    upload = SimpleUploadedFile("x.jsonl", body.encode())
    return import_job_create(
        project=project, user=manager, upload=upload, name="x.jsonl", fmt="jsonl"
    )


def stall(job: ImportJob, seconds: int = 120) -> ImportJob:
    """Make ``job`` look as if its worker died ``seconds`` ago."""
    past = timezone.now() - timedelta(seconds=seconds)
    ImportJob.objects.filter(pk=job.pk).update(status="running", started_at=past, attempts=1)
    cache.delete(import_jobs._beat_key(job.pk))
    return ImportJob.objects.get(pk=job.pk)


class TestTransitions:
    def test_only_allowed_edges(self, project, manager):
        job = make_job(project, manager)
        job = import_job_transition(job_id=job.pk, to="running")
        assert job.attempts == 1 and job.started_at
        job = import_job_transition(job_id=job.pk, to="done", result={"rows": 0})
        assert job.finished_at
        for to in ("running", "queued", "failed", "cancelled"):
            with pytest.raises(Conflict):
                import_job_transition(job_id=job.pk, to=to)

    def test_bad_rows_end_the_job_with_their_lines(self, project, manager):
        """A NUL or JSON nested 500 deep used to leave the job running forever."""
        deep: object = 1
        for _ in range(500):
            deep = {"k": deep}
        text = (
            json.dumps(ROWS[0])
            + "\n"
            + json.dumps({**ROWS[1], "prompt": "a\u0000b"})
            + "\n"
            + json.dumps({**ROWS[2], "metadata": deep})
            + "\n"
        )
        job = make_job(project, manager, text=text)
        done = import_job_execute(job_id=job.pk)
        assert done.status == "done" and not done.result["written"]
        assert [e["line"] for e in done.result["errors"]] == [2, 3]
        assert not os.path.exists(job.path) and not Item.objects.exists()

    def test_any_exception_fails_the_job_with_its_reason(
        self, project, manager, monkeypatch, eager
    ):
        def boom(**kwargs):
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(import_jobs, "items_import_file", boom)
        job = make_job(project, manager)
        # As a worker runs it: the exception is the task's failure (eager propagation would
        # raise it before Celery's failure handling, which a worker always does).
        outcome = import_job_run.apply(args=[job.pk], throw=False)
        assert outcome.failed() and isinstance(outcome.result, RuntimeError)
        job.refresh_from_db()
        assert job.status == "failed" and "RuntimeError: disk on fire" in job.error
        assert job.finished_at and not os.path.exists(job.path)

    def test_a_cancel_seen_mid_import_rolls_it_back(self, project, manager, settings):
        settings.TANDEM_IMPORT_BATCH_SIZE = 2
        job = make_job(project, manager)
        cache.set(import_jobs._cancel_key(job.pk), 1)  # as import_job_cancel does first
        done = import_job_execute(job_id=job.pk)
        assert done.status == "cancelled" and not Item.objects.exists()
        assert not os.path.exists(job.path)


class TestStuck:
    def test_a_live_job_is_not_stuck_and_a_silent_one_is(self, project, manager):
        job = make_job(project, manager)
        assert not import_job_state(job)["stuck"]
        job = import_job_transition(job_id=job.pk, to="running")
        import_jobs._beat(job.pk)
        assert not import_job_state(job)["stuck"]
        job = stall(job)
        state = import_job_state(job)
        assert state["stuck"] and state["can_retry"] and state["can_cancel"]

    def test_a_redelivered_task_takes_over_a_stuck_job_only(self, project, manager):
        job = make_job(project, manager)
        job = import_job_transition(job_id=job.pk, to="running")
        import_jobs._beat(job.pk)
        assert import_job_execute(job_id=job.pk).status == "running"  # alive: left alone
        stall(job)
        done = import_job_execute(job_id=job.pk)
        assert done.status == "done" and done.attempts == 2 and Item.objects.count() == 5


class TestApi:
    def url(self, job, verb=""):
        return f"/api/v1/import-jobs/{job.pk}/{verb + '/' if verb else ''}"

    def test_retry_a_stuck_job(
        self, api, project, manager, eager, django_capture_on_commit_callbacks
    ):
        job = stall(make_job(project, manager))
        with django_capture_on_commit_callbacks(execute=True):
            response = api(manager).post(self.url(job, "retry"))
        assert response.status_code == 200 and response.json()["status"] == "queued"
        job.refresh_from_db()
        assert job.status == "done" and job.attempts == 2 and Item.objects.count() == 5

    def test_retry_refused_while_alive_or_ended(self, api, project, manager):
        job = make_job(project, manager)
        response = api(manager).post(self.url(job, "retry"))
        assert response.status_code == 409 and response.json()["error"]["code"] == "job_alive"
        import_job_execute(job_id=job.pk)
        response = api(manager).post(self.url(job, "retry"))
        assert response.status_code == 409 and response.json()["error"]["code"] == "job_state"

    def test_retry_refused_when_the_upload_is_gone(self, api, project, manager):
        job = stall(make_job(project, manager))
        os.unlink(job.path)
        response = api(manager).post(self.url(job, "retry"))
        assert response.status_code == 409 and response.json()["error"]["code"] == "upload_gone"

    def test_cancel(self, api, project, manager, django_capture_on_commit_callbacks):
        job = make_job(project, manager)
        with django_capture_on_commit_callbacks(execute=True):
            response = api(manager).post(self.url(job, "cancel"))
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        assert not os.path.exists(job.path)
        assert import_job_execute(job_id=job.pk).status == "cancelled"  # a late task: nothing
        assert not Item.objects.exists()
        assert api(manager).post(self.url(job, "cancel")).status_code == 409

    def test_only_the_projects_managers(self, api, project, manager, annotator, outsider):
        job = stall(make_job(project, manager))
        for verb in ("retry", "cancel"):
            assert api(annotator).post(self.url(job, verb)).status_code == 404
            assert api(outsider).post(self.url(job, verb)).status_code == 404
            assert api().post(self.url(job, verb)).status_code == 401
            assert api(manager).post(self.url(job, "x" + verb)).status_code == 404
        assert ImportJob.objects.get(pk=job.pk).status == "running"


class TestPage:
    def test_stuck_job_shows_retry_and_cancel(self, client, project, manager, annotator):
        job = stall(make_job(project, manager))
        client.force_login(manager)
        page = client.get(f"/projects/{project.pk}/import-jobs/{job.pk}/", HTTP_HX_REQUEST="true")
        assert b'data-testid="job-stuck"' in page.content and b"Retry" in page.content
        response = client.post(f"/projects/{project.pk}/import-jobs/{job.pk}/cancel/")
        assert response.status_code == 200 and b"cancelled" in response.content
        assert ImportJob.objects.get(pk=job.pk).status == "cancelled"
        response = client.post(f"/projects/{project.pk}/import-jobs/{job.pk}/retry/")
        assert response.status_code == 409
        client.force_login(annotator)
        response = client.post(f"/projects/{project.pk}/import-jobs/{job.pk}/cancel/")
        assert response.status_code == 403
