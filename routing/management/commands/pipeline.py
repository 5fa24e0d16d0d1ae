"""``manage.py pipeline PROJECT [--wait [--timeout S]] [--json]``: where a project stands.

Prints what ``GET /api/v1/projects/{id}/pipeline/`` answers; with ``--wait`` it polls until no
routing or judging work is queued or running (``idle``), and exits 1 on the timeout.
"""

import json
import time

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from routing.router.selectors import project_pipeline


def _summary(p: dict) -> str:
    budget = p["budget"]
    limit = "no limit" if budget["limit"] is None else f"{budget['spent']} of {budget['limit']}"
    resolved = p["resolved"]
    lines = [
        f"project {p['project']}: {p['items']} items, "
        + ("idle" if p["idle"] else "working")
        + (f" (routing {p['routing']['status']})" if p["routing"]["status"] != "idle" else ""),
        f"  unrouted {p['unrouted']}",
        f"  judge    queued {p['judge']['queued']}, judged {p['judge']['judged']}"
        f" (waiting for verdicts {p['judge']['waiting_for_verdicts']})",
        f"  people   waiting {p['people']['waiting']}, done {p['people']['done']}",
        f"  budget   {limit}",
        f"  judges   ${p['judge_cost']} over {p['judge_calls']} calls, "
        f"{p['judge_runs']['open']} runs open",
    ]
    if resolved is not None:
        lines.append(
            f"  resolved human {resolved['human']}, judge {resolved['judge']}, "
            f"hybrid {resolved['hybrid']}, unresolved {resolved['unresolved']}"
        )
    if p["routing"]["error"]:
        lines.append(f"  routing error: {p['routing']['error']}")
    for stop in p["judge_stopped"]:
        run = f"judge run {stop['run']} ({stop['judge']})"
        lines.append(f"  {run} {stop['status']}: {stop['reason']}")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Show where a project stands (items by stage, budget, judge cost); --wait for idle."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug or id")
        parser.add_argument("--wait", action="store_true", help="return once the project is idle")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds (with --wait)")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **o):
        key = o["project"]
        lookup = {"pk": int(key)} if key.isdigit() else {"slug": key}
        project = Project.objects.filter(**lookup).first()
        if project is None:
            raise CommandError(f"no project {key!r}")
        deadline = time.monotonic() + o["timeout"]
        while True:
            state = project_pipeline(project=project)
            if not o["wait"] or state["idle"]:
                break
            if time.monotonic() >= deadline:
                self.stdout.write(json.dumps(state) if o["json"] else _summary(state))
                raise CommandError(f"not idle after {o['timeout']:g} s")
            time.sleep(o["interval"])
        self.stdout.write(json.dumps(state) if o["json"] else _summary(state))
