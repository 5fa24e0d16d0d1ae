"""``manage.py export PROJECT --format F --file-format FF --out DIR``: a dataset into DIR.

Writes one file per split (``DIR/train.parquet``, ``DIR/test.parquet``; or a Hugging Face
folder) and ``DIR/manifest.json``, through the same code as snapshots (``exports.builder``).
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotation.models import Project
from exports.builder import STYLES, export_spec, export_write
from exports.formats import FORMATS, PAIR_MODES
from exports.writers import FILE_FORMATS
from tandem.errors import ApplicationError


class Command(BaseCommand):
    help = "Export a project's labels as a dataset (TRL preference, KTO, reward, pairs, raw)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug (or id)")
        parser.add_argument("--format", required=True, choices=list(FORMATS))
        parser.add_argument("--file-format", required=True, choices=FILE_FORMATS)
        parser.add_argument("--out", required=True, type=Path, help="folder to write into")
        parser.add_argument("--split", default="train=1", help="e.g. train=0.9,test=0.1")
        parser.add_argument("--seed", type=int, default=0, help="seed of the prompt split")
        parser.add_argument("--style", choices=STYLES, default="auto")
        parser.add_argument("--pairs", choices=PAIR_MODES, default="all")
        filters = parser.add_argument_group("filters")
        filters.add_argument("--provenance", help="comma-separated: human,judge,hybrid")
        filters.add_argument("--agreement-min", type=float)
        filters.add_argument("--method")
        filters.add_argument("--annotators", help="comma-separated names")
        filters.add_argument("--judges", help="comma-separated judge names")
        filters.add_argument("--labelled-from", help="YYYY-MM-DD")
        filters.add_argument("--labelled-to", help="YYYY-MM-DD")
        filters.add_argument(
            "--metadata", action="append", default=[], help="KEY=VALUE (repeatable)"
        )
        gold = filters.add_mutually_exclusive_group()
        gold.add_argument("--gold", dest="gold", action="store_const", const=True)
        gold.add_argument("--no-gold", dest="gold", action="store_const", const=False)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        project = self._project(options["project"])
        metadata = {}
        for pair in options["metadata"]:
            key, sep, value = pair.partition("=")
            if not sep:
                raise CommandError(f"--metadata {pair!r}: expected KEY=VALUE")
            metadata[key] = value
        filters = {
            "provenance": options["provenance"],
            "agreement_min": options["agreement_min"],
            "method": options["method"],
            "annotators": options["annotators"],
            "judges": options["judges"],
            "labelled_from": options["labelled_from"],
            "labelled_to": options["labelled_to"],
            "metadata": metadata,
            "gold": options["gold"],
        }
        try:
            spec = export_spec(
                project=project,
                format=options["format"],
                file_format=options["file_format"],
                filters=filters,
                splits=options["split"],
                seed=options["seed"],
                style=options["style"],
                pairs=options["pairs"],
            )
            with tqdm(unit="item", disable=options["no_progress"], file=self.stderr._out) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                manifest = export_write(
                    project=project, spec=spec, out_dir=options["out"], on_progress=progress
                )
        except ApplicationError as exc:
            details = f" ({exc.details})" if exc.details else ""
            raise CommandError(f"{exc.message}{details}") from None
        rows = ", ".join(f"{split} {n}" for split, n in manifest["rows"].items())
        self.stdout.write(
            f"{project.slug}: {manifest['rows_total']} rows ({rows}) from {manifest['items']} "
            f"items -> {options['out']}"
        )

    def _project(self, key: str) -> Project:
        project = Project.objects.filter(slug=key).first()
        if project is None and key.isdigit():
            project = Project.objects.filter(pk=int(key)).first()
        if project is None:
            raise CommandError(f"no project {key!r}")
        return project
