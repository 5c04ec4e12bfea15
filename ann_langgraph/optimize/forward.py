"""The step loop: the baseline (once), the budget check, the forward pass, and the advance to
the next minibatch or epoch."""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

from langgraph.graph import END

from ..langsmith_io import LangSmithError
from ..spec import GraphSpec
from ..tracing import ExecutionRecord
from .context import OptimizerContext
from .objective import example_tokens, version_cost
from .pool import pool_entry, step_spec
from .state import OptimizerState, compact_records, paid_so_far, usage_of

__all__ = ["Advance", "CheckBudget", "Forward", "Setup", "demo_candidates", "make_batches"]

logger = logging.getLogger(__name__)


def make_batches(state: OptimizerState, epoch: int, *, seed: int, size: int) -> list[list[str]]:
    """The epoch's minibatches of training ids (a seeded shuffle: resumes see the same ones)."""
    ids = [str(ex.get("id", i)) for i, ex in enumerate(state["train"])]
    random.Random(seed * 1000 + epoch).shuffle(ids)
    return [ids[i : i + size] for i in range(0, len(ids), size)]


class Setup:
    """Score the starting spec on validation (once) and plan the epoch's minibatches."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx = self.ctx
        spec = GraphSpec.model_validate(state["spec"])
        update: dict[str, Any] = {}
        if "version" not in state:
            if not state.get("train") or not state.get("val"):
                raise ValueError("the optimizer needs non-empty 'train' and 'val' example lists")
            report = ctx.run_eval(
                spec, state["val"], label="scoring the starting spec", ann_phase="baseline"
            )
            update.update(
                version=0,
                best_score=report.mean,
                epoch=0,
                step=0,
                global_step=0,
                epochs_without_gain=0,
                best_val={r.id: r.score for r in report.results},
                best_tokens=example_tokens(report.results),
                versions=[
                    {
                        "version": 0,
                        "parent": None,
                        "spec": state["spec"],
                        "patch": None,
                        "rationale": "starting spec",
                        "val_score": report.mean,
                        "val_ci": [report.ci_low, report.ci_high],
                        "val_n": report.n,
                        "global_step": 0,
                        **version_cost(report.results, report.wall_time_s),
                    }
                ],
                usage=usage_of(report),
                pool=[
                    pool_entry(
                        0,
                        state["spec"],
                        {r.id: r.score for r in report.results},
                        parent=None,
                        global_step=0,
                        source="start",
                        version=0,
                    )
                ],
            )
            ctx.emit("baseline", score=report.mean, n=report.n)
        if not state.get("batches"):
            epoch = update.get("epoch", state.get("epoch", 0))
            update["batches"] = make_batches(
                state, epoch, seed=ctx.cfg.seed, size=ctx.cfg.batch_size
            )
        return update


class CheckBudget:
    """Stop cleanly at a step boundary once a hard cap is reached; else reset the step."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx = self.ctx
        reason = ctx.budget.exceeded(paid_so_far(ctx.cache, state, prices=ctx.prices))
        start = dict(state.get("usage") or {})
        # a step that cannot pay for its minibatch, one screening and one validation would
        # spend the rest on a forward pass whose candidates are never scored
        screen = ctx.cfg.batch_size if ctx.cfg.screening else 0
        need = ctx.cfg.batch_size + 1 + screen + len(state.get("val") or [])  # +1: a dry run
        left = ctx.budget.short_of(need, start)
        if not reason and left is not None:
            reason = (
                f"rollout budget reached ({left} left of {ctx.budget.max_rollouts}; a step "
                f"needs {need}: its minibatch, a dry run, {'a screening, ' if screen else ''}"
                "a validation)"
            )
        if reason:
            return {"stop_reason": reason, "step_usage_start": start}
        return {
            "step_usage_start": start,
            "proposals": "reset",
            "candidates": [],
            "gradient": {},
            "decision": {},
        }

    @staticmethod
    def route(state: OptimizerState) -> str:
        return END if state.get("stop_reason") else "select_parent"


