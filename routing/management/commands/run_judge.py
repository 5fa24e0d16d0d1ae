"""``manage.py run_judge PROJECT --judge NAME [--all]``: run a judge in the foreground.

Exits non-zero when the run did not complete (failed calls, cost cap, cancelled).
"""

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import Project
from routing.judges import selectors, services
from routing.judges.models import JudgeRun
from routing.judges.runner import judge_run_execute
from tandem.errors import ApplicationError


class Command(BaseCommand):
    help = "Label a project's items with an LLM judge (default: the items routed to judges)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("--judge", required=True, help="judge name")
        parser.add_argument("--all", action="store_true", help="every item, not only routed ones")
        parser.add_argument("--order", choices=JudgeRun.OrderMode.values, default="both")
        parser.add_argument("--permutations", type=int, default=2, help="listwise orders")
        parser.add_argument("--cost-cap", type=Decimal, default=None, help="USD")
        parser.add_argument("--no-cache", action="store_true")
        parser.add_argument("--resume", type=int, default=None, metavar="RUN_ID")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        try:
            if o["resume"]:
                run = JudgeRun.objects.get(pk=o["resume"])
                if run.status not in (JudgeRun.Status.PENDING, JudgeRun.Status.RUNNING):
                    run = services.judge_run_resume(run=run, cost_cap=o["cost_cap"], enqueue=False)
            else:
                key = o["project"]
                lookup = {"pk": int(key)} if key.isdigit() else {"slug": key}
                project = Project.objects.filter(**lookup).first()
                if project is None:
                    raise CommandError(f"no project {key!r}")
                run = services.judge_run_create(
                    project=project,
                    judge=selectors.judge_get(name_or_id=o["judge"]),
                    scope=JudgeRun.Scope.ALL if o["all"] else JudgeRun.Scope.ROUTED,
                    order_mode=o["order"],
                    permutations=o["permutations"],
                    cost_cap=o["cost_cap"],
                    use_cache=not o["no_cache"],
                    enqueue=False,
                )
        except JudgeRun.DoesNotExist:
            raise CommandError(f"no judge run {o['resume']}") from None
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"judge run {run.pk}")
        bar = tqdm(total=0, unit="call", disable=o["no_progress"], file=self.stderr._out)

        def progress(current: JudgeRun) -> None:
            bar.total = current.total
            bar.n = current.done + current.failed
            bar.set_postfix(
                failed=current.failed,
                tokens=current.tokens_in + current.tokens_out,
                cost=f"${current.cost:.4f}",
            )
            bar.refresh()

        run = judge_run_execute(run_id=run.pk, on_progress=progress)
        bar.close()
        self.stdout.write(
            f"run {run.pk}: {run.status}; {run.done}/{run.total} done, {run.failed} failed, "
            f"{run.cached} cached, {run.tokens_in}+{run.tokens_out} tokens, ${run.cost:.6f}"
        )
        if run.status != JudgeRun.Status.COMPLETED:
            raise CommandError(f"run {run.pk} did not complete: {run.stop_reason}")
