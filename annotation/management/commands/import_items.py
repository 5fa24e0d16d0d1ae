"""``manage.py import_items PROJECT FILE``: import items from JSONL, CSV or Parquet."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotation.importer import items_import_file
from annotation.models import Project
from annotation.readers import FORMATS, UnreadableFile, count_rows, detect_format
from annotation.schema import TaskType
from annotation.services import project_create


class Command(BaseCommand):
    help = "Import items (with their existing labels) into a project from JSONL, CSV or Parquet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--create", action="store_true", help="create the project if missing")
        parser.add_argument("--task-type", choices=TaskType.values, help="with --create")
        parser.add_argument("--format", choices=FORMATS, help="default: from the extension")
        parser.add_argument(
            "--partial",
            action="store_true",
            help="import the good rows and report the bad ones (default: all or nothing)",
        )
        parser.add_argument(
            "--preference-source",
            choices=("human", "judge", "none"),
            default="none",
            help="who gave TRL rows' chosen/rejected or completion labels; they become labels "
            "of that source (default: none, no label: say human only when people chose them)",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        try:
            fmt = options["format"] or detect_format(path.name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        project = self._project(options)

        show = not options["no_progress"]
        try:
            total = count_rows(path, fmt)
            with tqdm(total=total, unit="row", disable=not show, file=self.stderr._out) as bar:
                result = items_import_file(
                    project=project,
                    source=path,
                    fmt=fmt,
                    partial=options["partial"],
                    preference_source=options["preference_source"],
                    on_progress=bar.update,
                )
        except UnreadableFile as exc:
            raise CommandError(f"{path}: {exc}") from None
        for error in result.errors:
            self.stderr.write(f"{path}:{error.line}: {error.message}")
        if result.errors_truncated:
            self.stderr.write(f"... and {result.failed - len(result.errors)} more bad rows")
        self.stdout.write(f"{project.slug}: {result.summary()}")
        if result.failed:
            raise CommandError(f"{result.failed} bad rows", returncode=1)

    def _project(self, options) -> Project:
        slug = options["project"]
        project = Project.objects.filter(slug=slug).first()
        if project is not None:
            if options["task_type"] and options["task_type"] != project.task_type:
                raise CommandError(f"{slug} is a {project.task_type} project")
            return project
        if not options["create"]:
            raise CommandError(f"no project {slug!r}; pass --create --task-type TYPE to make it")
        if not options["task_type"]:
            raise CommandError("--create needs --task-type pairwise|listwise|thumbs")
        try:
            return project_create(slug=slug, task_type=options["task_type"])
        except ValidationError as exc:
            raise CommandError(f"cannot create {slug!r}: {'; '.join(exc.messages)}") from None
