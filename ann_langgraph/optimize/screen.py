"""Minibatch screening (GEPA's acceptance test): a model-written candidate is scored first on
the minibatch it was written from, against its parent's scores there (the forward pass already
paid for them); only one that does strictly better goes on to a validation run.

Bootstrapped demos and fixed operators are not written from the minibatch's failures, so they
go straight on (``SCREENED_SOURCES``). What a screened-out candidate would have cost on
validation is recorded as calls saved.
"""

from __future__ import annotations

from typing import Any

from ..spec import GraphSpec
from .context import OptimizerContext
from .state import OptimizerState, add_usage, usage_of

__all__ = ["SCREENED_SOURCES", "ScreenCandidates", "screen_verdict"]

SCREENED_SOURCES = ("repairer", "reflection", "merge")


def screen_verdict(scores: dict[str, float], parent: dict[str, float]) -> tuple[bool, str]:
    """(passes, why): passes only when its minibatch sum beats the parent's on the same ids."""
    mine = sum(scores.values())
    theirs = sum(parent.get(k, 0.0) for k in scores)
    n = len(scores)
    if mine > theirs:
        return True, f"minibatch {mine:g}/{n} beats its parent's {theirs:g}/{n}"
    return False, f"minibatch {mine:g}/{n} does not beat its parent's {theirs:g}/{n}"


class ScreenCandidates:
    """Score valid model-written candidates on the step's minibatch; drop those that lose."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.ctx.cfg
        candidates = list(state.get("candidates") or [])
        if not cfg.screening:
            return {}
        results = state["batch"]["results"]
        parent = {str(r["id"]): float(r["score"]) for r in results}
        by_id = {str(ex.get("id", i)): ex for i, ex in enumerate(state["train"])}
        examples = [by_id[k] for k in parent if k in by_id]
        n_val = len(state.get("val") or [])
        out: list[dict[str, Any]] = []
        usage: dict[str, Any] = {}
        for index, cand in enumerate(candidates):
            if not cand["valid"] or cand.get("source", "repairer") not in SCREENED_SOURCES:
                out.append(cand)
                continue
            left = ctx.budget.short_of(len(examples) + n_val, state.get("usage"), usage)
            if left is not None:
                why = (
                    f"rollout budget: {left} left, screening and validating it needs "
                    f"{len(examples) + n_val}"
                )
                out.append({**cand, "valid": False, "reason": why, "budget_stop": True})
                continue
            report = ctx.run_eval(
                GraphSpec.model_validate(cand["spec"]),
                examples,
                label=f"screening candidate {index + 1}/{len(candidates)} on its minibatch",
                ann_phase="screen",
                ann_epoch=state["epoch"],
                ann_step=state["step"],
                ann_candidate=f"{state['global_step']}.{index}",
            )
            usage = add_usage(usage, usage_of(report))
            scores = {r.id: r.score for r in report.results}
            passed, why = screen_verdict(scores, parent)
            per_example = (report.calls / max(1, report.n)) if report.n else 1.0
            screen = {
                "passed": passed,
                "reason": why,
                "score": sum(scores.values()) / max(1, len(scores)),
                "parent": sum(parent.get(k, 0.0) for k in scores) / max(1, len(scores)),
                "n": len(scores),
            }
            if not passed:
                screen["examples_saved"] = n_val
                screen["calls_saved_est"] = round(per_example * n_val)
                cand = {**cand, "valid": False, "reason": f"screened out: {why}"}
            out.append({**cand, "screen": screen})
        ctx.emit(
            "screened",
            passed=sum(1 for c in out if (c.get("screen") or {}).get("passed")),
            dropped=sum(1 for c in out if c.get("screen") and not c["screen"]["passed"]),
        )
        return {"candidates": out, "usage": usage}

    @staticmethod
    def route(state: OptimizerState) -> str:
        return "evaluate_candidate" if any(c["valid"] for c in state["candidates"]) else "momentum"
