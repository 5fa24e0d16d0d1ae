"""A succeeded reward-model job as a router feature: the scoring task (eager, CPU, the tiny
randomly initialised model of the training tests) writes one margin per item, a re-run replaces
them, a killed run resumes, and the "Use for routing" action and button are for managers only."""

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from exports.training import jobs, routing_scores
from exports.training.models import TrainingJob
from exports.training.trainer import TrainingError
from routing.router.models import ItemRewardMargin, RewardFeature
from tandem.errors import Conflict
from tests.exports import test_training as training
from tests.exports.tiny_models import WORDS, pair_rows
from tests.factories import ItemFactory, MembershipFactory, UserFactory

pytest.importorskip("trl")

# The training tests' fixtures and helpers: the tiny model, eager Celery, the folders.
base_model, eager, roots = training.base_model, training.eager, training.roots
create_and_run, snapshot_of = training.create_and_run, training.snapshot_of

URL = "/api/v1/training-jobs/"


@pytest.fixture
def reward_job(project, roots, eager, base_model, django_capture_on_commit_callbacks):
    """A succeeded reward job on ``project``, which has five pairwise items."""
    project.task_type = "pairwise"
    project.save(update_fields=["task_type"])
    for i in range(5):
        ItemFactory(
            project=project,
            prompt=f"please explain {WORDS[i]} ",
            candidates=["the answer is good and clear", f"the answer is bad {WORDS[i]}"],
        )
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(8), "test": pair_rows(2)})
    job = create_and_run(snapshot, "reward", base_model, django_capture_on_commit_callbacks)
    assert job.status == "succeeded", job.reason + job.log
    return job


def _register(job, capture, user=None):
    with capture(execute=True):
        return routing_scores.reward_routing_register(job=job, user=user)


def _margins(project) -> dict[int, float]:
    return dict(
        ItemRewardMargin.objects.filter(item__project=project).values_list("item_id", "margin")
    )


def test_the_task_scores_every_item_and_a_rerun_replaces(
    project, reward_job, django_capture_on_commit_callbacks
):
    from exports.training.scoring import pair_margins, scorer_load

    feature = _register(reward_job, django_capture_on_commit_callbacks)
    feature.refresh_from_db()
    assert feature.status == "ready" and feature.scored == feature.total == 5
    assert feature.model_key == f"training-job-{reward_job.pk}"
    margins = _margins(project)
    assert len(margins) == 5
    # Each margin is score(A) - score(B) of the job's model, as trained (prompt + response).
    scorer = scorer_load(Path(django_settings.TRAINING_ROOT) / reward_job.artifacts / "model")
    items = project.items.order_by("pk")
    expected = pair_margins(
        scorer, [(it.prompt, *(c.text for c in it.candidates.order_by("position"))) for it in items]
    )
    assert [margins[it.pk] for it in items] == pytest.approx(expected, abs=1e-5)
    assert len(set(margins.values())) > 1  # a random model still tells the items apart

    again = _register(reward_job, django_capture_on_commit_callbacks)
    assert again.pk == feature.pk and ItemRewardMargin.objects.count() == 5
    assert _margins(project) == pytest.approx(margins)
    assert RewardFeature.objects.get().status == "ready"


def test_a_killed_run_resumes_and_a_retried_task_adds_nothing(
    project, reward_job, django_capture_on_commit_callbacks, monkeypatch
):
    feature = _register(reward_job, django_capture_on_commit_callbacks)
    full = _margins(project)
    # As if the worker died after two batches of one: registration scoring, three items left.
    kept = sorted(full)[:2]
    ItemRewardMargin.objects.exclude(item_id__in=kept).delete()
    RewardFeature.objects.filter(pk=feature.pk).update(status="scoring", scored=2)
    from exports.training import scoring

    scored_batches = []
    real = scoring.pair_margins

    def counting(scorer, pairs, batch_size=16):
        scored_batches.append(len(pairs))
        return real(scorer, pairs, batch_size)

    monkeypatch.setattr(scoring, "pair_margins", counting)
    assert routing_scores.reward_margins_compute(feature_id=feature.pk, batch_items=1) == "ready"
    assert scored_batches == [1, 1, 1]  # only the three without a margin
    assert _margins(project) == pytest.approx(full)
    # The task delivered once more: the registration is ready, nothing is scored or added.
    assert routing_scores.reward_margins_compute(feature_id=feature.pk) == "ready"
    assert scored_batches == [1, 1, 1] and ItemRewardMargin.objects.count() == 5


