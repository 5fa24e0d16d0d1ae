"""A judge worker in its own process, for the crash tests.

``python judge_worker.py RUN_ID [SHARDS]``: runs this checkout's code (an editable install of
another checkout in the same environment is kept from shadowing it), against the database in
``DATABASE_URL``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")

import django  # noqa: E402

django.setup()

from routing.judges.runner import judge_run_execute  # noqa: E402

if __name__ == "__main__":
    shards = int(sys.argv[2]) if len(sys.argv) > 2 else None
    run = judge_run_execute(run_id=int(sys.argv[1]), shards=shards)
    print(run.status, flush=True)
