"""Export figures: preferences and dataset exports of pairwise items with 3 labels each.

Builds (once; ``--reuse`` keeps it) a PostgreSQL database ``tandem_bench_export`` with two
projects loaded by COPY: ``labels-100k`` (33,334 items x 3 human labels) and ``labels-1m``
(333,334 items x 3). Texts are PandaLM's (the committed sample, cycled; each prompt made unique).
Then, for each project, each step runs in its own process (so its peak RSS is its own):

- ``preferences``: ``preferences_recompute`` of the whole project (then again: nothing changed);
- ``preference-parquet``: ``manage.py export --format preference --file-format parquet``;
- ``raw-jsonl``: ``manage.py export --format raw --file-format jsonl``.

Prints JSON: wall time (process start-up included) and peak RSS per step and size.

    python bench/export.py [--reuse] [--sizes 100000,1000000] [--steps preferences,...]
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import ROOT, fresh_database, machine  # noqa: E402

DB_NAME = "tandem_bench_export"
SAMPLE = ROOT / "tests" / "fixtures" / "pandalm_sample.jsonl"
LABELS_PER_ITEM = 3
STEPS = ("preferences", "preference-parquet", "raw-jsonl")


def _database_url() -> str:
    from urllib.parse import urlparse, urlunparse

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem")
    return urlunparse(urlparse(base)._replace(path=f"/{DB_NAME}"))


def _setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
    import django

    django.setup()


def build(url: str, sizes: list[int]) -> None:
    """Create one project per size and COPY its items, candidates and labels in."""
    _setup_django(url)
    from django.db import connection
    from django.utils import timezone

    from annotation.models import Annotation, Candidate, Item
    from annotation.services import project_create

    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    rng = random.Random(7)
    now = timezone.now()
    for size in sizes:
        n_items = -(-size // LABELS_PER_ITEM)
        project = project_create(slug=_slug(size), task_type="pairwise", overlap=LABELS_PER_ITEM)
        with connection.cursor() as cursor:
            raw = cursor.connection
            with raw.cursor().copy(
                f"COPY {Item._meta.db_table} (project_id, external_id, prompt, metadata, "
                "content_hash, route, created_at) FROM STDIN"
            ) as copy:
                for i in range(n_items):
                    row = rows[i % len(rows)]
                    copy.write_row(
                        (
                            project.pk,
                            f"bench-{i}",
                            f"{row['prompt']}\n\n(#{i})",
                            json.dumps({"dataset": "pandalm", "license": "apache-2.0"}),
                            f"{i:064x}",
                            "human",
                            now,
                        )
                    )
            cursor.execute(
                f"SELECT id FROM {Item._meta.db_table} WHERE project_id = %s ORDER BY id",
                [project.pk],
            )
            ids = [r[0] for r in cursor.fetchall()]
            with raw.cursor().copy(
                f"COPY {Candidate._meta.db_table} (item_id, position, text, model, metadata) "
                "FROM STDIN"
            ) as copy:
                for i, item_id in enumerate(ids):
                    for pos, cand in enumerate(rows[i % len(rows)]["candidates"][:2]):
                        copy.write_row((item_id, pos, cand["text"], cand.get("model", ""), "{}"))
            with raw.cursor().copy(
                f"COPY {Annotation._meta.db_table} (project_id, item_id, source, "
                'external_annotator, judge, payload, "order", raw_output, confidence, '
                "time_spent_ms, imported, metadata, created_at) FROM STDIN"
            ) as copy:
                written = 0
                for item_id in ids:
                    for k in range(LABELS_PER_ITEM):
                        if written == size:
                            break
                        choice = rng.choices(["A", "B", "tie"], weights=[5, 4, 1])[0]
                        payload = {"choice": choice}
                        if choice != "tie":
                            payload["strength"] = rng.randint(1, 2)
                        copy.write_row(
                            (
                                project.pk,
                                item_id,
                                "human",
                                f"annotator{(item_id + k) % 50}",
                                "",
                                json.dumps(payload),
                                rng.choice(["AB", "BA"]),
                                "",
                                None,
                                rng.randint(2000, 60000),
                                True,
                                "{}",
                                now,
                            )
                        )
                        written += 1
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def _slug(size: int) -> str:
    return f"labels-{size // 1000}k" if size < 1_000_000 else f"labels-{size // 1_000_000}m"


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def step_preferences(url: str, slug: str) -> dict:
    _setup_django(url)
    from annotation.models import Project
    from exports.preferences import preferences_recompute

    project = Project.objects.get(slug=slug)
    start = time.perf_counter()
    first = preferences_recompute(project=project)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    again = preferences_recompute(project=project)
    again_s = time.perf_counter() - start
    return {
        "items": first.items,
        "resolved": first.resolved,
        "seconds": round(first_s, 2),
        "again_unchanged_seconds": round(again_s, 2),
        "again_written": again.written,
        "peak_rss_mb": _peak_mb(),
    }


def run_child(url: str, step: str, slug: str) -> dict:
    """One measurement in a fresh interpreter: its wall time includes Django's start-up."""
    if step == "preferences":
        args = [sys.executable, __file__, "--child", step, "--project", slug]
        env = {**os.environ, "DATABASE_URL": url}
        start = time.perf_counter()
        done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
        out = json.loads(done.stdout)
        out["wall_seconds"] = round(time.perf_counter() - start, 2)
        return out
    fmt, file_format = {
        "preference-parquet": ("preference", "parquet"),
        "raw-jsonl": ("raw", "jsonl"),
    }[step]
    with tempfile.TemporaryDirectory() as out_dir:
        args = [
            "/usr/bin/time",
            "-f",
            "%M",
            sys.executable,
            str(ROOT / "manage.py"),
            "export",
            slug,
            "--format",
            fmt,
            "--file-format",
            file_format,
            "--out",
            out_dir,
            "--no-progress",
        ]
        env = {**os.environ, "DATABASE_URL": url}
        start = time.perf_counter()
        done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
        size = sum(f.stat().st_size for f in Path(out_dir).rglob("*") if f.is_file())
        return {
            "wall_seconds": round(seconds, 2),
            "peak_rss_mb": round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1),
            "rows": manifest["rows"],
            "output_mb": round(size / 1e6, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", action="store_true", help="keep the database if built")
    parser.add_argument("--sizes", default="100000,1000000", help="labels per project")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--project", help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = _database_url()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child == "build":
        build(url, sizes)
        return
    if args.child:
        print(json.dumps(step_preferences(url, args.project)))
        return

    results: dict = {"benchmark": "export", "machine": machine(), "sizes": {}}
    if not (args.reuse and _built(url, sizes)):
        start = time.perf_counter()
        fresh_database(DB_NAME)
        sizes_arg = ",".join(map(str, sizes))
        subprocess.run(
            [sys.executable, __file__, "--child", "build", "--sizes", sizes_arg], check=True
        )
        results["build_seconds"] = round(time.perf_counter() - start, 1)
    for size in sizes:
        slug = _slug(size)
        per: dict = {}
        for step in args.steps.split(","):
            per[step] = run_child(url, step, slug)
            print(f"# {slug} {step}: {per[step]}", file=sys.stderr, flush=True)
        results["sizes"][str(size)] = per
    print(json.dumps(results, indent=2))


def _built(url: str, sizes: list[int]) -> bool:
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            found = {r[0] for r in conn.execute("SELECT slug FROM annotation_project").fetchall()}
    except psycopg.Error:
        return False
    return all(_slug(size) in found for size in sizes)


if __name__ == "__main__":
    main()
