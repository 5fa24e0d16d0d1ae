"""Fixtures for judge tests: the fake LLM server on a real socket, judges and items."""

from decimal import Decimal

import pytest

from routing.judges import services
from routing.judges.models import Judge
from tests.factories import ItemFactory, ProjectFactory
from tests.llm_server import LLMServer


@pytest.fixture(autouse=True)
def fast_backoff(settings):
    settings.TANDEM_JUDGE_BACKOFF_BASE = 0.01
    settings.TANDEM_JUDGE_BACKOFF_MAX = 0.05


@pytest.fixture
def llm():
    with LLMServer() as server:
        yield server


@pytest.fixture
def make_judge(llm, monkeypatch):
    """``make_judge(provider, **fields)``: a judge pointed at the fake server."""
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-ant-test")
    counter = iter(range(1000))

    def make(provider: str = "openai", **fields) -> Judge:
        defaults = {
            "name": f"judge-{provider}-{next(counter)}",
            "provider": provider,
            "model": "fake-model",
            "base_url": llm.url if provider == "anthropic" else llm.openai_url,
            "api_key_env": {"openai": "FAKE_OPENAI_KEY", "anthropic": "FAKE_ANTHROPIC_KEY"}.get(
                provider, ""
            ),
            "price_input_per_mtok": Decimal("1.00"),
            "price_output_per_mtok": Decimal("4.00"),
            "max_concurrency": 8,
            "timeout_seconds": 5,
        }
        defaults.update(fields)
        return services.judge_create(**defaults)

    return make


@pytest.fixture
def pairwise_project(db):
    return ProjectFactory(task_type="pairwise")


def make_items(project, n: int, *, long_position: int = 0, route: str = "judge"):
    """Items whose candidate at ``long_position`` is clearly longer (the fake judge's pick)."""
    items = []
    k = {"pairwise": 2, "listwise": 3, "thumbs": 1}[project.task_type]
    for i in range(n):
        texts = [f"short answer {i}-{p}" + "!" * p for p in range(k)]
        texts[long_position % k] = f"a much longer and more complete answer number {i} " * 3
        items.append(ItemFactory(project=project, candidates=texts, route=route))
    return items
