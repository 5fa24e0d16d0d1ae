"""Training jobs: reward, DPO and KTO end to end through the Celery task (eager, CPU, a tiny
randomly initialised GPT-2 and a tokenizer trained here), cancel, bad snapshots, a SIGKILLed
worker, the lifecycle, and permissions on every endpoint and page."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from annotation.models import Membership
from exports import snapshots
from exports.models import Snapshot
from exports.training import jobs
from exports.training.data import snapshot_read
from exports.training.models import TrainingJob
from exports.training.plots import curve_svg
from exports.training.trainer import HyperparameterError, hyperparameters_check
from tandem.celery import app as celery_app
from tandem.errors import Conflict, InvalidInput
from tests.exports.tiny_models import kto_rows, pair_rows, snapshot_folder, tiny_model
from tests.factories import MembershipFactory, UserFactory

pytest.importorskip("trl")

FAST = {"max_steps": 3, "batch_size": 4, "eval_batch_size": 4, "learning_rate": 1e-3}


@pytest.fixture(scope="session")
def base_model(tmp_path_factory) -> str:
    return str(tiny_model(tmp_path_factory.mktemp("tiny") / "gpt2"))


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def roots(settings, tmp_path):
    settings.EXPORTS_ROOT = tmp_path / "exports"
    settings.TRAINING_ROOT = tmp_path / "training"
    return settings


def snapshot_of(project, fmt: str, splits: dict, file_format: str = "jsonl") -> Snapshot:
    """A done snapshot whose folder holds ``splits`` in ``fmt``, as the builder lays it out."""
    snapshot = Snapshot.objects.create(
        project=project, status="done", format=fmt, file_format=file_format
    )
    folder = f"project-{project.pk}/snapshot-{snapshot.pk}"
    snapshot_folder(Path(django_settings.EXPORTS_ROOT) / folder, fmt, splits, file_format)
    snapshot.folder = folder
    snapshot.save(update_fields=["folder"])
    return snapshot


KINDS = {
    "reward": ("reward", pair_rows),
    "dpo": ("preference", pair_rows),
    "kto": ("kto", kto_rows),
}


def create_and_run(snapshot, kind, base_model, capture, **hp):
    with capture(execute=True):
        job = jobs.training_job_create(
            snapshot=snapshot,
            user=None,
            kind=kind,
            base_model=base_model,
            hyperparameters={**FAST, **hp},
        )
    job.refresh_from_db()
    return job


# --- end to end through the Celery task -------------------------------------------------


@pytest.mark.parametrize("kind", ["reward", "dpo", "kto"])
def test_a_job_trains_evaluates_and_writes_its_artifacts(
    kind, project, roots, eager, base_model, django_capture_on_commit_callbacks
):
    fmt, rows = KINDS[kind]
    snapshot = snapshot_of(
        project, fmt, {"train": rows(8), "test": rows(4, provenance="mixed")}, "parquet"
    )
    job = create_and_run(snapshot, kind, base_model, django_capture_on_commit_callbacks)

    assert job.status == "succeeded", job.reason + job.log
    assert job.started_at and job.finished_at and job.heartbeat_at and job.attempts == 1
    metrics = job.metrics
    assert [p["step"] for p in metrics["curve"]] == [1, 2, 3]
    assert all(isinstance(p["loss"], float) for p in metrics["curve"])
    evaluation = metrics["evaluation"]
    assert set(evaluation) == {"all", "human", "judge"}
    rows_per_item = 2 if kind == "kto" else 1
    assert evaluation["all"]["rows"] == 4 * rows_per_item
    assert evaluation["human"]["rows"] == evaluation["judge"]["rows"] == 2 * rows_per_item
    assert "margin" in evaluation["all"]
    if kind != "kto":
        assert 0.0 <= evaluation["all"]["accuracy"] <= 1.0
    else:
        assert {"reward_desirable", "reward_undesirable"} <= set(evaluation["all"])
    assert "step 3/3" in job.log and "test (human" in job.log

    folder = Path(django_settings.TRAINING_ROOT) / job.artifacts
    assert job.artifacts == f"project-{project.pk}/job-{job.pk}"
    assert (folder / "model" / "config.json").is_file()
    assert (folder / "model" / "tokenizer.json").is_file()
    assert orjson.loads((folder / "metrics.json").read_bytes())["evaluation"] == evaluation
    assert orjson.loads((folder / "manifest.json").read_bytes())["format"] == fmt
    assert not (folder / "trainer").exists()  # no checkpoints left behind


def test_a_dpo_job_with_lora_saves_the_adapter(
    project, roots, eager, base_model, django_capture_on_commit_callbacks
):
    snapshot = snapshot_of(project, "preference", {"train": pair_rows(8), "test": pair_rows(2)})
    job = create_and_run(snapshot, "dpo", base_model, django_capture_on_commit_callbacks, lora=True)
    assert job.status == "succeeded", job.reason + job.log
    model = Path(django_settings.TRAINING_ROOT) / job.artifacts / "model"
    assert (model / "adapter_config.json").is_file()
    assert job.hyperparameters["lora"] is True


def test_a_reward_job_trains_on_a_real_snapshot(
    project, pairwise, roots, eager, base_model, django_capture_on_commit_callbacks
):
    """The snapshot builder's own files, read as written: no second conversion path."""
    snapshot = snapshots.snapshot_build(
        snapshot_id=snapshots.snapshot_create(
            project=project, user=None, format="reward", file_format="jsonl"
        ).pk
    )
    assert snapshot.status == "done"
    job = create_and_run(snapshot, "reward", base_model, django_capture_on_commit_callbacks)
    assert job.status == "succeeded", job.reason + job.log
    assert job.metrics["rows"]["train"] == snapshot.rows["train"]


