"""Format validation: a proposed patch must have real text (no placeholders, no restated
training example), make sense for its layer, apply, compile and survive one dry run before it
costs a validation evaluation.

Small models filling a JSON schema often echo its placeholders (``"role": "string"``,
``"prompt": "Value2"``). Such a patch compiles and can even score higher on a small validation
set by chance, then hurt on new data (measured on the sentiment demo: validation 0.58 -> 0.75,
test 0.46 -> 0.21). Format validation rejects it with a recorded reason instead.
"""

from __future__ import annotations

import re
from typing import Any, Literal, NamedTuple

from ..aggregators.registry import get_aggregator
from ..compile import compile_graph
from ..patch import PatchError, apply_patch
from ..spec import GraphSpec, SpecError
from .context import OptimizerContext
from .copies import (
    TrainingInputs,
    copied_example_reason,
    patch_texts,
    training_inputs,
)
from .momentum import repeated_reason
from .pool import step_spec
from .state import OptimizerState, add_usage, usage_of

__all__ = [
    "StaticCheck",
    "TrainingInputs",
    "ValidateFormat",
    "copied_example_reason",
    "placeholder_reason",
    "sense_reason",
    "static_reason",
    "training_inputs",
]

_PLACEHOLDER_WORDS = {
    "string", "str", "text", "value", "prompt", "role", "name", "id", "agent", "layer",
    "none", "null", "nil", "todo", "tbd", "example", "description", "placeholder", "...",
}  # fmt: skip
_PLACEHOLDER = re.compile(
    r"^(?:string|str|text|value|prompt|role|name|agent|layer|new[ _-]?prompt|example)"
    r"[\s_-]*\d*$",
    re.IGNORECASE,
)


# The optimizer model answering the optimizer instead of writing an instruction: a refusal, an
# apology, or a request for more. Measured on the 1.5B model (HumanEval, a reflective rewrite):
# "I apologize for any confusion, but I'm not able to generate the new instruction ... Please
# provide the specific details ...", which then scored 6/8 on its minibatch by chance.
_REPLY = re.compile(
    r"\b(?:i\s+apologi[sz]e|i'?m\s+sorry|i\s+am\s+sorry|sorry,|i'?m\s+(?:not\s+able|unable)|"
    r"i\s+am\s+(?:not\s+able|unable)|i\s+can(?:not|'t)\s+(?:help|generate|provide|write|create)|"
    r"as\s+an\s+ai\b|(?:could|can)\s+you\s+(?:please\s+)?(?:provide|share|clarify)|"
    r"please\s+provide\s+(?:me\b|more\b|(?:the\s+)?(?:specific|additional)\s+(?:details|information))|"
    r"i\s+need\s+more\s+information)",
    re.IGNORECASE,
)


def placeholder_reason(patch: dict[str, Any]) -> str | None:
    """Why the patch's text looks like schema placeholders, or a reply to the optimizer (a
    refusal, a request for more) rather than an instruction; ``None`` if it looks real."""
    for where, field, text in patch_texts(patch):
        clean = text.strip().strip("\"'.:").strip()
        if not clean or clean.lower() in _PLACEHOLDER_WORDS or _PLACEHOLDER.match(clean):
            return f"{where}: the {field} {text!r} is a placeholder, not an instruction"
        if (reply := _REPLY.search(clean[:400])) is not None:
            return (
                f"{where}: the {field} is a reply to the optimizer ({reply.group(0)!r}...), "
                "not an instruction for the agent"
            )
    return None


# Aggregators whose answer is a vote among agents: over one agent they are that agent.
_NEEDS_SEVERAL = {"parallel_vote": "a vote", "debate": "a debate", "tool_vote": "a vote"}
# The smallest output cap an answer in each format can fit in (the final layer's agents).
MIN_ANSWER_TOKENS = {
    "raw": 8,
    "last_line": 8,
    "choice_letter": 8,
    "last_number": 16,
    "boxed": 32,
    "code_block": 128,
}


