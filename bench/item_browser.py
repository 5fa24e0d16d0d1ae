"""Item browser figures: the first page, a later page, filters and full-text searches of a
project of N items, through the whole Django view (session, query, template). Prints JSON.

    python bench/item_browser.py [--items 100000] [--repeat 7] [--reuse] [--database NAME]

``--reuse`` times the requests again on the database a previous run loaded (no import).

The "Preference from" (provenance) filter needs Preferences: the bench writes them with one
INSERT ... SELECT (not the recompute, which would need labels): by item id, 60% decided by
people, 20% by a judge, 0.1% by people and judges together (a selective filter), 10% unresolved
and 10% without a row yet.

Items are PandaLM's (the committed sample, cycled, unique external ids), loaded with
``manage.py import_items`` (its COPY path, with the GIN search indexes in place: the import time
is reported too). Search words are picked from the sample by how many rows hold them: a common
one (in about a third of the rows), a rare one (one sample row in 120), and a two-word query.
Times are the median of ``--repeat`` requests after one warm-up, with the median CPU time of
this process (the view, the template; the database's work is in the wall time only) and the load
average before and after.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import fresh_database, machine, manage  # noqa: E402  (bench/ is on sys.path)

SAMPLE = ROOT / "tests" / "fixtures" / "pandalm_sample.jsonl"
WORD = re.compile(r"[a-z]{5,}")


def write_file(path: Path, n: int) -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    with open(path, "w") as out:
        for i in range(n):
            row = dict(rows[i % len(rows)])
            row["external_id"] = f"bench-{i}"
            row.pop("labels", None)
            row["metadata"] = {**(row.get("metadata") or {}), "shard": str(i % 10)}
            out.write(json.dumps(row) + "\n")
    return rows


def pick_words(rows: list[dict]) -> dict[str, str]:
    """Words by the share of sample rows whose prompt or responses hold them."""
    df: Counter[str] = Counter()
    for row in rows:
        texts = [row.get("prompt") or ""] + [
            c["text"] if isinstance(c, dict) else c for c in row.get("candidates", [])
        ]
        df.update(set(WORD.findall(" ".join(texts).lower())))
    n = len(rows)
    common = min(df, key=lambda w: (abs(df[w] / n - 0.33), w))
    rare = min((w for w in df if df[w] == 1), key=lambda w: (len(w), w))
    return {"common": common, "rare": rare, "share_common": round(df[common] / n, 3)}


def write_preferences(url: str) -> float:
    """Preferences for the provenance filter (see the module): one INSERT ... SELECT."""
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO exports_preference (item_id, project_id, choice, provenance, n_human,
                   n_judge, method, decided_by, resolved_at, updated_at)
            SELECT id, project_id,
                   CASE WHEN id % 10 < 8 OR id % 1000 = 999 THEN '"A"'::jsonb END,
                   CASE WHEN id % 1000 = 999 THEN 'hybrid' WHEN id % 10 < 6 THEN 'human'
                        ELSE 'judge' END,
                   3, 2, 'majority',
                   CASE WHEN id % 1000 = 999 THEN 'human+judge'
                        WHEN id % 10 < 6 THEN 'human' WHEN id % 10 < 8 THEN 'gpt' ELSE '' END,
                   CASE WHEN id % 10 < 8 OR id % 1000 = 999 THEN now() END, now()
            FROM annotation_item WHERE id % 10 <> 9 OR id % 1000 = 999"""
        )
        conn.execute("ANALYZE exports_preference")
    return round(time.perf_counter() - start, 1)


def timed(client, url: str, params: dict, repeat: int) -> dict:
    client.get(url, params)  # warm-up
    times, cpu = [], []
    status = None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.get(url, params)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        status = response.status_code
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "python_cpu_median_ms": round(statistics.median(cpu), 1),
            "status": status}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="no import: the last run's data")
    parser.add_argument("--database", default="tandem_bench_browser", help="database name")
    args = parser.parse_args()

    results: dict = {"benchmark": "item_browser", "items": args.items, "machine": machine()}
    if args.reuse:
        base = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x"))
        url = urlunparse(base._replace(path=f"/{args.database}"))
        sample = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
        results["reused_database"] = True
    else:
        url = fresh_database(args.database)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "items.jsonl"
            sample = write_file(path, args.items)
            start = time.perf_counter()
            manage(url, "import_items", "bench", str(path), "--create", "--task-type",
                   "pairwise", "--no-progress")  # fmt: skip
            results["import_seconds_with_search_indexes"] = round(time.perf_counter() - start, 1)
        results["preferences_seconds"] = write_preferences(url)
    words = pick_words(sample)
    results["words"] = words

    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["DEBUG"] = "0"
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    from accounts.models import Role, User
    from annotation.models import Item, Project

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    project = Project.objects.get(slug="bench")
    user, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"role": Role.ADMIN, "is_staff": True}
    )
    results["items"] = Item.objects.filter(project=project).count()
    client = Client()
    client.force_login(user)
    page = f"/projects/{project.pk}/items/"
    middle = Item.objects.filter(project=project).order_by("id")[args.items // 2].pk
    cases = {
        "first_page": {},
        "middle_page": {"after": middle},
        "filter_route_and_metadata": {"route": "unrouted", "meta_key": "shard", "meta_value": "7"},
        "search_common_word": {"q": words["common"]},
        "search_rare_word": {"q": words["rare"]},
        "search_two_words": {"q": f"{words['common']} {words['rare']}"},
        "search_rare_word_page_2": {"q": words["rare"], "after": middle},
        "filter_provenance_judge": {"provenance": "judge"},
        "filter_provenance_none_page_2": {"provenance": "none", "after": middle},
        "filter_provenance_mixed_rare": {"provenance": "mixed"},
        "filter_provenance_human_and_search": {"provenance": "human", "q": words["rare"]},
    }
    results["load_average_before"] = os.getloadavg()
    results["requests"] = {name: timed(client, page, params, args.repeat)
                           for name, params in cases.items()}  # fmt: skip
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
