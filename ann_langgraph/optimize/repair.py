"""Local repair: one proposal per blamed layer, from the repairer model or from the demo pool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from ..spec import GraphSpec
from . import prompts
from .context import OptimizerContext
from .momentum import momentum_summary, smoothed_layer_gradient
from .schemas import layer_patch_schema, to_patch
from .state import evidence_records
from .structured import invoke_structured

__all__ = ["BootstrapDemos", "LocalRepair", "bootstrap_ops", "demos_for"]


def demos_for(
    pool: Mapping[str, list[dict[str, Any]]] | None, layer: str, agent: str, count: int
) -> list[dict[str, Any]]:
    """Up to ``count`` demonstrations of ``layer/agent`` from its successful training traces."""
    rows = (pool or {}).get(f"{layer}/{agent}") or []
    return [dict(row) for row in rows[:count]]


def _demo_agents(spec: GraphSpec, layer: str, pool: Mapping[str, Any] | None) -> list[str]:
    return [a.id for a in spec.layer(layer).agents if (pool or {}).get(f"{layer}/{a.id}")]


class LocalRepair:
    """Ask the repairer for a patch to one layer (a ``Send`` task per blamed layer)."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, payload: Any, config: RunnableConfig) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.ctx.cfg
        spec = GraphSpec.model_validate(payload["spec"])
        target = payload["target"]
        layer = target["layer"]
        history = payload.get("history") or []
        pool = payload.get("demo_pool") or {}
        smoothed = smoothed_layer_gradient(history, layer, target["reason"], beta=cfg.momentum_beta)
        global_chars = int(cfg.evidence_chars * cfg.local_weight)
        layer_chars = cfg.evidence_chars - global_chars
        gradient = prompts.clip(
            f"{smoothed}\nOverall pattern: {payload['gradient'].get('summary', '')}",
            max(200, global_chars),
        )
        results = [r for r in payload["batch"]["results"] if r["score"] < 1.0]
        records = payload["batch"]["records"]
        evidence = []
        if layer_chars > 0 and results:
            per = max(300, layer_chars // len(results))
            evidence = [
                prompts.example_evidence(
                    r, evidence_records(records, r["id"]), chars=per, layer=layer
                )
                for r in results
            ]
        demo_agents = _demo_agents(spec, layer, pool)
        messages = [
            SystemMessage(prompts.REPAIR_SYSTEM),
            HumanMessage(
                prompts.repair_prompt(
                    spec,
                    layer,
                    gradient,
                    evidence,
                    momentum_summary(history),
                    demos_available={a: len(pool[f"{layer}/{a}"]) for a in demo_agents},
                )
            ),
        ]
        result = invoke_structured(
            ctx.opt_model,
            layer_patch_schema(spec, layer, demo_agents=demo_agents, max_demos=cfg.max_demos),
            messages,
            config,
            retries=cfg.structured_retries,
        )
        proposal: dict[str, Any] = {
            "layer": layer,
            "patch": None,
            "error": result.error,
            "attempts": result.attempts,
            "parsed": result.value is not None,
            "source": "repairer",
        }
        if result.value is not None:
            try:
                patch = to_patch(result.value, demos=lambda a, n: demos_for(pool, layer, a, n))
                proposal["patch"] = patch.model_dump(mode="json")
            except ValueError as exc:
                proposal["error"] = f"not a valid patch: {exc}"
        return {"proposals": [proposal], "usage": ctx.llm_usage(result.usage)}


def bootstrap_ops(
    spec: GraphSpec, pool: Mapping[str, list[dict[str, Any]]] | None, layers: list[str], count: int
) -> list[dict[str, Any]]:
    """``set_demos`` ops for the agents of ``layers`` whose pool demos differ from their own."""
    ops: list[dict[str, Any]] = []
    for layer in layers:
        for agent in spec.layer(layer).agents:
            demos = demos_for(pool, layer, agent.id, count)
            if demos and demos != [d.model_dump(mode="json") for d in agent.demos]:
                ops.append({"op": "set_demos", "layer": layer, "agent": agent.id, "demos": demos})
    return ops


class BootstrapDemos:
    """One more candidate per step, with no model call: the blamed layers' agents get
    demonstrations from their own successful training traces (DSPy's BootstrapFewShot)."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, payload: Any) -> dict[str, Any]:
        spec = GraphSpec.model_validate(payload["spec"])
        ops = bootstrap_ops(
            spec, payload.get("demo_pool"), payload["layers"], self.ctx.cfg.max_demos
        )
        if not ops:
            return {}
        layers = list(dict.fromkeys(op["layer"] for op in ops))
        patch = {
            "rationale": "Show the agents their own successful training answers as "
            "demonstrations (format and length by example).",
            "ops": ops,
        }
        proposal = {
            "layer": ", ".join(layers),
            "patch": patch,
            "error": None,
            "attempts": 0,
            "source": "bootstrap",
        }
        return {"proposals": [proposal]}

    @staticmethod
    def wanted(state: Mapping[str, Any], layers: list[str], max_demos: int) -> bool:
        """Whether a bootstrap candidate could differ from the current spec."""
        spec = GraphSpec.model_validate(state["spec"])
        return bool(bootstrap_ops(spec, state.get("demo_pool"), layers, max_demos))