@pytest.mark.parametrize("file_format", ["jsonl", "parquet", "csv", "hf"])
def test_every_file_format_of_a_real_snapshot_reads(project, pairwise, roots, file_format):
    snapshot = snapshots.snapshot_build(
        snapshot_id=snapshots.snapshot_create(
            project=project,
            user=None,
            format="preference",
            file_format=file_format,
            splits={"train": 0.5, "test": 0.5},
        ).pk
    )
    data = snapshot_read(Path(django_settings.EXPORTS_ROOT) / snapshot.folder, "dpo")
    assert {n: len(d) for n, d in data.splits.items()} == {
        n: c for n, c in snapshot.rows.items() if c
    }
    row = data.splits["train"][0]
    assert isinstance(row["prompt"], str) and isinstance(row["chosen"], str)
    assert row["provenance"] in ("human", "judge", "hybrid")


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_stops_a_running_job_at_the_next_step(
    project, roots, eager, base_model, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(jobs, "FLUSH_SECONDS", 0.0)
    log = jobs.JobReporter.log

    def log_and_cancel(self, line):
        log(self, line)
        if line.startswith("step 2/"):  # a person presses Cancel while it trains
            jobs.training_job_cancel(job=TrainingJob.objects.get(pk=self.job_id))

    monkeypatch.setattr(jobs.JobReporter, "log", log_and_cancel)
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(40), "test": pair_rows(2)})
    job = create_and_run(
        snapshot, "reward", base_model, django_capture_on_commit_callbacks, max_steps=50
    )
    assert job.status == "cancelled" and job.cancel_requested
    # Cancelled after step 2 was logged; the trainer stops at the end of the step it is in.
    assert job.reason == "cancelled at step 3"
    assert [p["step"] for p in job.metrics["curve"]] == [1, 2, 3]
    assert "cancelled at step 3" in job.log
    assert not (Path(django_settings.TRAINING_ROOT) / f"project-{project.pk}").exists() or not any(
        (Path(django_settings.TRAINING_ROOT) / f"project-{project.pk}").iterdir()
    )


