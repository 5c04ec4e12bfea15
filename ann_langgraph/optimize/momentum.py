"""Momentum: the history of gradients and patches, summarised so later steps reinforce what
worked and never retry what was rejected."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .prompts import normalized

if TYPE_CHECKING:
    from .context import OptimizerContext
    from .copies import TrainingInputs
    from .state import OptimizerState

__all__ = [
    "Momentum",
    "describe_ops",
    "momentum_summary",
    "repeated_reason",
    "smoothed_layer_gradient",
    "unkept_ops",
]

_TEXT_OPS = {"set_prompt": "prompt", "set_role": "role"}


def unkept_ops(
    history: list[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each op of each candidate the history did not keep: (``epoch E step S``, candidate, op)."""
    for row in history:
        tag = f"epoch {row.get('epoch', 0) + 1} step {row.get('step', 0) + 1}"
        for cand in row.get("candidates") or []:
            if cand.get("accepted"):
                continue
            for op in (cand.get("patch") or {}).get("ops") or []:
                yield tag, cand, op


def repeated_reason(patch: dict[str, Any], history: list[dict[str, Any]]) -> str | None:
    """Why the patch repeats a prompt or role an earlier step proposed and did not keep.

    The history tells the repairer "do not retry", and the 1.5B repairer retried anyway: on
    HumanEval it proposed one rejected prompt word for word again in the next step, whose
    critique was about another problem, and paid a validation run for it.
    """
    for index, op in enumerate(patch.get("ops") or []):
        field = _TEXT_OPS.get(str(op.get("op")))
        if field is None or not isinstance(op.get(field), str):
            continue
        mine = (op["op"], op.get("layer"), op.get("agent"), normalized(op[field]))
        for tag, cand, old in unkept_ops(history):
            if not isinstance(old.get(field), str):
                continue
            if (old.get("op"), old.get("layer"), old.get("agent"), normalized(old[field])) == mine:
                outcome = "invalid" if not cand.get("valid") else "rejected"
                return (
                    f"op {index} ({op['op']}): this same {field} was proposed at {tag} "
                    f"and {outcome}; propose a different one"
                )
    return None


def describe_ops(
    patch: dict[str, Any] | None, *, limit: int = 160, hide: Callable[[str], bool] | None = None
) -> str:
    """A compact, one-line description of a patch's ops; a prompt or role ``hide`` flags is
    named, not quoted."""
    if not patch:
        return "(no patch)"
    parts = []
    for op in patch.get("ops", []):
        kind = op.get("op", "?")
        target = ".".join(str(op[k]) for k in ("layer", "agent") if isinstance(op.get(k), str))
        detail = ""
        for key in ("prompt", "role", "aggregator", "tools", "param", "value"):
            if key in op:
                text = str(op[key])
                if hide is not None and key in ("prompt", "role") and hide(text):
                    detail += f" {key}=(one that restated a training problem)"
                    continue
                detail += f" {key}={text[:limit] + ('…' if len(text) > limit else '')!r}"
        if kind == "add_agent":
            agent = op.get("agent") or {}
            detail = f" {agent.get('id')} ({str(agent.get('role', ''))[:60]})"
        parts.append(f"{kind} {target}{detail}".strip())
    return "; ".join(parts)


