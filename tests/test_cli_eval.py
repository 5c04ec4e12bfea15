"""`ann eval`: a spec on a benchmark split or a dataset file, with scripted models (offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.cli import app
from ann_langgraph.testing import ScriptedChatModel
from evals import Benchmark, register_benchmark

runner = CliRunner()

SPEC = """\
name: toy-eval
description: Add two numbers.
answer_format: last_number
layers:
  - name: solve
    agents:
      - {id: adder, role: Toy adder, prompt: Add the numbers.}
"""


def _rows(split: str, data_dir: Path) -> list[dict[str, Any]]:
    # Sums of i+1: right for even i; the scripted adder always answers 2*i+1 ... wrong for odd.
    return [
        {
            "id": f"{split}-{i}",
            "input": f"What is {i}+{i + 1}?",
            "target": 2 * i + 1,
            "level": i % 3,
        }
        for i in range(6)
    ]


def _respond(messages: list[Any], **kwargs: Any) -> str:
    text = str(messages[-1].content)
    a = int(text.split("What is ")[1].split("+")[0])
    return f"Answer: {2 * a + 1}" if a % 2 == 0 else "Answer: 0"


@pytest.fixture
def setup(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    register_benchmark(
        Benchmark(
            name="toy-eval",
            description="Add two numbers.",
            spec=str(spec),
            answer_format="last_number",
            splits={"dev": "six sums", "train": "six sums"},
            loader=_rows,
            metric_factory=lambda: ann.get_metric("numeric_match"),
            breakdown=("level",),
            extra_metrics={"says_answer": lambda: lambda ex, out: float("Answer:" in out)},
        ),
        replace=True,
    )
    model = ScriptedChatModel(respond=_respond, model_name="scripted-eval")
    ann.register_model("eval-scripted", lambda: model, replace=True)
    return spec, model


def _args(spec: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["eval", str(spec), "--model", "eval-scripted", "--data-dir", str(tmp_path), *extra]


def test_eval_on_a_benchmark_prints_and_writes_results(tmp_path, setup):
    spec, model = setup
    out = tmp_path / "out"
    result = runner.invoke(
        app, _args(spec, tmp_path, "--benchmark", "toy-eval", "--limit", "5", "--out", str(out))
    )
    assert result.exit_code == 0, result.output
    # i = 0, 2, 4 right out of 5
    assert "numeric_match 60.0% (95% CI 23.1-88.2%), n=5" in result.output
    assert "5 calls (0 cached)" in result.output and "$0.0000" in result.output
    assert "says_answer: 100.0%" in result.output
    assert "accuracy by level" in result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"dev-{i}" for i in range(5)]
    assert [r["score"] for r in rows] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert all(r["input_tokens"] > 0 and r["calls"] == 1 for r in rows)
    assert rows[1]["breakdown"] == {"level": 1} and rows[0]["extra"] == {"says_answer": 1.0}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 5 and summary["mean"] == pytest.approx(0.6)
    assert summary["calls"] == 5 and summary["input_tokens"] > 0
    levels = summary["breakdown"]["level"]  # levels 0,1,2,0,1 with scores 1,0,1,0,1
    assert {k: (v["n"], v["mean"]) for k, v in levels.items()} == {
        "0": (2, 0.5),
        "1": (2, 0.5),
        "2": (1, 1.0),
    }
    assert levels["2"]["ci_low"] == pytest.approx(0.2065, abs=1e-3)
    assert "--benchmark toy-eval --split dev --limit 5" in summary["details"]["command"]
    md = (out / "summary.md").read_text()
    assert "| numeric_match | 60.0% | 23.1%-88.2% | 5 |" in md and "### By level" in md
    assert len((out / "records.jsonl").read_text().splitlines()) >= 5
    assert ann.load_spec(out / "spec.yaml").name == "toy-eval"

    # Same --out again: every call comes from the cache, same numbers, nothing paid.
    calls = len(model.calls)
    again = runner.invoke(
        app,
        [
            *_args(spec, tmp_path, "--benchmark", "toy-eval", "--limit", "5", "--out", str(out)),
            "--json",
        ],
    )
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert len(model.calls) == calls and data["cached_calls"] == 5 and data["mean"] == 0.6


def test_eval_on_a_dataset_file_with_a_metric(tmp_path, setup):
    spec, _ = setup
    data = tmp_path / "d.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"input": f"What is {i}+{i + 1}?", "target": 2 * i + 1}) for i in range(4)
        )
    )
    result = runner.invoke(
        app,
        [
            "eval",
            str(spec),
            "--dataset",
            str(data),
            "--metric",
            "numeric_match",
            "--model",
            "eval-scripted",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 4 and summary["mean"] == 0.5 and summary["breakdown"] == {}
    assert summary["metric"] == "numeric_match"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --benchmark NAME or --dataset FILE"),
        (["--benchmark", "nope"], "unknown benchmark 'nope'"),
        (["--benchmark", "toy-eval", "--split", "test"], "has no split 'test'"),
        (["--benchmark", "toy-eval", "--metric", "exact_match"], "brings its own metric"),
        (["--dataset", "missing.jsonl"], "--dataset:"),
    ],
)
def test_eval_rejects_bad_inputs_in_one_line(tmp_path, setup, extra, message):
    spec, model = setup
    result = runner.invoke(app, ["eval", str(spec), "--model", "eval-scripted", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert model.calls == []


def test_eval_missing_data_dir_is_a_clean_error(tmp_path, setup):
    spec, _ = setup
    result = runner.invoke(
        app, ["eval", str(spec), "--benchmark", "toy-eval", "--data-dir", str(tmp_path / "no")]
    )
    assert result.exit_code == 2 and "does not exist" in result.output


def test_eval_where_every_example_fails_exits_1_after_writing(tmp_path, setup):
    spec, _ = setup
    broken = ScriptedChatModel(default=ValueError("model exploded"))
    ann.register_model("eval-broken", lambda: broken, replace=True)
    out = tmp_path / "o"
    result = runner.invoke(
        app,
        [
            "eval",
            str(spec),
            "--benchmark",
            "toy-eval",
            "--data-dir",
            str(tmp_path),
            "--model",
            "eval-broken",
            "--limit",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1
    assert "every example failed" in result.output and "model exploded" in result.output
    assert json.loads((out / "summary.json").read_text())["errors"] == 2


def test_the_library_does_not_import_evals():
    code = "import sys, ann_langgraph, ann_langgraph.cli; print('evals' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "False"