def test_a_queued_job_is_cancelled_at_once_and_never_runs(
    project, roots, eager, base_model, django_capture_on_commit_callbacks
):
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(4)})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = jobs.training_job_create(
            snapshot=snapshot, user=None, kind="reward", base_model=base_model
        )
    job = jobs.training_job_cancel(job=job)
    assert job.status == "cancelled" and job.reason == "cancelled before it started"
    for callback in callbacks:  # the task arrives later: it leaves the job as it is
        callback()
    job.refresh_from_db()
    assert job.status == "cancelled" and job.started_at is None
    with pytest.raises(Conflict):
        jobs.training_job_cancel(job=job)


# --- bad input: refused at create, or failed with the reason ----------------------------------


def test_a_job_on_a_snapshot_of_the_wrong_format_is_refused(project, roots, base_model):
    snapshot = snapshot_of(project, "kto", {"train": kto_rows(4)})
    with pytest.raises(InvalidInput, match="a reward job trains on a reward or preference"):
        jobs.training_job_create(snapshot=snapshot, user=None, kind="reward", base_model=base_model)


def test_a_job_whose_snapshot_files_are_of_the_wrong_format_fails_with_the_reason(
    project, roots, eager, base_model, django_capture_on_commit_callbacks
):
    snapshot = snapshot_of(project, "preference", {"train": pair_rows(4)})
    manifest = Path(django_settings.EXPORTS_ROOT) / snapshot.folder / "manifest.json"
    manifest.write_bytes(orjson.dumps({"format": "kto", "file_format": "jsonl"}))
    job = create_and_run(snapshot, "dpo", base_model, django_capture_on_commit_callbacks)
    assert job.status == "failed"
    assert job.reason == (
        "a dpo job trains on a preference or reward or listwise-pairs snapshot; this one is kto"
    )
    assert "failed: a dpo job" in job.log


def test_a_job_on_an_empty_train_split_fails_with_the_reason(
    project, roots, eager, base_model, django_capture_on_commit_callbacks
):
    snapshot = snapshot_of(project, "reward", {"train": [], "test": pair_rows(2)})
    job = create_and_run(snapshot, "reward", base_model, django_capture_on_commit_callbacks)
    assert job.status == "failed"
    assert job.reason.startswith("the snapshot's train split is empty: nothing to train on")
    assert not (Path(django_settings.TRAINING_ROOT) / f"project-{project.pk}/job-{job.pk}").exists()


def test_a_job_whose_base_model_is_missing_fails_with_the_reason(
    project, roots, eager, tmp_path, django_capture_on_commit_callbacks
):
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(4)})
    job = create_and_run(
        snapshot, "reward", str(tmp_path / "nowhere"), django_capture_on_commit_callbacks
    )
    assert job.status == "failed" and "is not a local folder" in job.reason


def test_an_unexpected_error_fails_the_job_through_on_failure(
    project, roots, eager, base_model, django_capture_on_commit_callbacks, monkeypatch
):
    def boom(**kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(jobs, "training_run", boom)
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(4)})
    with pytest.raises(RuntimeError):
        create_and_run(snapshot, "reward", base_model, django_capture_on_commit_callbacks)
    job = TrainingJob.objects.get(snapshot=snapshot)
    assert job.status == "failed" and job.reason == "RuntimeError: CUDA out of memory"
    assert "failed: RuntimeError: CUDA out of memory" in job.log


@pytest.mark.parametrize(
    ("given", "bad"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"lora": "yes"}, "lora"),
        ({"nonsense": 1}, "nonsense"),
        ({"learning_rate": "fast"}, "learning_rate"),
    ],
)
def test_bad_hyperparameters_are_named(given, bad):
    with pytest.raises(HyperparameterError) as caught:
        hyperparameters_check("reward", given)
    assert bad in caught.value.details


def test_hyperparameters_get_the_kinds_defaults():
    assert hyperparameters_check("dpo", {})["learning_rate"] == 5e-6
    assert hyperparameters_check("reward", {"epochs": 2})["epochs"] == 2.0


def test_hub_names_and_unfinished_snapshots_are_refused(project, roots):
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(4)})
    with pytest.raises(InvalidInput, match="hub names are not downloaded"):
        jobs.training_job_create(snapshot=snapshot, user=None, kind="reward", base_model="gpt2")
    snapshot.status = "running"
    snapshot.save(update_fields=["status"])
    with pytest.raises(Conflict):
        jobs.training_job_create(snapshot=snapshot, user=None, kind="reward", base_model="/m")


