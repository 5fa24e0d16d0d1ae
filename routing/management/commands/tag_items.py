"""``manage.py tag_items PROJECT [--judge NAME] [--all]``: LLM tags of a project's prompts.

Exits non-zero when some items got no tags (failed calls or answers that did not follow the
schema); run it again to retry them (tagged items are skipped, stored answers are not paid twice).
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import Project
from routing.judges import selectors
from routing.router import tagging
from tandem.errors import ApplicationError


class Command(BaseCommand):
    help = "Tag a project's prompts with an LLM judge (domain, complexity, safety, ...)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug or id")
        parser.add_argument(
            "--judge", default=None, help="judge name (default: the policy's tagging_judge)"
        )
        parser.add_argument(
            "--all", action="store_true", help="tag every item again, not only untagged ones"
        )
        parser.add_argument("--no-cache", action="store_true")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        key = o["project"]
        lookup = {"pk": int(key)} if key.isdigit() else {"slug": key}
        project = Project.objects.filter(**lookup).first()
        if project is None:
            raise CommandError(f"no project {key!r}")
        bar = tqdm(total=0, unit="item", disable=o["no_progress"], file=self.stderr._out)

        def progress(report: tagging.TagReport) -> None:
            bar.total = report.total
            bar.n = report.progress
            bar.set_postfix(tokens=report.tokens_in + report.tokens_out, cost=f"${report.cost:.4f}")
            bar.refresh()

        try:
            judge = selectors.judge_get(name_or_id=o["judge"]) if o["judge"] else None
            report = tagging.project_tag_items(
                project=project,
                judge=judge,
                retag=o["all"],
                use_cache=not o["no_cache"],
                on_progress=progress,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        finally:
            bar.close()
        self.stdout.write(
            f"tags by {report.judge}: {report.tagged} tagged ({report.cached} from the cache), "
            f"{report.already} already tagged, {report.unparsed} unparseable, "
            f"{report.failed} failed, of {report.total}; "
            f"{report.tokens_in}+{report.tokens_out} tokens, ${report.cost:.6f}"
        )
        for error in report.errors[:10]:
            self.stderr.write(f"  item {error['item']}: {error['kind']}: {error['error']}")
        if report.unparsed or report.failed:
            raise CommandError(f"{report.unparsed + report.failed} items got no tags")
