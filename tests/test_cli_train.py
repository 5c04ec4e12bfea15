"""`ann train`, `ann train --dry-run` and `ann metrics`, driven in-process with scripted models."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.cli import app
from ann_langgraph.testing import ScriptedChatModel

runner = CliRunner()

CRITIC = {"summary": "wrong labels", "blame": [{"layer": "label", "reason": "vague prompt"}]}
PATCH = {
    "rationale": "be explicit",
    "ops": [
        {
            "op": "set_prompt",
            "layer": "label",
            "agent": "labeler",
            "prompt": "Answer positive or negative. EXPLICIT",
        }
    ],
}


def _register():
    def respond(messages, **kw):
        system, text = messages[0].content, messages[-1].content
        if "global critic" in system:
            return CRITIC
        if "repair one layer" in system:
            return PATCH
        if "sentiment labeler" in system:
            truth = (
                "negative"
                if any(
                    w in text
                    for w in (
                        "hated",
                        "disliked",
                        "disappointed",
                        "never",
                        "regret",
                        "annoyed",
                        "terrible",
                        "unhappy",
                    )
                )
                else "positive"
            )
            return truth if "EXPLICIT" in system else "It sounds positive to me."
        return "The reviewer has feelings."

    model = ScriptedChatModel(respond=respond, model_name="cli-scripted")
    ann.register_model("cli-scripted", lambda: model, replace=True)
    return model


def test_dry_run_projects_without_any_model_call():
    model = _register()
    result = runner.invoke(
        app,
        [
            "train",
            "graphs/sentiment.yaml",
            "--train",
            "data/sentiment/train.jsonl",
            "--val",
            "data/sentiment/val.jsonl",
            "--metric",
            "label_match",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--model",
            "cli-scripted",
            "--dry-run",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["steps"] == 8  # 2 epochs x ceil(16 / 4)
    assert data["calls"] == data["forward_calls"] + data["optimizer_calls"] > 0
    assert model.calls == []


def test_train_command_improves_the_demo_spec_and_writes_the_run_dir(tmp_path):
    model = _register()
    run_dir = tmp_path / "run"
    args = [
        "train",
        "graphs/sentiment.yaml",
        "--train",
        "data/sentiment/train.jsonl",
        "--val",
        "data/sentiment/val.jsonl",
        "--metric",
        "label_match",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--model",
        "cli-scripted",
        "--optimizer-model",
        "cli-scripted",
        "--run-dir",
        str(run_dir),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["best_score"] == 1.0 and summary["baseline_score"] < 1.0
    assert summary["versions"] == 2
    best = ann.load_spec(summary["best_spec"])
    assert "EXPLICIT" in best.layer("label").agents[0].prompt
    for name in (
        "run.json",
        "history.jsonl",
        "versions.jsonl",
        "spec.v0.yaml",
        "spec.v1.yaml",
        "report.md",
        "learning_curve.png",
        "checkpoints.sqlite",
        "cache.sqlite",
    ):
        assert (run_dir / name).exists(), name
    assert len(model.calls) > 0
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
    # without --json, in a log (not a terminal), each finished step prints a line on stderr
    plain = runner.invoke(app, [*args[:-3], "--run-dir", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    steps = re.findall(r"^train (\d)/2 steps \| .* best val", plain.stderr, re.M)
    assert steps == ["1", "2"]
    # and each evaluation inside a step when it finishes
    assert re.search(r"^train 0/2 steps \| scoring the starting spec: ", plain.stderr, re.M)


def test_train_rejects_bad_inputs_cleanly(tmp_path):
    _register()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "x", "target": "positive"}\nnot json\n')
    result = runner.invoke(
        app,
        [
            "train",
            "graphs/sentiment.yaml",
            "--train",
            str(bad),
            "--val",
            "data/sentiment/val.jsonl",
            "--model",
            "cli-scripted",
        ],
    )
    assert result.exit_code == 2 and "--train" in result.output and ":2" in result.output
    result = runner.invoke(
        app,
        [
            "train",
            "graphs/sentiment.yaml",
            "--train",
            "data/sentiment/train.jsonl",
            "--val",
            "data/sentiment/val.jsonl",
            "--metric",
            "nope",
        ],
    )
    assert result.exit_code == 2 and "label_match" in result.output


def test_metrics_lists_builtins():
    result = runner.invoke(app, ["metrics"])
    assert result.exit_code == 0
    assert {"exact_match", "numeric_match", "label_match", "code_passes_tests"} <= set(
        result.output.split()
    )
