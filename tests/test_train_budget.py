"""Token and cost budgets stop training at a step boundary, with the state saved and the reason
recorded (the call budget is tested in test_optimizer.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ann_langgraph.optimize.graph import Budget
from ann_langgraph.train import TrainResult, train

from .test_optimizer import data, executor, optimizer, solver_spec

# USD per 1M tokens: large, so that a few hundred tokens cost cents
PRICES = {"executor": (1000.0, 2000.0), "optimizer": (5000.0, 10000.0)}


def run(
    run_dir: Path, *, budget: Budget | None = None, resume: bool = False
) -> tuple[TrainResult, int]:
    """Two epochs of two steps each; every patch is harmful, so every step is a full one.
    Returns the result and the number of model calls paid for (cache hits never reach a model)."""
    ex, opt = executor(), optimizer("BAD prompt.")
    result = train(
        solver_spec(),
        train=data(8, "t"),
        val=data(6, "v"),
        metric="numeric_match",
        models=ex,
        optimizer_model=opt,
        epochs=2,
        batch_size=4,
        run_dir=run_dir,
        budget=budget,
        resume=resume,
        prices=PRICES,
        progress=False,
    )
    return result, len(ex.calls) + len(opt.calls)


def _tokens(usage: dict[str, Any]) -> int:
    return int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    result, _ = run(tmp_path_factory.mktemp("unlimited") / "run")
    assert len(result.history) == 4 and result.stop_reason == "epochs done"
    assert all(row["usage"]["cost_usd"] > 0 for row in result.history)  # priced
    return result


def _check_stopped(result: TrainResult, run_dir: Path, steps: int, reason: str) -> None:
    """Stopped after ``steps`` whole steps, with everything on disk and the reason recorded."""
    assert result.stop_reason.startswith(reason), result.stop_reason
    assert len(result.history) == steps
    assert [r["global_step"] for r in result.history] == list(range(steps))
    rows = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    assert rows == json.loads(json.dumps(result.history, default=str))
    assert (run_dir / "best.yaml").exists() and (run_dir / "versions.jsonl").exists()
    assert f"stopped because: {result.stop_reason}" in (run_dir / "report.md").read_text()
    # the checkpoint holds the stop: resuming does nothing and pays for nothing
    again, paid = run(
        run_dir,
        budget=Budget(**json.loads((run_dir / "run.json").read_text())["budget"]),
        resume=True,
    )
    assert paid == 0
    assert again.stop_reason == result.stop_reason and again.history == result.history
    assert again.usage == result.usage


def test_token_budget_stops_at_a_step_boundary(tmp_path, unlimited):
    steps = [_tokens(row["usage"]) for row in unlimited.history]
    baseline = _tokens(unlimited.usage) - sum(steps)
    assert baseline > 0 and all(steps)
    # room for the baseline and one step, not for two: the second step starts (the budget is
    # checked between steps), then training stops
    cap = baseline + steps[0] + 1
    run_dir = tmp_path / "run"
    result, _ = run(run_dir, budget=Budget(max_tokens=cap))
    _check_stopped(result, run_dir, 2, "token budget reached")
    spent = _tokens(result.usage)
    assert spent >= cap > spent - steps[1]  # over the cap by less than the last step
    assert spent == baseline + steps[0] + steps[1]
    assert f"({spent} >= {cap})" in result.stop_reason


def test_cost_budget_with_a_price_table_stops_at_a_step_boundary(tmp_path, unlimited):
    steps = [row["usage"]["cost_usd"] for row in unlimited.history]
    baseline = unlimited.usage["cost_usd"] - sum(steps)
    assert baseline > 0
    cap = baseline + steps[0] + steps[1] / 2
    run_dir = tmp_path / "run"
    result, _ = run(run_dir, budget=Budget(max_usd=cap))
    _check_stopped(result, run_dir, 2, "cost budget reached")
    assert result.usage["cost_usd"] == pytest.approx(baseline + steps[0] + steps[1])
    assert result.usage["cost_usd"] >= cap
    assert json.loads((run_dir / "run.json").read_text())["budget"]["max_usd"] == cap


def test_a_budget_spent_by_the_baseline_allows_no_step(tmp_path, unlimited):
    run_dir = tmp_path / "run"
    result, _ = run(run_dir, budget=Budget(max_tokens=1))
    _check_stopped(result, run_dir, 0, "token budget reached")
    assert result.best_score == result.baseline_score
    assert len(result.versions) == 1
