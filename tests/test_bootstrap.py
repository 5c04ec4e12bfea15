"""`ann init` / init_spec: a model designs the first spec; invalid designs are retried."""

from __future__ import annotations

from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.bootstrap import init_spec
from ann_langgraph.cli import app
from ann_langgraph.testing import ScriptedChatModel

GOOD = {
    "answer_format": "last_number",
    "layers": [
        {
            "name": "plan",
            "aggregator": "sequential_cot",
            "agents": [{"id": "planner", "role": "planner", "prompt": "Plan."}],
        },
        {
            "name": "solve",
            "aggregator": "parallel_vote",
            "agents": [
                {"id": "a", "role": "solver", "prompt": "Solve."},
                {"id": "b", "role": "solver", "prompt": "Solve."},
            ],
        },
    ],
}
BAD = {
    "answer_format": "last_number",
    "layers": [
        {
            "name": "x",
            "aggregator": "telepathy",
            "agents": [{"id": "a", "role": "r", "prompt": "p"}],
        }
    ],
}


def test_model_design_becomes_a_valid_spec():
    model = ScriptedChatModel(responses=[GOOD])
    result = init_spec("Add numbers.", model=model, examples=[{"input": "1+1", "target": "2"}])
    assert result.from_model and result.attempts == 1
    assert [layer.name for layer in result.spec.layers] == ["plan", "solve"]
    assert result.spec.description == "Add numbers." and result.spec.answer_format == "last_number"
    assert "1+1" in model.calls[0]["text"] and "parallel_vote" in model.calls[0]["text"]


def test_invalid_design_is_retried_with_the_error_shown():
    model = ScriptedChatModel(responses=[BAD, GOOD])
    result = init_spec("Add numbers.", model=model)
    assert result.from_model and result.attempts == 2
    assert "unknown aggregator 'telepathy'" in model.calls[1]["text"]
    assert any("telepathy" in n for n in result.notes)


def test_garbage_falls_back_to_the_template():
    model = ScriptedChatModel(default="I like turtles")
    result = init_spec("Summarise text.", model=model, attempts=2)
    assert not result.from_model and len(model.calls) == 2
    assert [layer.name for layer in result.spec.layers] == ["analyse", "solve", "answer"]
    assert "template" in result.notes[-1]


def test_init_command_writes_editable_yaml(tmp_path):
    model = ScriptedChatModel(responses=[GOOD])
    ann.register_model("init-scripted", lambda: model, replace=True)
    out = tmp_path / "spec.yaml"
    runner = CliRunner()
    result = runner.invoke(
        app, ["init", "--task", "Add numbers.", "--out", str(out), "--model", "init-scripted"]
    )
    assert result.exit_code == 0, result.output
    assert ann.load_spec(out).layers[1].aggregator == "parallel_vote"
    again = runner.invoke(
        app, ["init", "--task", "Add numbers.", "--out", str(out), "--model", "init-scripted"]
    )
    assert again.exit_code == 2 and "--force" in again.output
