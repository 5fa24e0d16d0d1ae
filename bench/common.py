"""Helpers shared by the benchmarks: a fresh PostgreSQL database and machine facts."""

import os
import platform
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
# Tandem refuses to start without a SECRET_KEY when DEBUG is off; the benchmarks' is throwaway.
os.environ.setdefault("SECRET_KEY", "tandem-bench-only-" + "x" * 40)
PYTHON = sys.executable


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def fresh_database(name: str) -> str:
    """Drop and recreate database ``name`` on DATABASE_URL's server; return its URL, migrated."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem")
    parts = urlparse(base)
    admin_url = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunparse(parts._replace(path=f"/{name}"))
    manage(url, "migrate", "--no-input", "-v", "0")
    return url


def manage(database_url: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        **kwargs,
    )
