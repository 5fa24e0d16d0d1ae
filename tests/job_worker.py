"""A job worker in its own process, for the fault tests: the service a Celery task calls.

``python job_worker.py import JOB_ID`` or ``python job_worker.py snapshot SNAPSHOT_ID``: runs
this checkout's code (an editable install of another checkout is kept from shadowing it)
against the database in ``DATABASE_URL`` and the cache in ``REDIS_URL``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

if __name__ == "__main__":
    kind, job_id = sys.argv[1], int(sys.argv[2])
    if kind == "import":
        from annotation.import_jobs import import_job_execute

        print(import_job_execute(job_id=job_id).status, flush=True)
    elif kind == "snapshot":
        from exports.snapshots import snapshot_build

        print(snapshot_build(snapshot_id=job_id).status, flush=True)
    else:
        raise SystemExit(f"unknown job kind {kind!r}")