# --- lifecycle and a dead worker ----------------------------------------------------------


def test_the_lifecycle_allows_only_its_edges(project, roots):
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(4)})
    job = jobs.training_job_create(
        snapshot=snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    with pytest.raises(Conflict):
        jobs.training_job_transition(job_id=job.pk, to="succeeded")
    jobs.training_job_transition(job_id=job.pk, to="running")
    done = jobs.training_job_transition(job_id=job.pk, to="succeeded")
    assert done.finished_at is not None
    for to in ("running", "failed", "cancelled"):
        with pytest.raises(Conflict):
            jobs.training_job_transition(job_id=job.pk, to=to)
    assert jobs.training_job_fail(job_id=job.pk, reason="late") is None  # an ended job stays


def test_a_redelivered_task_fails_a_job_whose_worker_died(project, roots, settings):
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(4)})
    job = jobs.training_job_create(
        snapshot=snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    jobs.training_job_transition(job_id=job.pk, to="running", worker="gpu-1:42")
    settings.TRAINING_HEARTBEAT_TIMEOUT = 300
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=django_now())
    assert jobs.training_job_execute(job_id=job.pk).status == "running"  # alive: left alone
    settings.TRAINING_HEARTBEAT_TIMEOUT = 0
    job = jobs.training_job_execute(job_id=job.pk)
    assert job.status == "failed" and job.reason.startswith("worker lost: gpu-1:42")


def django_now():
    from django.utils import timezone

    return timezone.now()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sigkilled_worker_leaves_its_job_failed_with_the_reason(
    project, roots, base_model, tmp_path
):
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs the test database on a server")
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(40)})
    job = jobs.training_job_create(
        snapshot=snapshot,
        user=None,
        kind="reward",
        base_model=base_model,
        hyperparameters={**FAST, "max_steps": 100_000},
        enqueue=False,
    )
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "EXPORTS_ROOT": str(roots.EXPORTS_ROOT),
        "TRAINING_ROOT": str(roots.TRAINING_ROOT),
    }
    worker = subprocess.Popen(  # a worker process running the task, as a Celery worker would
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from exports.training.tasks import training_job_run;"
            f" training_job_run.apply(args=[{job.pk}])",
        ],
        env=env,
        cwd=django_settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status == "running" and "step " in job.log:
                break
            assert worker.poll() is None, "the worker ended by itself"
            time.sleep(0.5)
        else:
            pytest.fail("the job never started training")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    job.refresh_from_db()
    assert job.status == "running"  # nobody left to say otherwise...
    assert jobs.training_jobs_fail_stale(timeout=0) == 1  # ...until the reaper looks
    job.refresh_from_db()
    assert job.status == "failed" and job.reason.startswith("worker lost:")
    assert "step " in job.log  # the log keeps how far it got
    assert jobs.training_jobs_fail_stale(timeout=0) == 0


# --- the curve ----------------------------------------------------------------------------


def test_the_curve_is_drawn_from_two_points():
    assert curve_svg([{"step": 1, "loss": 1.0}]) is None
    plot = curve_svg([{"step": 1, "loss": 1.0, "accuracy": 0.5}, {"step": 2, "loss": 0.5}])
    assert plot["loss"].count(",") == 2 and plot["accuracy"] == ""
    assert plot["loss_high"] == "1" and plot["loss_low"] == "0.5"


# --- API ----------------------------------------------------------------------------------

URL = "/api/v1/training-jobs/"


@pytest.fixture
def done_snapshot(project, roots):
    return snapshot_of(project, "reward", {"train": pair_rows(4)})


