"""``--reproducible``: one request at a time, no prompt reuse, so a first run repeats exactly.

Unit tests pin what the mode changes (slots, the engine request, the CLI switch); the marked
test runs ``ann eval --reproducible`` twice on the real embedded engine and compares every
output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from typer.testing import CliRunner

from ann_langgraph.cli import app
from ann_langgraph.local import LocalChatModel
from ann_langgraph.local import slots as slots_module
from ann_langgraph.local.protocol import Plan

ROOT = Path(__file__).resolve().parents[1]
ENV = slots_module.ENV_REPRODUCIBLE


def test_reproducible_mode_serves_one_request_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANN_LOCAL_SLOTS", "4")
    monkeypatch.delenv(ENV, raising=False)
    assert slots_module.default_slots() == 4
    monkeypatch.setenv(ENV, "1")
    assert slots_module.default_slots() == 1  # wins over ANN_LOCAL_SLOTS
    assert slots_module.engine_slots(1) == 1  # no spare slot keeps an old prompt
    monkeypatch.setenv(ENV, "0")
    assert not slots_module.reproducible()


def test_reproducible_engine_requests_compute_the_whole_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = LocalChatModel(max_tokens=8)
    messages = [HumanMessage("Say hi.")]
    monkeypatch.delenv(ENV, raising=False)
    plain = Plan.build(model, messages, None, {}, mode="engine")
    assert "cache_prompt" not in plain.final["extra_body"]
    monkeypatch.setenv(ENV, "1")
    plan = Plan.build(model, messages, None, {}, mode="engine")
    assert plan.final["extra_body"]["cache_prompt"] is False
    assert plan.final["seed"] == 0  # sampling stays seeded per sample
    fallback = Plan.build(model, messages, None, {}, mode="python")  # one slot already
    assert "cache_prompt" not in fallback.final["extra_body"]


def test_the_cli_switch_turns_the_mode_on_before_any_model_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "0")  # recorded, so the test leaves the variable as it found it
    args = ["train", "graphs/sentiment.yaml", "--train", "data/sentiment/train.jsonl"]
    args += ["--val", "data/sentiment/val.jsonl", "--metric", "label_match", "--dry-run"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert os.environ[ENV] == "0"
    result = CliRunner().invoke(app, [*args, "--json", "--reproducible"])
    assert result.exit_code == 0, result.output
    assert os.environ[ENV] == "1"


def _eval_outputs(out: Path) -> list[tuple[str, str]]:
    command = [sys.executable, "-m", "ann_langgraph.cli", "eval", "graphs/dates.yaml"]
    command += ["--dataset", "data/dates/val.jsonl", "--metric", "exact_match", "--limit", "24"]
    command += ["--no-cache", "--reproducible", "--out", str(out), "--json"]
    env = {**os.environ, "ANN_LOCAL_MODEL": "smollm2"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [(row["id"], row["output"]) for row in rows]


@pytest.mark.local_model
def test_two_reproducible_runs_agree_on_every_output(tmp_path: Path) -> None:
    first = _eval_outputs(tmp_path / "first")
    second = _eval_outputs(tmp_path / "second")
    assert len(first) == 24 and all(text for _, text in first)
    assert first == second
