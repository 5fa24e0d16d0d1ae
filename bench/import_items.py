"""Import figure: N pairwise items into PostgreSQL through ``manage.py import_items``.

Rows are PandaLM's (the committed sample, cycled, each with a unique external_id), so texts have
realistic lengths. Measures the whole command (start-up included) three ways: items alone (the
figure comparable with Label Studio's 44 s for 100,000), items with their five existing labels
each, and a re-import of the same file (everything skipped). Prints JSON.

    python bench/import_items.py [--items 100000] [--database NAME]

Each import reports its wall time and the command's CPU time (the PostgreSQL server's work, e.g.
the candidates' generated ``text_bytes`` and the indexes, is in the wall time only), with the
load average before and after: on a shared machine, compare runs made close together.
"""

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from common import (  # bench/ is on sys.path as the script's folder
    ROOT,
    fresh_database,
    machine,
    manage,
)

SAMPLE = ROOT / "tests" / "fixtures" / "pandalm_sample.jsonl"


def write_file(path: Path, n: int, with_labels: bool) -> int:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    with open(path, "w") as out:
        for i in range(n):
            row = dict(rows[i % len(rows)])
            row["external_id"] = f"bench-{i}"
            if not with_labels:
                row.pop("labels", None)
            out.write(json.dumps(row) + "\n")
    return path.stat().st_size


def timed_import(url: str, slug: str, path: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = manage(
        url, "import_items", slug, str(path), "--create", "--task-type", "pairwise", "--no-progress"
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "seconds": round(seconds, 2),
        "command_cpu_seconds": round(cpu, 2),
        "summary": done.stdout.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--database", default="tandem_bench_import", help="database name")
    args = parser.parse_args()

    url = fresh_database(args.database)
    results = {"benchmark": "import_items", "items": args.items, "machine": machine()}
    results["load_average_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        plain, labelled = Path(tmp) / "plain.jsonl", Path(tmp) / "labelled.jsonl"
        results["file_mb"] = round(write_file(plain, args.items, False) / 1e6, 1)
        write_file(labelled, args.items, True)

        results["items_only"] = timed_import(url, "bench-plain", plain)
        results["items_with_5_labels_each"] = timed_import(url, "bench-labelled", labelled)
        results["reimport_all_skipped"] = timed_import(url, "bench-plain", plain)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    results["peak_rss_mb"] = round(peak_kb / 1024, 1)
    results["items_per_second"] = round(args.items / results["items_only"]["seconds"])
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
