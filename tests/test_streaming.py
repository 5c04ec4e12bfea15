"""Async and streaming: same final output as invoke; `ann run --stream` shows layers in order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph import models as models_module
from ann_langgraph.cli import app
from ann_langgraph.testing import ScriptedChatModel
from tests.conftest import agent, make_spec


def echo(messages: list[Any], **kwargs: Any) -> Any:
    """Deterministic: structured calls pick 'sequential_cot'; agents echo role + last line."""
    if kwargs.get("tools"):
        return {"aggregator": "sequential_cot", "reason": "scripted"}
    role = str(messages[0].content).split(".")[0].removeprefix("You are ")
    last = str(messages[-1].content).strip().splitlines()[-1]
    return f"{role}: {last} Answer: 7"


def scripted(sleep_s: float = 0.0) -> ScriptedChatModel:
    return ScriptedChatModel(respond=echo, sleep_s=sleep_s)


@pytest.fixture
def spec() -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "understand", "agents": [agent("reader", "Reader")]},
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "agents": [agent("a", "Solver A"), agent("b", "Solver B")],
            },
            {
                "name": "answer",
                "inputs": ["understand", "solve"],
                "aggregator": "dynamic",
                "candidates": ["parallel_vote", "sequential_cot"],
                "agents": [agent("writer", "Writer")],
            },
        ],
        answer_format="last_number",
    )


def test_ainvoke_astream_stream_match_invoke(spec):
    graph = ann.compile_graph(spec, models=scripted())
    expected = graph.invoke({"input": "What is 3+4?"})
    assert expected["output"].startswith("Writer:")
    assert asyncio.run(graph.ainvoke({"input": "What is 3+4?"})) == expected

    async def last_value() -> dict[str, Any]:
        final: dict[str, Any] = {}
        async for chunk in graph.astream({"input": "What is 3+4?"}, stream_mode="values"):
            final = chunk
        return final

    final = asyncio.run(last_value())  # "values" is the whole state: the input too
    assert {key: final[key] for key in expected} == expected
    order: list[str] = []
    for chunk in graph.stream({"input": "What is 3+4?"}, stream_mode="updates"):
        order.extend(chunk)
    assert order == ["understand", "solve", "answer"]


def test_async_streaming_of_layer_internals(spec):
    """subgraphs=True streams the agents inside each layer (namespaced by layer)."""
    graph = ann.compile_graph(spec, models=scripted())

    async def namespaces() -> list[str]:
        seen: list[str] = []
        async for ns, _chunk in graph.astream(
            {"input": "q"}, stream_mode="updates", subgraphs=True
        ):
            if ns:
                layer = ns[0].split(":")[0]
                if layer not in seen:
                    seen.append(layer)
        return seen

    assert asyncio.run(namespaces()) == ["understand", "solve", "answer"]


@pytest.fixture
def scripted_name(monkeypatch) -> str:
    monkeypatch.setitem(models_module._FACTORIES, "scripted-echo", lambda: scripted(0.15))
    return "scripted-echo"


def test_cli_stream_json_lines(spec, scripted_name, tmp_path):
    path = ann.save_spec(spec, tmp_path / "spec.yaml")
    result = CliRunner().invoke(
        app, ["run", str(path), "-i", "What is 3+4?", "--stream", "--json", "-m", scripted_name]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    layers = [e for e in events if e["event"] == "layer"]
    assert [e["layer"] for e in layers] == [layer.name for layer in spec.layers]
    assert [e["index"] for e in layers] == [0, 1, 2]
    assert layers[2]["route"]["choice"] == "sequential_cot"
    final = events[-1]
    assert final["event"] == "final"
    # Layers were reported as they finished, not all at the end.
    times = [e["elapsed_s"] for e in layers]
    assert times == sorted(times) and times[0] < final["totals"]["wall_time_s"] - 0.2
    expected = ann.compile_graph(spec, models=scripted()).invoke({"input": "What is 3+4?"})
    assert final["output"] == expected["output"]
    assert final["answer"] == "7"
    assert final["layer_outputs"] == expected["layer_outputs"]
    assert {e["layer"]: e["output"] for e in layers} == expected["layer_outputs"]


def test_cli_stream_text(spec, scripted_name, tmp_path):
    path = ann.save_spec(spec, tmp_path / "spec.yaml")
    result = CliRunner().invoke(
        app, ["run", str(path), "-i", "What is 3+4?", "--stream", "-m", scripted_name]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    positions = [out.index(f"layer {i + 1}/3 {layer.name}") for i, layer in enumerate(spec.layers)]
    assert positions == sorted(positions)
    assert "dynamic → sequential_cot" in out
    expected = ann.compile_graph(spec, models=scripted()).invoke({"input": "What is 3+4?"})
    assert expected["output"] in out  # the final answer panel
    assert "answer (last_number): 7" in out
    assert "Per-layer view" not in out  # the streamed lines replace the table
