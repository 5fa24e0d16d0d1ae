"""The house's rules, checked on the source itself (DESIGN.md, "The house").

Dependencies point one way: ``exports`` -> ``routing`` -> ``annotation`` (and everything may use
``accounts`` and ``tandem``); inside routing, the router's room uses the judges' room, never the
reverse. And the repository stands on its own: nothing reaches outside it.
"""

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> packages it must never import (by prefix)
FORBIDDEN = {
    "accounts": ("routing", "exports"),
    "annotation": ("routing", "exports"),
    "routing": ("exports",),
    "routing.judges": ("routing.router",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    if package is None:
        package = _module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from routing import router`` imports routing.router
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package.replace(".", "/")).rglob("*.py"))


def _hits(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in _sources(package)
        for line, name in _imports(path)
        if _hits(name, FORBIDDEN[package])
    ]
    assert not wrong, "imports against the house's direction:\n" + "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    """The rule above can fail: a module of the judges' room importing the router is caught."""
    bad = ROOT / "routing" / "judges" / "_probe_wrong_direction.py"
    bad.write_text("from routing.router import route  # noqa\n")
    try:
        names = [name for _, name in _imports(bad)]
        assert _hits(names[0], FORBIDDEN["routing.judges"])
    finally:
        bad.unlink()


def test_routing_shows_two_rooms():
    entries = {p.name for p in (ROOT / "routing").iterdir() if not p.name.startswith("__")}
    assert {"judges", "router"} <= entries
    modules = {e for e in entries if e.endswith(".py")}
    # Only the entrance points Django and Celery look for stay at the top.
    assert modules <= {"admin.py", "apps.py", "models.py", "tasks.py", "urls.py"}


# Paths that point outside the repository: the sibling folder the developers' checkouts have,
# and absolute paths of this machine's work folders.
OUTSIDE = re.compile(r"\.\./shared|/work/(?:main|shared)\b|parent\s*/\s*[\"']shared")


def test_nothing_reaches_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".html", ".toml", ".yml", ".yaml", ".cfg", ".txt", ""}:
            continue
        if name == "tests/test_structure.py" or not path.is_file():
            continue
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{name}:{lineno}: {line.strip()}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_one_sanitiser():
    """Untrusted text is cleaned in one place (annotation/rendering.py), by one allow-list."""
    users = []
    for package in ("tandem", "accounts", "annotation", "routing", "exports"):
        for path in _sources(package):
            if any(name == "nh3" or name.startswith("nh3.") for _, name in _imports(path)):
                users.append(str(path.relative_to(ROOT)))
    assert users == ["annotation/rendering.py"]


def test_one_llm_call_engine():
    """Every LLM call leaves through the judges' engine: only network.py (the dispatcher) calls
    the providers' retrying completion, and only engine.py builds dispatchers."""
    callers, builders = [], []
    for path in _sources("routing") + _sources("exports"):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if "complete_with_retries" in text and name != "routing/judges/providers.py":
            callers.append(name)
        if ("ThreadDispatcher(" in text or "ProcessDispatcher(" in text) and not name.endswith(
            "network.py"
        ):
            builders.append(name)
    assert callers == ["routing/judges/network.py"]
    assert builders == ["routing/judges/engine.py"]


@pytest.mark.django_db
def test_the_move_keeps_every_table_and_needs_no_migration():
    """The judges' and the router's models moved into their rooms under the same app label: the
    same tables hold the existing data, and the migrations describe the models exactly."""
    from io import StringIO

    from django.apps import apps
    from django.core.management import call_command

    tables = {m.__name__: m._meta.db_table for m in apps.get_app_config("routing").get_models()}
    assert (
        tables.items()
        >= {
            "Judge": "routing_judge",
            "JudgeRun": "routing_judgerun",
            "JudgeItemResult": "routing_judgeitemresult",
            "JudgeResponseCache": "routing_judgeresponsecache",
            "RoutingPolicy": "routing_routingpolicy",
            "RoutingBudget": "routing_routingbudget",
            "ItemFeatures": "routing_itemfeatures",
            "RouterModel": "routing_routermodel",
            "RoutingDecision": "routing_routingdecision",
        }.items()
    )
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits non-zero if not
    assert "No changes detected" in out.getvalue()
