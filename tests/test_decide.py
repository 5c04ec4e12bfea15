"""Acceptance, pinned at its boundaries: ``min_delta`` at and just past the gain (power-of-two
scores, so the arithmetic is exact), the paired sign test's veto of a higher mean with the p it
used recorded, and the one-sided test that acceptance asks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ann_langgraph.optimize.config import OptimizerConfig
from ann_langgraph.optimize.decide import Decide

SPEC = {
    "name": "t",
    "description": "d",
    "layers": [{"name": "solve", "agents": [{"id": "a", "role": "r", "prompt": "p"}]}],
}


def _state(current: list[float], candidate: list[float]) -> dict[str, Any]:
    keys = [f"v{i}" for i in range(len(current))]
    val = dict(zip(keys, candidate, strict=True))
    new_spec = {**SPEC, "description": "d2"}
    return {
        "spec": SPEC,
        "version": 0,
        "global_step": 0,
        "best_score": sum(current) / len(current),
        "best_val": dict(zip(keys, current, strict=True)),
        "candidates": [
            {
                "valid": True,
                "layer": "solve",
                "patch": {"rationale": "r", "ops": []},
                "spec": new_spec,
                "val": val,
                "val_score": sum(candidate) / len(candidate),
            }
        ],
    }


def _decide(state: dict[str, Any], **cfg: Any) -> dict[str, Any]:
    events: list[tuple[str, dict[str, Any]]] = []
    ctx = SimpleNamespace(cfg=OptimizerConfig(**cfg), emit=lambda kind, **d: events.append(d))
    out = Decide(ctx)(state)  # type: ignore[arg-type]
    assert events and events[-1] == out["decision"]  # the decision is emitted as recorded
    return out


# 4 of 8 -> 5 of 8: a gain of exactly 0.125
CURRENT = [1.0] * 4 + [0.0] * 4
BETTER = [1.0] * 5 + [0.0] * 3


def test_a_gain_equal_to_min_delta_is_accepted():
    out = _decide(_state(CURRENT, BETTER), min_delta=0.125, paired_test=False)
    assert out["decision"]["accepted"] is True and out["decision"]["delta"] == 0.125
    assert out["version"] == 1 and out["best_score"] == 0.625
    assert out["versions"][0]["parent"] == 0


def test_a_gain_below_min_delta_is_rejected():
    out = _decide(_state(CURRENT, BETTER), min_delta=0.25, paired_test=False)
    assert out["decision"]["accepted"] is False and "version" not in out
    out = _decide(_state(CURRENT, BETTER), min_delta=0.1250001, paired_test=False)
    assert out["decision"]["accepted"] is False


def test_no_gain_is_rejected_even_with_min_delta_zero():
    out = _decide(_state(CURRENT, CURRENT), min_delta=0.0, paired_test=False)
    assert out["decision"]["accepted"] is False and out["decision"]["delta"] == 0.0
    worse = [1.0] * 3 + [0.0] * 5
    assert _decide(_state(CURRENT, worse), paired_test=False)["decision"]["accepted"] is False


def test_the_sign_test_vetoes_a_higher_mean():
    # 3 wins, 2 losses: the mean rises by 1/8, but P(>= 3 of 5 | no difference) = 16/32
    current = [0.0] * 3 + [1.0] * 2 + [1.0] * 3
    candidate = [1.0] * 3 + [0.0] * 2 + [1.0] * 3
    state = _state(current, candidate)
    assert state["candidates"][0]["val_score"] > state["best_score"]
    out = _decide(state, paired_test=True, alpha=0.1)
    assert out["decision"]["accepted"] is False
    assert out["decision"]["p_value"] == pytest.approx(0.5)
    assert "version" not in out and not out["candidates"][0]["accepted"]


def test_acceptance_asks_the_one_sided_question():
    # 4 wins, no losses: one-sided p = 1/16 passes alpha 0.1; the two-sided 1/8 would not
    current = [0.0] * 4 + [1.0] * 4
    candidate = [1.0] * 8
    out = _decide(_state(current, candidate), paired_test=True, alpha=0.1)
    assert out["decision"]["accepted"] is True
    assert out["decision"]["p_value"] == pytest.approx(1 / 16)
    assert out["versions"][0]["p_value"] == pytest.approx(1 / 16)


def test_the_paired_test_turns_on_by_validation_size():
    # 4 wins and 1 loss on 8 examples (mean +0.375; one-sided p = 6/32): below paired_min_n
    # the test is off, so only the mean decides
    current = [0.0] * 4 + [1.0] * 4
    candidate = [1.0] * 5 + [0.0] + [1.0] * 2
    out = _decide(_state(current, candidate), paired_min_n=9, alpha=0.1)
    assert out["decision"]["accepted"] is True and out["decision"]["p_value"] is None
    out = _decide(_state(current, candidate), paired_min_n=8, alpha=0.1)
    assert out["decision"]["accepted"] is False
    assert out["decision"]["p_value"] == pytest.approx(6 / 32)