def test_a_manager_creates_lists_reads_and_cancels_a_job(
    api, manager, done_snapshot, base_model, django_capture_on_commit_callbacks
):
    client = api(manager)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            URL,
            {
                "snapshot": done_snapshot.pk,
                "kind": "reward",
                "base_model": base_model,
                "hyperparameters": {"epochs": 2, "lora": True},
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["hyperparameters"]["epochs"] == 2.0
    assert body["hyperparameters"]["lora"] is True and body["project"] == done_snapshot.project_id
    assert len(callbacks) == 1  # the task goes out after commit
    listed = client.get(URL).json()["results"]
    assert [j["id"] for j in listed] == [body["id"]] and "log" not in listed[0]
    detail = client.get(f"{URL}{body['id']}/").json()
    assert detail["metrics"] == {} and detail["log"] == ""
    cancelled = client.post(f"{URL}{body['id']}/cancel/").json()
    assert cancelled["status"] == "cancelled"
    again = client.post(f"{URL}{body['id']}/cancel/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "ppo"}, "kind"),
        ({"hyperparameters": {"epochs": -1}}, "epochs"),
        ({"base_model": "meta-llama/Llama-3-8B"}, "base_model"),
        ({"kind": "kto"}, "format"),
    ],
)
def test_bad_input_answers_400_in_the_error_shape(api, manager, done_snapshot, payload, field):
    data = {"snapshot": done_snapshot.pk, "kind": "reward", "base_model": "/m", **payload}
    response = api(manager).post(URL, data, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in str(error)
    assert not TrainingJob.objects.exists()


def test_others_get_404_on_every_endpoint(api, project, annotator, outsider, done_snapshot):
    job = jobs.training_job_create(
        snapshot=done_snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    for user in (annotator, outsider):
        client = api(user)
        create = client.post(
            URL, {"snapshot": done_snapshot.pk, "kind": "reward", "base_model": "/m"}, "json"
        )
        assert create.status_code == 404
        assert client.get(URL).json()["results"] == []
        assert client.get(f"{URL}{job.pk}/").status_code == 404
        assert client.post(f"{URL}{job.pk}/cancel/").status_code == 404
    assert api().get(URL).status_code in (401, 403)
    job.refresh_from_db()
    assert job.status == "queued" and TrainingJob.objects.count() == 1


def test_a_manager_of_another_project_gets_404(api, done_snapshot):
    other = UserFactory(role="manager")
    MembershipFactory(user=other, role=Membership.Role.MANAGER)  # manages some other project
    job = jobs.training_job_create(
        snapshot=done_snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    assert api(other).get(f"{URL}{job.pk}/").status_code == 404


def test_admins_see_every_job(api, admin_user, done_snapshot):
    job = jobs.training_job_create(
        snapshot=done_snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    assert api(admin_user).get(f"{URL}{job.pk}/").status_code == 200


def test_the_list_is_filtered_and_its_queries_do_not_grow(
    api, manager, done_snapshot, django_assert_max_num_queries
):
    for _ in range(5):
        jobs.training_job_create(
            snapshot=done_snapshot, user=None, kind="reward", base_model="/m", enqueue=False
        )
    client = api(manager)
    with django_assert_max_num_queries(4):
        body = client.get(URL, {"project": done_snapshot.project_id}).json()
    assert len(body["results"]) == 5
    assert client.get(URL, {"snapshot": done_snapshot.pk + 1}).json()["results"] == []
    assert client.get(URL, {"project": "x"}).json()["results"] == []


# --- pages and the CLI --------------------------------------------------------------------


def test_the_job_page_shows_the_log_and_the_curve_and_polls_while_it_runs(
    client, manager, done_snapshot, django_assert_max_num_queries
):
    job = jobs.training_job_create(
        snapshot=done_snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    curve = [{"step": 1, "loss": 0.7, "accuracy": 0.5}, {"step": 2, "loss": 0.6, "accuracy": 1}]
    jobs.training_job_transition(
        job_id=job.pk,
        to="running",
        log="12:00:00 step 2/9: loss 0.6 <script>x</script>",
        metrics={"curve": curve, "last": curve[-1]},
    )
    client.force_login(manager)
    url = f"/projects/{done_snapshot.project_id}/training-jobs/{job.pk}/"
    page = client.get(url)
    html = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in html and "<polyline" in html and 'hx-trigger="every 2s"' in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    partial = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="progress"') and "<html" not in partial
    with django_assert_max_num_queries(6):
        listing = client.get(f"/projects/{done_snapshot.project_id}/training-jobs/")
    assert listing.status_code == 200 and f"#{job.pk}" in listing.content.decode()
    cancel = client.post(f"{url}cancel/")
    assert cancel.status_code == 302
    job.refresh_from_db()
    assert job.cancel_requested and job.status == "running"


def test_pages_answer_404_to_annotators_and_strangers(client, annotator, outsider, done_snapshot):
    job = jobs.training_job_create(
        snapshot=done_snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    pid = done_snapshot.project_id
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.get(f"/projects/{pid}/training-jobs/").status_code == 404
        assert client.get(f"/projects/{pid}/training-jobs/{job.pk}/").status_code == 404
        assert client.post(f"/projects/{pid}/training-jobs/{job.pk}/cancel/").status_code == 404
        train = client.post(
            f"/projects/{pid}/snapshots/{done_snapshot.pk}/train/",
            {"kind": "reward", "base_model": "/m"},
        )
        assert train.status_code == 404
    assert TrainingJob.objects.count() == 1


def test_the_train_button_beside_a_snapshot_queues_a_job(
    client, manager, done_snapshot, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    pid = done_snapshot.project_id
    page = client.get(f"/projects/{pid}/snapshots/").content.decode()
    assert f"/projects/{pid}/snapshots/{done_snapshot.pk}/train/" in page
    assert '<select name="kind"' in page and '<option value="dpo">DPO</option>' in page
    assert '<option value="kto">KTO</option>' not in page  # a reward snapshot: no KTO
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            f"/projects/{pid}/snapshots/{done_snapshot.pk}/train/",
            {"kind": "reward", "base_model": "/models/mini", "epochs": "2", "lora": "1"},
        )
    job = TrainingJob.objects.get()
    assert response.status_code == 302 and response.url.endswith(f"/training-jobs/{job.pk}/")
    assert job.hyperparameters["epochs"] == 2.0 and job.hyperparameters["lora"] is True
    # Once trained, the snapshot's row shows the job's test accuracy, people's and judges'.
    jobs.training_job_transition(job_id=job.pk, to="running")
    evaluation = {"all": {"rows": 4, "accuracy": 0.75}, "human": {"rows": 2, "accuracy": 1.0}}
    jobs.training_job_transition(job_id=job.pk, to="succeeded", metrics={"evaluation": evaluation})
    page = client.get(f"/projects/{pid}/snapshots/").content.decode()
    assert f"job #{job.pk}</a> (Reward model), test accuracy" in page
    assert "0.750" in page and "(people 1.000)" in page
    bad = client.post(
        f"/projects/{pid}/snapshots/{done_snapshot.pk}/train/", {"kind": "reward", "epochs": "x"}
    )
    assert bad.status_code == 400


def test_manage_py_train_runs_a_job_in_the_foreground(project, roots, base_model, capsys):
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(8), "test": pair_rows(2)})
    call_command(
        "train",
        project.slug,
        "--snapshot",
        str(snapshot.pk),
        "--kind",
        "reward",
        "--base-model",
        base_model,
        "--max-steps",
        "2",
        "--batch-size",
        "4",
    )
    out = capsys.readouterr().out
    assert "succeeded in" in out and "test all: 2 rows, accuracy" in out and "artifacts:" in out
    job = TrainingJob.objects.get()
    assert job.status == "succeeded" and job.hyperparameters["max_steps"] == 2
    with pytest.raises(CommandError, match="a kto job trains on a kto snapshot"):
        call_command("train", project.slug, "--snapshot", str(snapshot.pk), "--kind", "kto")
    with pytest.raises(CommandError, match="has no snapshot"):
        call_command("train", project.slug, "--snapshot", "999999", "--kind", "reward")


def test_the_web_app_starts_without_importing_the_training_libraries():
    """The training libraries are the ``train`` extra: only a job imports them."""
    code = (
        "import sys, django; django.setup(); import tandem.urls, exports.tasks;"
        " from django.core.management import call_command; call_command('check');"
        " print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