def momentum_summary(
    history: list[dict[str, Any]], *, max_rows: int = 8, inputs: TrainingInputs | None = None
) -> str:
    """Earlier steps' proposals and outcomes, newest last: ACCEPTED, REJECTED or INVALID.

    With the training ``inputs``, a prompt that restated one of them is named, not quoted: the
    1.5B critic and repairer copied a rejected "Solve the subtraction problem: John took away 4
    pink hard hats ..." from here into every later step, whatever that step's examples were.
    """
    hide = inputs.retells if inputs is not None else None
    lines: list[str] = []
    for row in history:
        if row.get("skipped"):
            continue
        tag = f"epoch {row.get('epoch', 0) + 1} step {row.get('step', 0) + 1}"
        for cand in row.get("candidates", []):
            ops = describe_ops(cand.get("patch"), hide=hide)
            if not cand.get("valid"):
                reason = str(cand.get("reason", ""))
                if hide is not None and hide(reason):  # the copy check's reason quotes it
                    reason = "it restated a training problem"
                lines.append(f"{tag}: INVALID {ops} ({reason[:120]})")
            elif cand.get("accepted"):
                lines.append(
                    f"{tag}: ACCEPTED {ops} (validation {cand.get('before', 0):.3f} -> "
                    f"{cand.get('val_score', 0):.3f}); build on this direction"
                )
            else:
                stop = cand.get("early_stop") or {}
                part = f" on the first {stop['evaluated']} of {stop['of']}" if stop else ""
                lines.append(
                    f"{tag}: REJECTED {ops} (validation {cand.get('val_score', 0):.3f}{part}, "
                    f"best {cand.get('before', 0):.3f}); do not retry"
                )
        if not row.get("candidates") and row.get("gradient", {}).get("error"):
            lines.append(f"{tag}: critic produced no usable critique")
    return "\n".join(lines[-max_rows:])


def smoothed_layer_gradient(
    history: list[dict[str, Any]],
    layer: str,
    current: str,
    *,
    beta: float,
    min_weight: float = 0.1,
    inputs: TrainingInputs | None = None,
) -> str:
    """The layer's critique blended with its earlier critiques, weights decaying by ``beta``.

    ``beta = 0`` keeps only the current critique; older critiques fade as ``beta**k``. With the
    training ``inputs``, an earlier critique keeps only its sentences that retell no training
    problem (those were about examples this step does not show).
    """
    parts = [f"(weight 1.00) {current}"]
    weight = 1.0
    for row in reversed(history):
        for blame in (row.get("gradient") or {}).get("blame", []):
            if blame.get("layer") != layer:
                continue
            weight *= beta
            if weight < min_weight:
                return "\n".join(parts)
            reason = str(blame.get("reason", ""))
            if inputs is not None:
                reason = inputs.general_part(reason)
            if reason:
                parts.append(f"(weight {weight:.2f}, earlier) {reason}")
    return "\n".join(parts)


class Momentum:
    """Append the step to the history (gradient, ops, delta, accepted, usage, knobs)."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        from .decide import paired_active
        from .pool import front_members

        cfg = self.ctx.cfg
        usage = state.get("usage") or {}
        start = state.get("step_usage_start") or {}
        spent = {k: usage.get(k, 0) - start.get(k, 0) for k in usage}
        batch = state.get("batch") or {}
        candidates = state.get("candidates") or []
        # at threshold nothing is repaired; under the cost objective shrinks may still be tried
        skipped = batch.get("mean", 0.0) >= cfg.threshold and not (
            candidates or state.get("proposals")
        )
        if not candidates and state.get("proposals"):
            candidates = [
                {
                    "layer": p["layer"],
                    "patch": p.get("patch"),
                    "valid": False,
                    "reason": p.get("error"),
                    "source": p.get("source", "repairer"),
                    "attempts": p.get("attempts", 0),
                    "parsed": p.get("parsed", p.get("patch") is not None),
                }
                for p in state["proposals"]
            ]
        row = {
            "epoch": state["epoch"],
            "step": state["step"],
            "global_step": state["global_step"],
            "skipped": skipped,
            "minibatch": batch.get("mean"),
            "trace_source": batch.get("trace_source"),
            "examples": [r["id"] for r in batch.get("results", [])],
            "gradient": state.get("gradient") or {},
            "candidates": [
                {k: v for k, v in c.items() if k not in ("spec", "val")} for c in candidates
            ],
            "decision": state.get("decision") or {},
            "best_score": state["best_score"],
            "version": state["version"],
            "parent": state.get("parent"),
            "pool_size": len(state.get("pool") or []),
            "front": front_members(state.get("pool") or []),
            "usage": spent,
            "knobs": {
                "local_weight": cfg.local_weight,
                "momentum_beta": cfg.momentum_beta,
                "threshold": cfg.threshold,
                "min_delta": cfg.min_delta,
                "paired_test": paired_active(cfg, len(state.get("best_val") or {})),
                "early_rejection": cfg.early_rejection,
            },
        }
        return {"history": [row]}
