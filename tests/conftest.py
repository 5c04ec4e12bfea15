"""Shared fixtures: small specs and scripted models (offline)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ann_langgraph import GraphSpec


def make_spec(layers: list[dict[str, Any]], **extra: Any) -> GraphSpec:
    data: dict[str, Any] = {"name": "test", "description": "a test task", "layers": layers, **extra}
    return GraphSpec.model_validate(data)


def agent(
    agent_id: str, role: str | None = None, prompt: str = "Do it.", **kw: Any
) -> dict[str, Any]:
    return {"id": agent_id, "role": role or f"agent {agent_id}", "prompt": prompt, **kw}


@pytest.fixture
def three_layer_spec() -> GraphSpec:
    return make_spec(
        [
            {"name": "understand", "agents": [agent("reader", "Reader")]},
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "agents": [agent("a", "Solver A"), agent("b", "Solver B"), agent("c", "Solver C")],
            },
            {"name": "answer", "agents": [agent("writer", "Writer")]},
        ],
        answer_format="last_number",
    )


def benchmark_folder(name: str) -> Path:
    """The shared datasets folder holding ``name``; skips the test, saying why, when absent."""
    from evals.base import DataNotFoundError, resolve_data_dir

    try:
        path = resolve_data_dir()
    except DataNotFoundError as exc:
        pytest.skip(f"benchmark datasets not available: {exc}")
    if not (path / name).is_dir():
        pytest.skip(f"no {name} folder in {path}")
    return path


# The suite serves the tiny embedded model (5-10x faster than the default 1.5B one): it checks
# mechanics, never accuracy. Set for the whole session (module-scoped server fixtures and
# subprocesses see it too); tests marked ``capable_model`` get the default model back.
os.environ["ANN_LOCAL_MODEL"] = "smollm2"


@pytest.fixture(autouse=True)
def _capable_model_marker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("capable_model") is not None:
        monkeypatch.delenv("ANN_LOCAL_MODEL", raising=False)


# The repairer's own path, as it ran before GEPA's parts joined the step: no reflective
# proposals, no minibatch screening, the best spec always the parent. Scenarios that script the
# optimizer's calls one by one pin that path; the new parts have tests of their own
# (test_reflect.py, test_pool.py).
REPAIRER_PATH: dict[str, Any] = {
    "reflection": False,
    "screening": False,
    "pareto_parents": False,
    "merge": False,
}