def test_a_missing_model_fails_the_registration_with_the_reason(
    project, reward_job, django_capture_on_commit_callbacks
):
    import shutil

    shutil.rmtree(Path(django_settings.TRAINING_ROOT) / reward_job.artifacts / "model")
    with django_capture_on_commit_callbacks(execute=False):
        feature = routing_scores.reward_routing_register(job=reward_job, user=None)
    with pytest.raises(TrainingError, match="no reward model"):
        routing_scores.reward_margins_compute(feature_id=feature.pk)
    feature.refresh_from_db()
    assert feature.status == "failed" and "no reward model" in feature.error


def test_only_a_succeeded_reward_job_registers(project, roots):
    snapshot = snapshot_of(project, "reward", {"train": pair_rows(4)})
    job = jobs.training_job_create(
        snapshot=snapshot, user=None, kind="reward", base_model="/m", enqueue=False
    )
    with pytest.raises(Conflict, match="is queued"):
        routing_scores.reward_routing_register(job=job, user=None)
    job.kind, job.status, job.artifacts = "dpo", "succeeded", "x"
    with pytest.raises(Conflict, match="only a reward model"):
        routing_scores.reward_routing_register(job=job, user=None)
    assert not RewardFeature.objects.exists()


# --- the API action and the button: managers only -----------------------------------------


def test_a_manager_registers_through_the_api_and_others_get_404(
    api, manager, annotator, outsider, admin_user, reward_job, django_capture_on_commit_callbacks
):
    path = f"{URL}{reward_job.pk}/use-for-routing/"
    other = UserFactory(role="manager")
    MembershipFactory(user=other, role="manager")  # manages another project
    for user in (annotator, outsider, other):
        assert api(user).post(path).status_code == 404
    assert api().post(path).status_code in (401, 403)
    assert not RewardFeature.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api(manager).post(path)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["training_job_id"] == reward_job.pk and body["status"] == "scoring"
    assert RewardFeature.objects.get().status == "ready"  # the task ran (eager)
    with django_capture_on_commit_callbacks(execute=False):
        assert api(admin_user).post(path).status_code == 202
    TrainingJob.objects.filter(pk=reward_job.pk).update(kind="dpo")
    refused = api(manager).post(path)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"


def test_the_use_for_routing_button(
    client, manager, annotator, outsider, reward_job, django_capture_on_commit_callbacks
):
    pid = reward_job.project_id
    page_url = f"/projects/{pid}/training-jobs/{reward_job.pk}/"
    action = f"{page_url}use-for-routing/"
    anonymous = client.post(action)
    assert anonymous.status_code == 302 and "/login" in anonymous.url
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.post(action).status_code == 404
        assert client.get(action).status_code == 405
    assert not RewardFeature.objects.exists()
    client.force_login(manager)
    assert action in client.get(page_url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(action)
    assert response.status_code == 302 and response.url.endswith(f"/projects/{pid}/routing/")
    page = client.get(response.url).content.decode()
    assert f"job #{reward_job.pk}" in page and "5 of 5 items scored" in page
    # A job that is not a succeeded reward model has no button.
    TrainingJob.objects.filter(pk=reward_job.pk).update(kind="dpo")
    assert action not in client.get(page_url).content.decode()
