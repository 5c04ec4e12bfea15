"""TraceRecorder turns LangGraph runs into ExecutionRecords; JSONL round trip."""

from __future__ import annotations

import json

import pytest

import ann_langgraph as ann
from ann_langgraph.testing import ScriptedChatModel
from ann_langgraph.tracing import LocalTraceSource, record_from_run


def _run(spec, model, **config):
    rec = ann.TraceRecorder()
    out = ann.compile_graph(spec, models=model).invoke(
        {"input": "How much is 3*4?"}, config={"callbacks": [rec], **config}
    )
    return out, rec


def test_one_record_per_agent_call_with_ids_tokens_and_text(three_layer_spec):
    model = ScriptedChatModel(
        rules=[
            (r"You are Reader", "three and four"),
            (r"You are Solver A", "Answer: 12"),
            (r"You are Solver B", "Answer: 12"),
            (r"You are Solver C", "Answer: 11"),
            (r"You are Writer", "It is 12"),
        ]
    )
    _, rec = _run(three_layer_spec, model)
    llm = [r for r in rec.records if r.kind == "llm"]
    assert len(llm) == 5 == len(model.calls)
    by_agent = {r.agent_id: r for r in llm}
    assert {(r.layer, r.agent_id) for r in llm} == {
        ("understand", "reader"),
        ("solve", "a"),
        ("solve", "b"),
        ("solve", "c"),
        ("answer", "writer"),
    }
    assert by_agent["reader"].output == "three and four"
    assert "How much is 3*4?" in by_agent["reader"].input
    assert by_agent["reader"].input.startswith("system: You are Reader")
    assert "three and four" in by_agent["a"].input  # the solve layer reads the first layer
    assert by_agent["c"].output == "Answer: 11"
    assert (
        by_agent["a"].aggregator == "parallel_vote"
        and by_agent["reader"].aggregator == "sequential_cot"
    )
    for r in llm:
        # ScriptedChatModel counts whitespace tokens: check the recorder copied them exactly.
        call = next(c for c in model.calls if c["text"] == r.input)
        assert r.input_tokens == len(call["text"].split()) and r.output_tokens == len(
            r.output.split()
        )
        assert r.model == "scripted" and r.error is None and r.spec == three_layer_spec.fingerprint
        assert r.run_id and r.trace_id and r.latency_s >= 0
    assert len({r.trace_id for r in llm}) == 1
    decisions = [r for r in rec.records if r.kind == "decision"]
    assert len(decisions) == 1
    assert json.loads(decisions[0].output)["counts"] == {"12": 2, "11": 1}


def test_example_id_comes_from_run_metadata(three_layer_spec):
    _, rec = _run(
        three_layer_spec, ScriptedChatModel(default="1"), metadata={"ann_example_id": "ex-7"}
    )
    assert {r.example_id for r in rec.records} == {"ex-7"}


def test_errors_are_recorded(three_layer_spec):
    model = ScriptedChatModel(
        rules=[(r"You are Reader", ValueError("model exploded"))], default="1"
    )
    rec = ann.TraceRecorder()
    graph = ann.compile_graph(three_layer_spec, models=model)
    with pytest.raises(ValueError, match="model exploded"):
        graph.invoke({"input": "q"}, config={"callbacks": [rec]})
    failed = [r for r in rec.records if r.error]
    assert failed and failed[0].agent_id == "reader" and "model exploded" in failed[0].error


def test_jsonl_round_trip_and_local_source(tmp_path, three_layer_spec):
    _, rec = _run(
        three_layer_spec, ScriptedChatModel(default="Answer: 2"), metadata={"ann_example_id": "e1"}
    )
    path = rec.save(tmp_path / "records.jsonl")
    loaded = ann.load_records(path)
    assert loaded == rec.records
    rec.save(path, append=True)
    source = LocalTraceSource(path)
    assert len(source.records()) == 2 * len(rec.records)
    assert source.records(example_ids=["other"]) == []


def test_record_from_serialized_run_dict_matches_live_record(three_layer_spec):
    """Runs fetched from LangSmith arrive as dicts: the same record must come out."""
    _, rec = _run(three_layer_spec, ScriptedChatModel(default="Answer: 2"))
    live = next(r for r in rec.records if r.kind == "llm")
    as_dict = {
        "id": live.run_id,
        "trace_id": live.trace_id,
        "run_type": "llm",
        "name": "ScriptedChatModel",
        "start_time": live.start_time,
        "end_time": live.start_time,
        "error": None,
        "extra": {
            "metadata": {
                "ann_layer": live.layer,
                "ann_agent": live.agent_id,
                "ann_aggregator": live.aggregator,
                "ann_spec": live.spec,
                "ls_model_name": "scripted",
            }
        },
        "inputs": {
            "messages": [
                [
                    {
                        "lc": 1,
                        "type": "constructor",
                        "id": ["langchain", "schema", "messages", "SystemMessage"],
                        "kwargs": {
                            "content": live.input.split("\nhuman: ")[0].removeprefix("system: "),
                            "type": "system",
                        },
                    },
                    {
                        "lc": 1,
                        "type": "constructor",
                        "id": ["langchain", "schema", "messages", "HumanMessage"],
                        "kwargs": {"content": live.input.split("\nhuman: ")[1], "type": "human"},
                    },
                ]
            ]
        },
        "outputs": {
            "generations": [
                [
                    {
                        "text": live.output,
                        "message": {
                            "lc": 1,
                            "type": "constructor",
                            "id": ["langchain", "schema", "messages", "AIMessage"],
                            "kwargs": {
                                "content": live.output,
                                "type": "ai",
                                "usage_metadata": {
                                    "input_tokens": live.input_tokens,
                                    "output_tokens": live.output_tokens,
                                },
                                "response_metadata": {"finish_reason": live.finish_reason},
                            },
                        },
                    }
                ]
            ]
        },
    }
    rebuilt = record_from_run(as_dict)
    assert rebuilt is not None
    assert rebuilt.model_dump(exclude={"latency_s"}) == live.model_dump(exclude={"latency_s"})


def test_runs_without_ann_metadata_are_ignored():
    assert record_from_run({"run_type": "llm", "extra": {"metadata": {}}}) is None
    model = ScriptedChatModel(default="hi")
    rec = ann.TraceRecorder()
    model.invoke("hello", config={"callbacks": [rec]})
    assert rec.records == []
