"""The demo projects of the embedded shape, built from the committed PandaLM sample.

Three projects so that every task type can be tried at once: pairwise (PandaLM's items with
their human and judge labels), listwise (PandaLM's responses to the same instruction ranked
together) and thumbs (single responses).
"""

import secrets
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction

from accounts.models import Role, User
from accounts.services import user_create

from .importer import ImportResult, items_import
from .models import Membership, Project
from .services import membership_set, project_create

SAMPLE = Path(settings.BASE_DIR) / "data" / "pandalm" / "pandalm.jsonl"
SAMPLE_ROWS = 120  # a demo needs a sample, not the whole set
GUIDELINES = """Read the instruction, then the responses.

* Prefer the response that follows the instruction best: correct, complete, and concise.
* Use **tie** when neither is better, **both bad** when neither is acceptable.
* Judge content, not length or position.
"""


def _rows() -> list[dict[str, Any]]:
    with open(SAMPLE, "rb") as handle:
        lines = [line for line in handle if line.strip()]
    return [orjson.loads(line) for line in lines[:SAMPLE_ROWS]]


def _listwise_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Responses to the same instruction, one per distinct text (models often answer alike).
    by_prompt: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        for candidate in row["candidates"]:
            by_prompt[row["prompt"]].setdefault(candidate["text"].strip(), candidate)
    out = []
    for i, (prompt, candidates) in enumerate(by_prompt.items()):
        if len(candidates) >= 3:
            out.append(
                {
                    "external_id": f"pandalm-list-{i}",
                    "prompt": prompt,
                    "candidates": list(candidates.values())[:4],
                    "metadata": {"dataset": "pandalm"},
                }
            )
    return out


def _thumbs_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"{row['external_id']}-{letter}",
            "prompt": row["prompt"],
            "candidates": [candidate],
            "metadata": {"dataset": "pandalm"},
        }
        for row in rows[:40]
        for letter, candidate in zip("AB", row["candidates"], strict=True)
    ]


DEMOS = {
    "demo-pairwise": ("PandaLM pairwise (demo)", "pairwise", lambda rows: rows),
    "demo-listwise": ("PandaLM ranking (demo)", "listwise", _listwise_rows),
    "demo-thumbs": ("PandaLM thumbs (demo)", "thumbs", _thumbs_rows),
}


def _user(username: str, role: str, logins: dict[str, str]) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        password = secrets.token_urlsafe(9)
        user = user_create(username=username, role=role, password=password)
        logins[username] = password
    return user


@transaction.atomic
def demo_load(*, logins_file: Path) -> tuple[dict[str, ImportResult], dict[str, str]]:
    """Create (or top up) the demo projects and users; idempotent.

    Returns each project's import result and the logins. Passwords are made once and kept in
    ``logins_file`` (under var/, never committed) so they can be printed at every start.
    """
    logins: dict[str, str] = {}
    if logins_file.exists():
        logins = orjson.loads(logins_file.read_bytes())
    admin = _user("admin", Role.ADMIN, logins)
    annotator = _user("annotator", Role.ANNOTATOR, logins)
    rows = _rows()
    results = {}
    for slug, (name, task_type, build) in DEMOS.items():
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            project = project_create(
                slug=slug,
                name=name,
                task_type=task_type,
                created_by=admin,
                guidelines=GUIDELINES,
                overlap=1 if task_type != "pairwise" else 3,
            )
        membership_set(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
        numbered = enumerate(build(rows), start=1)
        results[slug] = items_import(project=project, rows=numbered)
    logins_file.parent.mkdir(parents=True, exist_ok=True)
    logins_file.write_bytes(orjson.dumps(logins, option=orjson.OPT_INDENT_2))
    return results, logins
