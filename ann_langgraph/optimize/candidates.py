"""Score each valid candidate on the validation set, stopping early once it cannot win.

Scores are in [0, 1]. After each chunk of ``early_chunk`` examples the best case for the rest
(every remaining example scores 1) bounds the candidate's final mean and, with the paired test
on, its sign test. When even that best case loses to the current spec (or cannot pass the
test), the rest is skipped: such a candidate could never be committed, so early rejection
never rejects a winner, and what it skips is recorded as calls saved.
"""

from __future__ import annotations

from typing import Any

from ..spec import GraphSpec
from ..stats import confidence_interval, sign_test_p
from .context import OptimizerContext
from .decide import paired_active
from .objective import cost_cannot_pass, example_tokens, version_cost
from .state import OptimizerState, add_usage, usage_of

__all__ = ["EvaluateCandidates", "cannot_win"]


def cannot_win(
    scores: dict[str, float],
    current: dict[str, float],
    *,
    best: float,
    min_delta: float,
    paired: bool,
    alpha: float,
) -> str | None:
    """Why a partly scored candidate can no longer be committed, or None while it still can.

    ``scores``: the candidate's scores so far; ``current``: the current spec's score for every
    validation example (their keys are the whole validation set).
    """
    rest = [k for k in current if k not in scores]
    n = len(current)
    upper = (sum(scores.values()) + len(rest)) / max(1, n)
    if not (upper - best > 0 and upper - best >= min_delta):
        return (
            f"after {len(scores)} of {n} examples its best possible mean {upper:.3f} cannot "
            f"beat {best:.3f}" + (f" by {min_delta}" if min_delta else "")
        )
    if paired:
        diffs = [scores[k] - current[k] for k in scores]
        diffs += [1.0 - current[k] for k in rest]  # every remaining example a win (or a tie)
        p_best = sign_test_p(diffs, alternative="greater")
        if p_best > alpha:
            return (
                f"after {len(scores)} of {n} examples even winning every remaining one leaves "
                f"the sign test at p={p_best:.3f} > {alpha}"
            )
    return None


class EvaluateCandidates:
    """Validation scores per candidate (chunked, with early rejection; cached by the run)."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.ctx.cfg
        val = state["val"]
        current = dict(state["best_val"])
        paired = paired_active(cfg, len(current))
        size = cfg.early_chunk if cfg.early_rejection else len(val)
        out = []
        usage: dict[str, Any] = {}
        for index, cand in enumerate(state["candidates"]):
            if not cand["valid"]:
                out.append(cand)
                continue
            left = ctx.budget.short_of(len(val), state.get("usage"), usage)
            if left is not None:
                why = f"rollout budget: {left} left, a validation needs {len(val)}"
                out.append({**cand, "valid": False, "reason": why, "budget_stop": True})
                continue
            spec = GraphSpec.model_validate(cand["spec"])
            scores: dict[str, float] = {}
            results: list[Any] = []
            calls = 0
            stop: str | None = None
            for start in range(0, len(val), size):
                report = ctx.run_eval(
                    spec,
                    val[start : start + size],
                    label=f"validating candidate {index + 1}/{len(state['candidates'])} "
                    f"({cand['layer']})",
                    scored_before=list(scores.values()),
                    total=len(val),
                    ann_phase="validate",
                    ann_epoch=state["epoch"],
                    ann_step=state["step"],
                    ann_candidate=f"{state['global_step']}.{index}",
                )
                usage = add_usage(usage, usage_of(report))
                calls += report.calls
                scores.update({r.id: r.score for r in report.results})
                results += report.results
                if cfg.early_rejection and len(scores) < len(val):
                    stop = cannot_win(
                        scores,
                        current,
                        best=state["best_score"],
                        min_delta=cfg.min_delta,
                        paired=paired,
                        alpha=cfg.alpha,
                    )
                    if stop and cfg.objective == "cost":  # it may still win on cost
                        cheaper = cost_cannot_pass(
                            scores, current, margin=cfg.margin, alpha=cfg.alpha
                        )
                        stop = f"{stop}; and {cheaper}" if cheaper else None
                    if stop:
                        break
            mean = sum(scores.values()) / max(1, len(scores))
            low, high = confidence_interval(list(scores.values()))
            cand = {
                **cand,
                "val_score": mean,
                "val": scores,
                "val_ci": [low, high],
                "tokens": example_tokens(results),
                "cost": version_cost(results),
            }
            if stop:
                skipped = len(val) - len(scores)
                cand["early_stop"] = {
                    "reason": stop,
                    "evaluated": len(scores),
                    "of": len(val),
                    "examples_saved": skipped,
                    "calls_saved_est": round(calls / max(1, len(scores)) * skipped),
                }
            ctx.emit(
                "candidate",
                layer=cand["layer"],
                score=mean,
                best=state["best_score"],
                early_stop=bool(stop),
            )
            out.append(cand)
        return {"candidates": out, "usage": usage}
