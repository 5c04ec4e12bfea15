"""End to end on the real embedded model: shapes and mechanics, not accuracy."""

from __future__ import annotations

import os

import pytest

import ann_langgraph as ann
from ann_langgraph.local import get_local_server, shutdown_local_server

pytestmark = pytest.mark.local_model


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_math_starter_spec_runs_on_the_embedded_model_and_the_server_stops():
    spec = ann.load_spec("graphs/math.yaml")
    rec = ann.TraceRecorder()
    graph = ann.compile_graph(spec, models="local")
    out = graph.invoke(
        {"input": "A pen costs 3 dollars. How much do 4 pens cost?"}, config={"callbacks": [rec]}
    )
    assert isinstance(out["output"], str) and out["output"].strip()
    assert set(out["layer_outputs"]) == {"understand", "solve", "answer"}
    assert out["output"] == out["layer_outputs"]["answer"]
    route = out["routes"]["answer"]
    assert route["choice"] in ("sequential_cot", "self_refine")
    llm = [r for r in rec.records if r.kind == "llm"]
    agents = {(r.layer, r.agent_id) for r in llm}
    assert {
        ("understand", "reader"),
        ("solve", "solver_a"),
        ("solve", "solver_b"),
        ("solve", "solver_c"),
        ("answer", "_router"),
        ("answer", "writer"),
    } <= agents
    limits = {(layer.name, a.id): a.max_tokens for layer in spec.layers for a in layer.agents}
    for r in llm:
        assert r.input_tokens > 0 and r.error is None
        if r.agent_id != "_router":  # each agent's max_tokens reached the server
            assert 0 < r.output_tokens <= limits[(r.layer, r.agent_id)]
    server = get_local_server()
    pid = server.pid
    assert pid is not None and _alive(pid)
    shutdown_local_server()
    server_process_gone = not _alive(pid)
    assert server_process_gone


def test_code_starter_spec_runs_tool_pipeline_on_the_embedded_model():
    spec = ann.load_spec("graphs/code.yaml")
    rec = ann.TraceRecorder()
    out = ann.compile_graph(spec, models="local").invoke(
        {"input": "Write a function add(a, b) that returns the sum of a and b."},
        config={"callbacks": [rec]},
    )
    assert set(out["layer_outputs"]) == {"plan", "implement", "review"}
    implement = [r for r in rec.records if r.layer == "implement"]
    assert implement and all(r.agent_id == "coder" for r in implement)
    assert all(r.error is None for r in rec.records)
    # any python tool call was really executed in the sandbox and its report recorded
    for tool in (r for r in implement if r.kind == "tool"):
        assert tool.model == "tool:python" and (
            "exit code" in tool.output or "timed out" in tool.output or "error" in tool.output
        )