def demo_candidates(
    records: list[ExecutionRecord], results: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Successful training traces per ``layer/agent``: the pool demonstrations come from.

    Only calls of examples that scored 1.0 count, and only complete ones (no error, not cut
    at the cap, the first sample of a voter).
    """
    passed = {r["id"] for r in results if r["score"] >= 1.0 and not r.get("error")}
    pool: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if (
            rec.kind != "llm"
            or rec.example_id not in passed
            or rec.error
            or rec.truncated
            or rec.sample
            or not rec.user_message.strip()
            or not rec.output.strip()
        ):
            continue
        pool.setdefault(f"{rec.layer}/{rec.agent_id}", []).append(
            {"source": f"train:{rec.example_id}", "input": rec.user_message, "output": rec.output}
        )
    return pool


class Forward:
    """Run the current spec on the step's training minibatch; keep records and scores."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx = self.ctx
        spec = GraphSpec.model_validate(step_spec(state))
        wanted = state["batches"][state["step"]]
        by_id = {str(ex.get("id", i)): ex for i, ex in enumerate(state["train"])}
        examples = [by_id[i] for i in wanted]
        eval_id = uuid.uuid4().hex
        report = ctx.run_eval(
            spec,
            examples,
            label="forward pass on the minibatch",
            ann_phase="forward",
            ann_epoch=state["epoch"],
            ann_step=state["step"],
            ann_eval_id=eval_id,
        )
        records, source = list(report.records), "local"
        if ctx.trace_source == "langsmith" and ctx.langsmith is not None:
            try:
                records = ctx.langsmith.trace_source(
                    ann_eval_id=eval_id, expected_roots=len(examples)
                ).records(example_ids=[r.id for r in report.results])
                source = "langsmith"
            except LangSmithError as exc:
                source = f"local (LangSmith failed: {exc})"
                logger.warning("reading the forward pass from LangSmith failed: %s", exc)
        results = [r.model_dump(mode="json") for r in report.results]
        batch = {
            "mean": report.mean,
            "results": results,
            "records": compact_records(records),
            "trace_source": source,
        }
        ctx.emit("forward", epoch=state["epoch"], step=state["step"], mean=report.mean)
        update: dict[str, Any] = {"batch": batch, "usage": usage_of(report)}
        pool = demo_candidates(list(report.records), results)
        if pool:
            update["demo_pool"] = pool
        return update

    def route(self, state: OptimizerState) -> str:
        """To the critic when the minibatch is below ``threshold``; under ``objective="cost"``
        always (a perfect minibatch can still be had cheaper: the critic then proposes the
        shrinks without a model call)."""
        cfg = self.ctx.cfg
        if state["batch"]["mean"] < cfg.threshold or cfg.objective == "cost":
            return "global_critic"
        return "momentum"


class Advance:
    """Move to the next minibatch; at an epoch's end check epochs and patience."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        cfg = self.ctx.cfg
        step, epoch = state["step"] + 1, state["epoch"]
        update: dict[str, Any] = {"global_step": state["global_step"] + 1}
        accepted_this_epoch = any(
            row["decision"].get("accepted")
            for row in state.get("history", [])
            if row["epoch"] == epoch
        )
        if step >= len(state["batches"]):
            without = 0 if accepted_this_epoch else state.get("epochs_without_gain", 0) + 1
            epoch, step = epoch + 1, 0
            update.update(epochs_without_gain=without, epoch=epoch)
            if epoch >= cfg.epochs:
                update["stop_reason"] = "epochs done"
            elif cfg.patience is not None and without >= cfg.patience:
                update["stop_reason"] = f"no improvement for {without} epochs"
            else:
                update["batches"] = make_batches(state, epoch, seed=cfg.seed, size=cfg.batch_size)
        update["step"] = step
        return update

    @staticmethod
    def route(state: OptimizerState) -> str:
        return END if state.get("stop_reason") else "check_budget"
