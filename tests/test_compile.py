"""The compiler: one subgraph per layer, wiring from `inputs`, metadata on every LLM run."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

import ann_langgraph as ann
from ann_langgraph.testing import ScriptedChatModel

from .conftest import agent, make_spec


def test_build_graph_returns_uncompiled_builder_with_one_subgraph_per_layer(three_layer_spec):
    builder = ann.build_graph(three_layer_spec, models=ScriptedChatModel(default="1"))
    assert isinstance(builder, StateGraph)
    assert set(builder.nodes) == {"understand", "solve", "answer"}
    for name in ("understand", "solve", "answer"):
        assert isinstance(builder.nodes[name].runnable, CompiledStateGraph)


def test_xray_shows_agents_inside_layer_subgraphs(three_layer_spec):
    graph = ann.compile_graph(three_layer_spec, models=ScriptedChatModel(default="1"))
    nodes = set(graph.get_graph(xray=1).nodes)
    assert {
        "understand:reader",
        "solve:a",
        "solve:b",
        "solve:c",
        "solve:_vote",
        "answer:writer",
    } <= nodes
    assert dict(graph.get_subgraphs()).keys() == {"understand", "solve", "answer"}


def test_invoke_returns_output_and_layer_outputs(three_layer_spec):
    model = ScriptedChatModel(
        rules=[
            (r"You are Reader", "Quantities: 3 and 4"),
            (r"You are Solver", "Answer: 12"),
            (r"You are Writer", "Final Answer: 12"),
        ]
    )
    out = ann.compile_graph(three_layer_spec, models=model).invoke({"input": "3*4?"})
    assert out["output"] == "Final Answer: 12"
    assert out["layer_outputs"] == {
        "understand": "Quantities: 3 and 4",
        "solve": "Answer: 12",
        "answer": "Final Answer: 12",
    }
    assert "input" not in out


def test_default_wiring_feeds_previous_layer_only():
    spec = make_spec(
        [
            {"name": "first", "agents": [agent("x", "First")]},
            {"name": "second", "agents": [agent("y", "Second")]},
            {"name": "third", "agents": [agent("z", "Third")]},
        ]
    )
    model = ScriptedChatModel(
        rules=[
            (r"You are First", "OUT-FIRST"),
            (r"You are Second", "OUT-SECOND"),
            (r"You are Third", "OUT-THIRD"),
        ]
    )
    ann.compile_graph(spec, models=model).invoke({"input": "TASK"})
    third = next(c["text"] for c in model.calls if "You are Third" in c["text"])
    assert "OUT-SECOND" in third and "OUT-FIRST" not in third and "TASK" in third
    first = next(c["text"] for c in model.calls if "You are First" in c["text"])
    assert "TASK" in first and "Output of layer" not in first


def test_skip_connection_and_fan_in_wait_for_all_inputs():
    spec = make_spec(
        [
            {"name": "a", "agents": [agent("x", "LayerA")]},
            {"name": "b", "agents": [agent("y", "LayerB")]},
            {"name": "side", "inputs": ["a"], "agents": [agent("s", "Side")]},
            {"name": "join", "inputs": ["b", "side"], "agents": [agent("j", "Joiner")]},
        ]
    )
    model = ScriptedChatModel(
        rules=[
            (r"You are LayerA", "AAA"),
            (r"You are LayerB", "BBB"),
            (r"You are Side", "SSS"),
            (r"You are Joiner", "JJJ"),
        ]
    )
    out = ann.compile_graph(spec, models=model).invoke({"input": "T"})
    side = next(c["text"] for c in model.calls if "You are Side" in c["text"])
    assert "AAA" in side and "BBB" not in side
    joins = [c["text"] for c in model.calls if "You are Joiner" in c["text"]]
    assert len(joins) == 1, "fan-in layer must run once, after both inputs"
    assert "BBB" in joins[0] and "SSS" in joins[0] and "AAA" not in joins[0]
    assert out["output"] == "JJJ"


def test_layer_with_empty_inputs_reads_only_the_task():
    spec = make_spec(
        [
            {"name": "a", "agents": [agent("x", "LayerA")]},
            {"name": "b", "inputs": [], "agents": [agent("y", "LayerB")]},
        ]
    )
    model = ScriptedChatModel(rules=[(r"You are LayerA", "AAA"), (r"You are LayerB", "BBB")])
    out = ann.compile_graph(spec, models=model).invoke({"input": "T"})
    b = next(c["text"] for c in model.calls if "You are LayerB" in c["text"])
    assert "AAA" not in b
    assert out["output"] == "BBB" and out["layer_outputs"]["a"] == "AAA"


class _MetadataSpy(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_chat_model_start(self, serialized, messages, *, metadata=None, **kwargs):  # type: ignore[override]
        self.seen.append(dict(metadata or {}))


def test_metadata_reaches_every_llm_run(three_layer_spec):
    spy = _MetadataSpy()
    graph = ann.compile_graph(three_layer_spec, models=ScriptedChatModel(default="Answer: 1"))
    graph.invoke({"input": "q"}, config={"callbacks": [spy]})
    assert len(spy.seen) == 5
    pairs = sorted((m["ann_layer"], m["ann_agent"]) for m in spy.seen)
    assert pairs == [
        ("answer", "writer"),
        ("solve", "a"),
        ("solve", "b"),
        ("solve", "c"),
        ("understand", "reader"),
    ]
    assert {m["ann_spec"] for m in spy.seen} == {three_layer_spec.fingerprint}


def test_models_mapping_routes_agents_to_named_models():
    spec = make_spec(
        [{"name": "l", "agents": [agent("x", "X"), agent("y", "Y", model="fast")]}],
        models={"default": "local", "fast": "local"},
    )
    slow = ScriptedChatModel(default="slow says hi", model_name="slow")
    fast = ScriptedChatModel(default="fast says hi", model_name="fast")
    out = ann.compile_graph(spec, models={"default": slow, "fast": fast}).invoke({"input": "t"})
    assert len(slow.calls) == 1 and "You are X" in slow.calls[0]["text"]
    assert len(fast.calls) == 1 and "You are Y" in fast.calls[0]["text"]
    assert out["output"] == "fast says hi"


def test_agent_temperature_and_max_tokens_are_bound():
    spec = make_spec([{"name": "l", "agents": [agent("x", temperature=0.3, max_tokens=17)]}])
    model = ScriptedChatModel(default="ok")
    ann.compile_graph(spec, models=model).invoke({"input": "t"})
    assert model.calls[0]["kwargs"]["temperature"] == 0.3
    assert model.calls[0]["kwargs"]["max_tokens"] == 17


class _StatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def test_server_errors_are_retried_but_bad_requests_are_not():
    spec = make_spec([{"name": "l", "agents": [agent("x")]}])
    flaky = ScriptedChatModel(responses=[_StatusError(503), _StatusError(429), "recovered"])
    out = ann.compile_graph(spec, models=flaky).invoke({"input": "t"})
    assert out["output"] == "recovered" and len(flaky.calls) == 3

    bad = ScriptedChatModel(responses=[_StatusError(400), "never"])
    with pytest.raises(_StatusError):
        ann.compile_graph(spec, models=bad).invoke({"input": "t"})
    assert len(bad.calls) == 1


async def _ainvoke(graph, payload):
    return await graph.ainvoke(payload)


def test_ainvoke_matches_invoke(three_layer_spec):
    import asyncio

    model = ScriptedChatModel(
        rules=[(r"You are Solver A", "Answer: 5"), (r"You are Solver", "Answer: 6")],
        default="Answer: 6",
    )
    graph = ann.compile_graph(three_layer_spec, models=model)
    sync_out = graph.invoke({"input": "q"})
    async_out = asyncio.run(_ainvoke(graph, {"input": "q"}))
    assert sync_out == async_out


def test_unknown_spec_input_type_is_rejected():
    with pytest.raises(TypeError):
        ann.build_graph(42)  # type: ignore[arg-type]


def test_build_graph_accepts_a_path_and_a_dict(tmp_path, three_layer_spec):
    path = ann.save_spec(three_layer_spec, tmp_path / "s.yaml")
    assert set(ann.build_graph(path).nodes) == {"understand", "solve", "answer"}
    data = three_layer_spec.model_dump()
    assert set(ann.build_graph(data).nodes) == {"understand", "solve", "answer"}
    data["layers"][0]["aggregator"] = "nope"
    with pytest.raises(ann.SpecError) as err:
        ann.build_graph(data)
    assert "layers[0].aggregator" in str(err.value)
