"""Commit or roll back: the best complete candidate must beat the current spec on validation
by ``min_delta`` and, where the paired test is on, win a one-sided sign test at ``alpha``
(acceptance asks a directional question: is the candidate better?). Under
``objective="cost"``, when none does, the cheapest candidate that is as accurate (a
non-inferiority test with ``margin``) at ``min_saving`` fewer tokens per example is committed
instead (``optimize.objective``)."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from ..patch import apply_patch
from ..spec import GraphSpec
from ..stats import paired_sign_test, sign_test_p
from .config import OptimizerConfig
from .context import OptimizerContext
from .objective import cost_verdict
from .pool import pool_entry, step_spec
from .state import OptimizerState

# paired_sign_test and sign_test_p live in ann_langgraph.stats; re-exported for old imports.
__all__ = ["Decide", "paired_active", "paired_sign_test", "sign_test_p"]


def paired_active(cfg: OptimizerConfig, n_val: int) -> bool:
    """The paired test is on when asked for, or by default where ``n`` lets it decide."""
    if cfg.paired_test is not None:
        return cfg.paired_test
    return n_val >= cfg.paired_min_n


class Decide:
    """Pick the best complete candidate and commit it (a new version) or roll back."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.ctx.cfg
        best = state["best_score"]
        valid = [c for c in state["candidates"] if c["valid"]]
        if not valid:  # none was scored (the rollout budget stopped them): nothing to decide
            return {}
        complete = [c for c in valid if not c.get("early_stop")]
        top = max(complete or valid, key=lambda c: c["val_score"])
        # an early-stopped candidate's mean covers part of the set: no delta to report
        delta = top["val_score"] - best if complete else None
        accept = delta is not None and delta > 0 and delta >= cfg.min_delta
        p_value = None
        if accept and paired_active(cfg, len(state["best_val"])):
            diffs = [top["val"].get(k, 0.0) - v for k, v in state["best_val"].items()]
            p_value = sign_test_p(diffs, alternative="greater")
            accept = p_value <= cfg.alpha
        committed_for = "accuracy" if accept else None
        cost_note: dict[str, Any] | None = None
        if not accept and cfg.objective == "cost" and complete and state.get("best_tokens"):
            top, cost_note = _cheaper(complete, state, cfg, fallback=top)
            accept = bool(cost_note["accept"])
            committed_for = "cost" if accept else None
            if accept:
                delta = top["val_score"] - best
        if accept and cfg.review:
            answer = interrupt(
                {
                    "question": "Commit this patch?",
                    "layer": top["layer"],
                    "patch": top["patch"],
                    "val_score": top["val_score"],
                    "best": best,
                }
            )
            accept, top = _review(answer, top, state)
        # every fully validated candidate joins the pool (optimize.pool), committed or not
        pool_size = len(state.get("pool") or [])
        joined: list[dict[str, Any]] = []
        pool_ids: dict[int, int] = {}
        for c in complete:
            pool_ids[id(c)] = pool_size + len(joined)
            joined.append(
                pool_entry(
                    pool_size + len(joined),
                    c["spec"],
                    c["val"],
                    parent=c.get("parent"),
                    global_step=state["global_step"],
                    source=str(c.get("source", "repairer")),
                    version=state["version"] + 1 if accept and c is top else None,
                )
            )
        candidates = [
            {
                **{k: v for k, v in c.items() if k not in ("spec", "val", "tokens")},
                "before": best,
                "accepted": accept and c is top,
                **({"pool_id": pool_ids[id(c)]} if id(c) in pool_ids else {}),
            }
            for c in state["candidates"]
        ]
        decision = {
            "accepted": accept,
            "layer": top["layer"],
            "delta": delta,
            "p_value": p_value,
            "best_before": best,
            "objective": cfg.objective,
            "committed_for": committed_for if accept else None,
        }
        if cost_note is not None:
            decision["cost"] = cost_note
        update: dict[str, Any] = {"candidates": candidates, "decision": decision}
        if joined:
            update["pool"] = joined
        if accept:
            version = state["version"] + 1
            update.update(
                spec=top["spec"],
                version=version,
                best_score=top["val_score"],
                best_val=top["val"],
                best_tokens=top.get("tokens") or {},
                versions=[
                    {
                        "version": version,
                        "parent": state["version"],
                        "spec": top["spec"],
                        "patch": top["patch"],
                        "rationale": (top["patch"] or {}).get("rationale", ""),
                        "val_score": top["val_score"],
                        "val_ci": top.get("val_ci"),
                        "val_n": len(top["val"]),
                        "p_value": p_value,
                        "global_step": state["global_step"],
                        "pool_id": pool_ids.get(id(top)),
                        "pool_parent": top.get("parent"),
                        "committed_for": committed_for,
                        **(top.get("cost") or {}),
                    }
                ],
            )
            decision["version"] = version
        ctx.emit("decision", **decision)
        return update


def _cheaper(
    complete: list[dict[str, Any]],
    state: OptimizerState,
    cfg: OptimizerConfig,
    *,
    fallback: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Under ``objective="cost"``: the cheapest fully validated candidate that passes the cost
    rule (optimize.objective), else the cheapest one, with the numbers that decided."""
    judged = [
        (
            c,
            cost_verdict(
                c["val"],
                state["best_val"],
                c.get("tokens") or {},
                state["best_tokens"],
                margin=cfg.margin,
                min_saving=cfg.min_saving,
                alpha=cfg.alpha,
            ),
        )
        for c in complete
    ]
    passing = [cv for cv in judged if cv[1].accept]
    chosen, verdict = min(passing or judged, key=lambda cv: cv[1].tokens)
    note = {
        "accept": verdict.accept,
        "reason": verdict.reason,
        "layer": chosen["layer"],
        "lower_bound": verdict.lower_bound,
        "margin": cfg.margin,
        "saving": verdict.saving,
        "min_saving": cfg.min_saving,
        "tokens_per_example": verdict.tokens,
        "tokens_per_example_before": verdict.tokens_before,
    }
    return (chosen if verdict.accept else fallback), note


def _review(answer: Any, top: dict[str, Any], state: OptimizerState) -> tuple[bool, dict[str, Any]]:
    """Interpret a person's answer to the review interrupt: approve, reject, or an edited patch."""
    if isinstance(answer, bool):
        return answer, top
    if isinstance(answer, str):
        return answer.strip().lower() in ("y", "yes", "approve", "accept", "ok"), top
    if isinstance(answer, dict) and "patch" in answer:
        spec = GraphSpec.model_validate(step_spec(state))
        edited = apply_patch(spec, answer["patch"])
        return True, {**top, "patch": answer["patch"], "spec": edited.model_dump(mode="json")}
    return False, top
