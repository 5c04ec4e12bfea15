"""Local repair: one proposal per blamed layer, from the repairer model or from the demo pool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from ..spec import GraphSpec
from ..structured import StructuredResult, invoke_structured
from . import prompts
from .context import OptimizerContext
from .copies import training_inputs
from .momentum import momentum_summary, smoothed_layer_gradient, unkept_ops
from .operators import cut_off, unrun_programs
from .schemas import layer_patch_schema, to_patch
from .state import add_usage, evidence_records
from .validate import static_reason

__all__ = ["BootstrapDemos", "LocalRepair", "bootstrap_ops", "demos_for", "tried_demos"]


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
        if not cfg.textual_patches:  # an ablation: demos and operators only, no model call
            return {}
        spec = GraphSpec.model_validate(payload["spec"])
        target = payload["target"]
        layer = target["layer"]
        history = payload.get("history") or []
        pool = payload.get("demo_pool") or {}
        # every training input, not only this batch's: a retelling can come from momentum
        # (a problem an earlier step showed), and validation checks against all of them
        inputs = training_inputs(payload.get("train") or payload["batch"]["results"])
        smoothed = smoothed_layer_gradient(
            history, layer, target["reason"], beta=cfg.momentum_beta, inputs=inputs
        )
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

        def ask(shown: list[str], critique: str) -> list[BaseMessage]:
            return [
                SystemMessage(prompts.REPAIR_SYSTEM),
                HumanMessage(
                    prompts.repair_prompt(
                        spec,
                        layer,
                        critique,
                        shown,
                        momentum_summary(history, inputs=inputs),
                        demos_available={a: len(pool[f"{layer}/{a}"]) for a in demo_agents},
                        cut_off=cut_off(records, layer),
                        programs=unrun_programs(spec, records, layer),
                    )
                ),
            ]

        messages = ask(evidence, gradient)
        schema = layer_patch_schema(spec, layer, demo_agents=demo_agents, max_demos=cfg.max_demos)
        result = invoke_structured(
            ctx.opt_model, schema, messages, config, retries=cfg.structured_retries
        )
        patch, error = self._patch(result, pool, layer)
        proposal: dict[str, Any] = {
            "layer": layer,
            "patch": patch,
            "error": error,
            "attempts": result.attempts,
            "parsed": result.value is not None,
            "parsed_calls": int(result.value is not None),
            "source": "repairer",
        }
        usage: dict[str, Any] = dict(result.usage)
        # The cheapest fix of a patch that cannot work: tell the repairer why and ask again
        # (the 1.5B model rewrote prompts into the one problem it was shown, step after step).
        revisions: list[str] = []
        for _ in range(cfg.revisions):
            if patch is None:
                break  # nothing parsed: the structured retries already ran
            reason, _spec, check = static_reason(spec, patch, inputs, records, history=history)
            if reason is None:
                break
            revisions.append(reason)
            copied = check == "copied"
            if copied:
                # ask afresh, shown how answers failed but not the problems: not the inputs,
                # not the copy, not the critique's sentences that retell them (the 1.5B critic
                # writes "John took away 4 pink hard hats ...", and the repairer copied that
                # too), and not the rejection's quote
                per = max(300, layer_chars // max(1, len(results)))
                general = inputs.general_part(gradient) or (
                    "(the critique retold the training problems; judge from the answers below)"
                )
                messages = ask(
                    [prompts.example_evidence(r, [], chars=per, show_input=False) for r in results],
                    general,
                )
                reason = "the prompt restated training problems (their wording, names or numbers)"
            note = prompts.revision_prompt(layer, patch, reason, show_patch=not copied)
            messages = [*messages, HumanMessage(note)]
            again = invoke_structured(
                ctx.opt_model, schema, messages, config, retries=cfg.structured_retries
            )
            usage = add_usage(usage, again.usage)
            proposal["attempts"] += again.attempts
            proposal["parsed_calls"] += int(again.value is not None)
            new_patch, new_error = self._patch(again, pool, layer)
            if new_patch is None:  # keep the first patch: validation records its reason
                proposal["error"] = f"revision gave no patch: {new_error}"
                break
            patch, proposal["patch"], proposal["error"] = new_patch, new_patch, None
        if revisions:
            proposal["revisions"] = revisions
        return {"proposals": [proposal], "usage": ctx.llm_usage(usage)}

    @staticmethod
    def _patch(
        result: StructuredResult, pool: Mapping[str, Any], layer: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The parsed answer as a patch dict, or why there is none."""
        if result.value is None:
            return None, result.error
        try:
            patch = to_patch(result.value, demos=lambda a, n: demos_for(pool, layer, a, n))
        except ValueError as exc:
            return None, f"not a valid patch: {exc}"
        return patch.model_dump(mode="json"), None


def tried_demos(history: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per ``layer/agent``, the demo sources earlier steps proposed and validation rejected."""
    tried: dict[str, set[str]] = {}
    for _tag, _cand, op in unkept_ops(history):
        if op.get("op") == "set_demos":
            key = f"{op.get('layer')}/{op.get('agent')}"
            tried.setdefault(key, set()).update(str(d.get("source")) for d in op.get("demos") or [])
    return tried


def bootstrap_ops(
    spec: GraphSpec,
    pool: Mapping[str, list[dict[str, Any]]] | None,
    layers: list[str],
    count: int,
    *,
    tried: Mapping[str, set[str]] | None = None,
) -> list[dict[str, Any]]:
    """``set_demos`` ops for the agents of ``layers`` whose pool offers demos they lack.

    The pool's first ``count`` that the agent neither has nor had rejected (``tried``), filled
    up with its current ones: each step tries another set, as DSPy's random search over
    bootstrapped demo sets does, and validation keeps a set only if it is better.
    """
    ops: list[dict[str, Any]] = []
    for layer in layers:
        for agent in spec.layer(layer).agents:
            current = [d.model_dump(mode="json") for d in agent.demos]
            rows = (pool or {}).get(f"{layer}/{agent.id}") or []
            used = (tried or {}).get(f"{layer}/{agent.id}", set())
            used = used | {str(d.get("source")) for d in current}
            fresh = [dict(r) for r in rows if r.get("source") not in used][:count]
            demos = fresh + current[: count - len(fresh)] if fresh else []
            if demos and demos != current:
                ops.append({"op": "set_demos", "layer": layer, "agent": agent.id, "demos": demos})
    return ops


class BootstrapDemos:
    """One more candidate per step, with no model call: the blamed layers' agents get
    demonstrations from their own successful training traces (DSPy's BootstrapFewShot)."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, payload: Any) -> dict[str, Any]:
        if "ops" in payload:
            ops = payload["ops"] or []
        else:  # a task checkpointed before the route sent its ops (a run resumed across versions)
            ops = self.ops(payload, payload.get("layers") or [], self.ctx.cfg.max_demos)
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
    def ops(state: Mapping[str, Any], layers: list[str], max_demos: int) -> list[dict[str, Any]]:
        """The candidate's ``set_demos`` ops (none when no demo set could differ from the
        current spec): the critic's route sends them, so this node only wraps them."""
        spec = GraphSpec.model_validate(state["spec"])
        tried = tried_demos(state.get("history") or [])
        return bootstrap_ops(spec, state.get("demo_pool"), layers, max_demos, tried=tried)
