"""The `ann` command, driven in-process with a registered scripted model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.cli import app
from ann_langgraph.testing import ScriptedChatModel

runner = CliRunner()


@pytest.fixture(autouse=True)
def scripted_model():
    model = ScriptedChatModel(
        rules=[
            (r"route work", {"aggregator": "sequential_cot", "reason": "simple"}),
            (r"careful problem reader", "A pen costs 3 dollars; 4 pens."),
            (r"quick estimator", "3*4 = 12. Answer: 12"),
            (r"Solve the problem", "Answer: 12"),
        ],
        default="Answer: 12",
    )
    ann.register_model("test-scripted", lambda: model, replace=True)
    return model


def test_run_prints_per_layer_view_route_and_answer(scripted_model):
    result = runner.invoke(
        app,
        [
            "run",
            "graphs/math.yaml",
            "--input",
            "A pen costs 3 dollars. How much do 4 pens cost?",
            "--model",
            "test-scripted",
            "--full",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in (
        "understand",
        "reader",
        "solve",
        "solver_a",
        "solver_c",
        "writer",
        "route",
        "sequential_cot",
        "answer (last_number): 12",
    ):
        assert needle in out
    assert "LLM calls" in out
    assert len(scripted_model.calls) == 6  # reader + 3 solvers + router + writer


def test_run_json_is_machine_readable(scripted_model, tmp_path):
    trace = tmp_path / "trace.jsonl"
    result = runner.invoke(
        app,
        [
            "run",
            "graphs/math.yaml",
            "-i",
            "q",
            "-m",
            "test-scripted",
            "--json",
            "--trace",
            str(trace),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] == "12" and data["output"] == "Answer: 12"
    assert set(data["layer_outputs"]) == {"understand", "solve", "answer"}
    assert data["routes"]["answer"]["choice"] == "sequential_cot"
    assert data["totals"]["llm_calls"] == 6
    assert data["totals"]["input_tokens"] == sum(
        r["input_tokens"] for r in data["records"] if r["kind"] == "llm"
    )
    assert len(ann.load_records(trace)) == len(data["records"])


def test_run_without_input_or_with_bad_model_fails_cleanly():
    result = runner.invoke(app, ["run", "graphs/math.yaml"])
    assert result.exit_code == 2 and "--input" in result.output
    result = runner.invoke(
        app, ["run", "graphs/math.yaml", "-i", "q", "-m", "nosuchprovider:model-x"]
    )
    assert result.exit_code == 2
    assert "nosuchprovider" in result.output and "Traceback" not in result.output


def test_run_bad_spec_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nlayers:\n  - name: a\n    aggregator: telepathy\n"
        "    agents: [{id: a, role: r, prompt: p}]\n"
    )
    result = runner.invoke(app, ["run", str(bad), "-i", "q"])
    assert result.exit_code == 2
    assert "layers[0].aggregator" in result.output and "telepathy" in result.output
    assert "Traceback" not in result.output


def test_show_prints_summary_and_mermaid_with_layer_subgraphs():
    result = runner.invoke(app, ["show", "graphs/math.yaml"])
    assert result.exit_code == 0, result.output
    assert "parallel_vote" in result.output and "dynamic" in result.output
    mermaid = runner.invoke(app, ["show", "graphs/math.yaml", "--mermaid"]).output
    assert mermaid.lstrip().startswith("---") or mermaid.lstrip().startswith("graph")
    for layer in ("understand", "solve", "answer"):
        assert f"subgraph {layer}" in mermaid
    assert "ann_spec" not in mermaid  # node metadata is stripped for readability


def test_every_command_has_help():
    for command in ("run", "show", "validate", "schema"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_missing_local_model_is_a_clean_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ANN_LOCAL_MODEL", str(tmp_path / "missing.gguf"))
    result = runner.invoke(app, ["run", "graphs/math.yaml", "-i", "q"])
    assert result.exit_code == 2
    assert "ANN_LOCAL_MODEL" in result.output and "Traceback" not in result.output
