"""The test suite's settings: Tandem's own, with a throwaway SECRET_KEY (Tandem refuses to start
without one when DEBUG is off) and API rates high enough for the suite's many requests. Tests that
prove a limit lower it with the ``settings`` fixture."""

import os

# Set in the environment so that the processes tests start (workers, servers) inherit it.
os.environ.setdefault("SECRET_KEY", "tandem-tests-only-" + "x" * 40)

from tandem.settings import *  # noqa: F403

TANDEM_API_THROTTLE = {"user": "100000/min", "anon": "100000/min"}
# The suite's fake LLM server listens on 127.0.0.1, and its judges read FAKE_*_KEY variables.
JUDGE_ALLOW_PRIVATE_URLS = True
JUDGE_KEY_ENV_ALLOWED = "*_API_KEY,FAKE_*_KEY"
