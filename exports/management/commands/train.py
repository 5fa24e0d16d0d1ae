"""``manage.py train PROJECT --snapshot ID --kind reward|dpo|kto [--base-model PATH]
[--epochs N] [--lora]``: a training job on one of the project's snapshots.

Runs the job here, in the foreground, printing its log as it goes (the same code as the
``gpu`` worker: ``exports.training.jobs.training_job_execute``); ``--queue`` sends it to the
``gpu`` Celery queue instead. Ctrl-C cancels it at the next step.
"""

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotation.models import Project
from exports.models import Snapshot
from exports.training import jobs
from exports.training.models import TrainingJob
from tandem.errors import ApplicationError


class Command(BaseCommand):
    help = "Train a reward model, DPO or KTO on a snapshot of a project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug (or id)")
        parser.add_argument("--snapshot", required=True, type=int, help="the snapshot's id")
        parser.add_argument("--kind", required=True, choices=TrainingJob.Kind.values)
        parser.add_argument(
            "--base-model", help="a local model folder or .gguf file (default TRAINING_BASE_MODEL)"
        )
        parser.add_argument("--epochs", type=float)
        parser.add_argument("--max-steps", type=int)
        parser.add_argument("--learning-rate", type=float)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--lora", action="store_true", help="train LoRA adapters (peft)")
        parser.add_argument(
            "--queue", action="store_true", help="queue it on the gpu queue instead of running here"
        )

    def handle(self, *args, **options) -> None:
        project = self._project(options["project"])
        snapshot = Snapshot.objects.filter(pk=options["snapshot"], project=project).first()
        if snapshot is None:
            raise CommandError(f"project {project.slug} has no snapshot {options['snapshot']}")
        names = ("epochs", "max_steps", "learning_rate", "batch_size", "seed")
        hyperparameters = {n: options[n] for n in names if options[n] is not None}
        if options["lora"]:
            hyperparameters["lora"] = True
        try:
            with transaction.atomic():
                job = jobs.training_job_create(
                    snapshot=snapshot,
                    user=None,
                    kind=options["kind"],
                    base_model=options["base_model"],
                    hyperparameters=hyperparameters,
                    enqueue=options["queue"],
                )
        except ApplicationError as exc:
            raise CommandError(f"{exc.message} {exc.details or ''}".strip()) from None
        if options["queue"]:
            self.stdout.write(f"training job {job.pk} queued on the gpu queue")
            return
        self.stdout.write(f"training job {job.pk}: {job.kind} on snapshot {snapshot.pk}")
        job = self._run(job)
        self.stdout.write(job.log)
        if job.status != TrainingJob.Status.SUCCEEDED:
            raise CommandError(f"training job {job.pk} {job.status}: {job.reason}")
        evaluation = job.metrics.get("evaluation") or {}
        for subset, figures in evaluation.items():
            shown = ", ".join(f"{k} {v}" for k, v in sorted(figures.items()) if k != "rows")
            self.stdout.write(f"test {subset}: {figures.get('rows')} rows, {shown}")
        self.stdout.write(self.style.SUCCESS(f"artifacts: {jobs.training_job_artifacts(job)}"))

    def _run(self, job: TrainingJob) -> TrainingJob:
        started = time.monotonic()
        try:
            jobs.training_job_execute(job_id=job.pk)
        except KeyboardInterrupt:
            jobs.training_job_fail(job_id=job.pk, reason="interrupted (Ctrl-C)")
        job.refresh_from_db()
        self.stdout.write(f"{job.status} in {time.monotonic() - started:.1f} s")
        return job

    def _project(self, key: str) -> Project:
        project = Project.objects.filter(slug=key).first()
        if project is None and key.isdigit():
            project = Project.objects.filter(pk=int(key)).first()
        if project is None:
            raise CommandError(f"no project {key!r}")
        return project