def _touched(patch: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for op in patch.get("ops") or []:
        if isinstance(op, dict):
            layer = op.get("layer")
            if isinstance(layer, dict):  # add_layer
                layer = layer.get("name")
            if isinstance(layer, str):
                names.add(layer)
    return names


def sense_reason(
    before: GraphSpec,
    after: GraphSpec,
    patch: dict[str, Any],
    records: list[dict[str, Any]] | None = None,
) -> str | None:
    """Why the patched spec cannot work as written in a layer the patch touches, or None.

    Rejected: a vote or debate over a single agent (it is that agent's answer, at the price
    of the machinery), a tool-using aggregator with no tools, test_revise in a graph whose
    answer is not code (and execute_code in one whose answer is), a final-layer output cap
    too small for the answer format, a cap lowered on an agent whose answers were already cut
    off (at its own cap or, without one, at the cap its calls ran with), and a patch that
    removes the answer layer.
    """
    touched = _touched(patch)
    last = after.layers[-1].name
    if before.layers[-1].name not in {layer.name for layer in after.layers}:
        return (
            f"layer '{before.layers[-1].name}' writes the answer; removing it leaves "
            f"'{last}' answering in its place"
        )
    cut = {(r["layer"], r["agent_id"]) for r in records or [] if r.get("truncated")}
    seen_caps = {
        (r["layer"], r["agent_id"]): int(r["max_tokens"])
        for r in records or []
        if r.get("max_tokens")
    }
    old_caps = {  # the cap an agent had: its own, else the one its calls ran with
        (layer.name, agent.id): agent.max_tokens or seen_caps.get((layer.name, agent.id))
        for layer in before.layers
        for agent in layer.agents
    }
    for layer in after.layers:
        if layer.name not in touched:
            continue
        kind = _NEEDS_SEVERAL.get(layer.aggregator)
        if kind and len(layer.agents) < 2:
            return (
                f"layer '{layer.name}': {kind} over one agent is just that agent's answer; "
                "add agents in the same patch or keep the aggregator"
            )
        try:
            uses_tools = get_aggregator(layer.aggregator).uses_tools
        except KeyError:
            uses_tools = False
        if uses_tools and not layer.tools:
            return (
                f"layer '{layer.name}': {layer.aggregator} calls tools, but the layer has none; "
                "set tools in the same patch"
            )
        if layer.aggregator == "test_revise" and after.answer_format != "code_block":
            return (
                f"layer '{layer.name}': test_revise runs code, but this graph answers in "
                f"{after.answer_format}, not code_block"
            )
        if layer.aggregator == "execute_code" and after.answer_format == "code_block":
            return (
                f"layer '{layer.name}': execute_code puts a program's printed output in place "
                "of the text after it, but this graph's answer is the code itself (test_revise "
                "checks code answers)"
            )
        for agent in layer.agents:
            cap = agent.max_tokens
            if cap is None:
                continue
            floor = MIN_ANSWER_TOKENS.get(after.answer_format, 8)
            if layer.name == last and cap < floor:
                return (
                    f"agent '{layer.name}/{agent.id}': max_tokens={cap} is too small for a "
                    f"{after.answer_format} answer (at least {floor})"
                )
            old = old_caps.get((layer.name, agent.id))
            if (layer.name, agent.id) in cut and old is not None and cap < old:
                return (
                    f"agent '{layer.name}/{agent.id}': its answers were already cut off at "
                    f"max_tokens={old}; lowering the cap to {cap} cuts them more"
                )
    return None


class StaticCheck(NamedTuple):
    """What :func:`static_reason` found: why the patch is rejected and by which check (the
    repairer asks afresh, without the problems, only after a ``copied`` one), or the patched
    spec."""

    reason: str | None
    spec: GraphSpec | None
    check: Literal["placeholder", "copied", "repeated", "apply", "unchanged", "sense"] | None = None


def static_reason(
    spec: GraphSpec,
    patch: dict[str, Any],
    inputs: TrainingInputs,
    records: list[dict[str, Any]] | None = None,
    *,
    history: list[dict[str, Any]] | None = None,
) -> StaticCheck:
    """The checks that need no model call: (why the patch is rejected, None, which check) or
    (None, the patched spec, None). Shared by format validation and by the repairer's revision
    of its own rejected patch."""
    if reason := placeholder_reason(patch):
        return StaticCheck(reason, None, "placeholder")
    if reason := inputs.copied_reason(patch):
        return StaticCheck(reason, None, "copied")
    if reason := repeated_reason(patch, history or []):
        return StaticCheck(reason, None, "repeated")
    try:
        new_spec = apply_patch(spec, patch)
    except (PatchError, SpecError) as exc:
        return StaticCheck(str(exc), None, "apply")
    if new_spec.fingerprint == spec.fingerprint:
        return StaticCheck("the patch changes nothing", None, "unchanged")
    if nonsense := sense_reason(spec, new_spec, patch, records):
        return StaticCheck(nonsense, None, "sense")
    return StaticCheck(None, new_spec)


class ValidateFormat:
    """Placeholders, sense, apply, compile and a one-example dry run; never crashes the loop."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx = self.ctx
        step = GraphSpec.model_validate(step_spec(state))
        pool = state.get("pool") or []
        failing = [r["id"] for r in state["batch"]["results"] if r["score"] < 1.0]
        by_id = {str(ex.get("id", i)): ex for i, ex in enumerate(state["train"])}
        probe = by_id.get(failing[0]) if failing else None
        probe = probe or state["train"][0]
        records = state["batch"].get("records") or []
        candidates = []
        usage: dict[str, Any] = {}
        inputs: TrainingInputs | None = None  # built at the first patch to check
        made: dict[str, int] = {}  # spec fingerprint -> the candidate that made it first
        for index, prop in enumerate(state.get("proposals") or []):
            cand: dict[str, Any] = {
                "layer": prop["layer"],
                "patch": prop.get("patch"),
                "valid": False,
                "reason": prop.get("error"),
                "source": prop.get("source", "repairer"),
                "attempts": prop.get("attempts", 0),
                "parsed": prop.get("parsed", prop.get("patch") is not None),
            }
            base = prop.get("base")  # a merge edits the pool member it starts from
            spec = GraphSpec.model_validate(pool[base]["spec"]) if base is not None else step
            cand["parent"] = base if base is not None else state.get("parent")
            for key in ("parsed_calls", "revisions", "resampled", "merged", "agent"):
                if prop.get(key) is not None:
                    cand[key] = prop[key]
            candidates.append(cand)
            if prop.get("patch") is None:
                cand["reason"] = f"no patch: {prop.get('error')}"
                continue
            if inputs is None:
                inputs = training_inputs(state["train"])
            reason, new_spec, _check = static_reason(
                spec, prop["patch"], inputs, records, history=state.get("history") or []
            )
            if new_spec is None:
                cand["reason"] = reason
                continue
            if (twin := made.get(new_spec.fingerprint)) is not None:
                # two sources (a repairer and a reflection) wrote the same edit: score it once
                cand["reason"] = f"the same spec as candidate {twin} of this step"
                continue
            made[new_spec.fingerprint] = index
            try:
                compile_graph(new_spec, models=ctx.models)
            except (PatchError, SpecError) as exc:
                cand["reason"] = str(exc)
                continue
            dry = ctx.run_eval(
                new_spec,
                [probe],
                ann_phase="dry_run",
                ann_epoch=state["epoch"],
                ann_step=state["step"],
                ann_candidate=f"{state['global_step']}.{index}",
            )
            usage = add_usage(usage, usage_of(dry))
            if dry.results[0].error:
                cand["reason"] = f"dry run failed: {dry.results[0].error}"
            else:
                cand.update(valid=True, reason=None, spec=new_spec.model_dump(mode="json"))
        ctx.emit("validated", valid=sum(c["valid"] for c in candidates), total=len(candidates))
        return {"candidates": candidates, "usage": usage}

    @staticmethod
    def route(state: OptimizerState) -> str:
        return "screen_candidates" if any(c["valid"] for c in state["candidates"]) else "momentum"
