"""The global critic: which layers are to blame for the minibatch's failures, and why."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Send

from ..spec import GraphSpec
from ..structured import invoke_structured
from . import prompts
from .context import OptimizerContext
from .copies import training_inputs
from .momentum import momentum_summary
from .operators import cut_off, operator_proposals, unrun_programs
from .pool import merge_proposals, step_spec
from .repair import BootstrapDemos
from .schemas import critic_schema
from .shrink import shrink_proposals
from .state import OptimizerState, evidence_records

__all__ = ["GlobalCritic", "batch_signals", "without_repeats"]


def without_repeats(text: str) -> str:
    """``text`` with each sentence kept once: the 1.5B critic can repeat one sentence until its
    cap ("The function `check` does not correctly handle the input ..." a dozen times), and
    every repeat is prompt the repairer pays for and learns nothing from."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in prompts.sentences(text):
        key = prompts.normalized(sentence)
        if key and key not in seen:
            seen.add(key)
            kept.append(sentence.strip())
    return " ".join(kept)


def batch_signals(spec: GraphSpec, records: list[dict[str, Any]]) -> list[str]:
    """What the whole minibatch shows per agent that no single example does: answers cut off
    at their cap, and programs written in a layer that never runs them. The critic is told
    so it can blame the cause, not re-solve one problem (the 1.5B critic blamed "the total
    number of pages James writes" while a quarter of the answers held unrun programs)."""
    lines = []
    for layer in spec.layers:
        for agent, (n, total, cap) in cut_off(records, layer.name).items():
            if n:
                lines.append(
                    f"layer {layer.name}, agent {agent}: {n} of {total} answers cut off at "
                    f"max_tokens={cap}"
                )
        for agent, (n, total) in unrun_programs(spec, records, layer.name).items():
            lines.append(
                f"layer {layer.name}, agent {agent}: {n} of {total} answers hold a Python "
                "program that this layer never runs (any output they state is the model's guess)"
            )
    return lines


class GlobalCritic:
    """Read the spec, failing and passing traces with feedback, and the momentum summary."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState, config: RunnableConfig) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.ctx.cfg
        spec = GraphSpec.model_validate(step_spec(state))
        results = state["batch"]["results"]
        records = state["batch"]["records"]
        failing = [r for r in results if r["score"] < 1.0]
        passing = [r for r in results if r["score"] >= 1.0]
        if state["batch"]["mean"] >= cfg.threshold:  # here only for the cost objective's shrinks
            quiet: dict[str, Any] = {"summary": "", "blame": [], "error": None, "attempts": 0}
            return {"gradient": {**quiet, "parsed": True, "note": "minibatch at threshold"}}
        budget_chars = cfg.evidence_chars
        per_fail = max(400, int(budget_chars * 0.8) // max(1, len(failing)))
        per_pass = max(300, int(budget_chars * 0.2) // max(1, min(2, len(passing))))
        fail_text = [
            prompts.example_evidence(r, evidence_records(records, r["id"]), chars=per_fail)
            for r in failing
        ]
        pass_text = [
            prompts.example_evidence(r, evidence_records(records, r["id"]), chars=per_pass)
            for r in passing[:2]
        ]
        messages = [
            SystemMessage(prompts.CRITIC_SYSTEM),
            HumanMessage(
                prompts.critic_prompt(
                    spec,
                    fail_text,
                    pass_text,
                    momentum_summary(
                        state.get("history") or [], inputs=training_inputs(state["train"])
                    ),
                    mean=state["batch"]["mean"],
                    signals=batch_signals(spec, records),
                )
            ),
        ]
        result = invoke_structured(
            ctx.opt_model, critic_schema(spec), messages, config, retries=cfg.structured_retries
        )
        gradient: dict[str, Any] = {
            "summary": "",
            "blame": [],
            "error": result.error,
            "attempts": result.attempts,
            "parsed": result.value is not None,
        }
        if result.value is not None:
            value = result.value.model_dump(mode="json")
            by_layer: dict[str, dict[str, Any]] = {}
            for blame in value.get("blame", []):
                blame = {**blame, "reason": without_repeats(blame["reason"])}
                if blame["layer"] in by_layer:  # one layer named twice: keep both reasons
                    kept = by_layer[blame["layer"]]
                    if blame["reason"].strip() not in kept["reason"]:  # the 1.5B repeats itself
                        kept["reason"] += " " + blame["reason"]
                elif len(by_layer) < cfg.max_blamed_layers:
                    by_layer[blame["layer"]] = dict(blame)
            gradient["blame"] = list(by_layer.values())
            gradient["summary"] = without_repeats(value.get("summary", ""))
        if not gradient["blame"] and failing and cfg.fallback_blame:
            # A small critic often names no layer, or answers with no parseable tool call; the
            # metric's feedback still says what is wrong with the final answer.
            feedback = next((r.get("feedback") for r in failing if r.get("feedback")), "")
            why = "named no layer" if result.value is not None else "gave no usable answer"
            gradient["blame"] = [
                {
                    "layer": spec.layers[-1].name,
                    "reason": f"the critic {why}; this layer writes the final answer, which "
                    f"the metric rejects: {feedback}".strip(),
                }
            ]
            gradient["fallback"] = True
        if result.value is not None and not gradient["blame"]:
            gradient["error"] = "the critic blamed no layer"
        ctx.emit("critic", blame=[b["layer"] for b in gradient["blame"]], error=gradient["error"])
        return {"gradient": gradient, "usage": ctx.llm_usage(result.usage)}

    def route(self, state: OptimizerState) -> list[Send] | str:
        """One ``local_repair`` task per blamed layer (plus a demo bootstrap and the operators
        that apply), or momentum."""
        blame = (state.get("gradient") or {}).get("blame") or []
        cfg = self.ctx.cfg
        # under the cost objective, every layer is offered the shrinks, blamed or not
        shrinks = shrink_proposals(state) if cfg.objective == "cost" and cfg.operators else []
        if not blame:
            return [Send("operator_candidates", {"proposals": shrinks})] if shrinks else "momentum"
        # the step's parent (from the pool's front) is the spec every proposal edits
        view = {**state, "spec": step_spec(state)}
        keep = ("spec", "batch", "gradient", "history", "demo_pool", "train", "global_step")
        payload = {k: view.get(k) for k in keep}
        sends = [Send("local_repair", {**payload, "target": b}) for b in blame]
        if cfg.textual_patches and cfg.reflection and cfg.reflection_samples:
            sends += [Send("reflective_repair", {**payload, "target": b}) for b in blame]
        layers = [b["layer"] for b in blame]
        ops = BootstrapDemos.ops(view, layers, cfg.max_demos) if cfg.bootstrap_demos else []
        if ops:
            sends.append(Send("bootstrap_demos", {"ops": ops}))
        grow = cfg.objective == "cost"  # topology both ways: the cost rule weighs it
        proposals = operator_proposals(view, layers, grow=grow) if cfg.operators else []
        proposals += shrinks
        if proposals:
            sends.append(Send("operator_candidates", {"proposals": proposals}))
        merges = merge_proposals(view) if cfg.merge and cfg.pareto_parents else []
        if merges:
            sends.append(Send("merge_candidates", {"proposals": merges}))
        return sends
