"""Shrink operators (``objective="cost"``): fixed rewrites that make a graph cheaper, offered
for every layer with no model call and validated like any candidate, so the cost rule
(optimize.objective) keeps one only where accuracy holds.

- ``vote_to_one``: a vote, a debate or a routed team (``dynamic``) becomes its first agent
  alone (sequential_cot).
- ``drop_voter``: a vote of three or more loses its last agent (still a vote).
- ``remove_layer``: a layer before the answer layer goes; a layer that read it reads what the
  removed layer read instead (``set_inputs``), so no reader loses the task or an earlier layer.
- ``lower_cap``: an agent none of whose minibatch answers reached its cap gets a cap of 1.5x
  its longest answer (never below the answer format's floor, never where an answer was cut).

The sense checks of format validation (a vote over one agent, the answer layer removed, a cap
lowered where answers were cut off) reject any that would break the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..layer_usage import LayerUsage, first_agent_agreement, layer_usage
from ..spec import GraphSpec, LayerSpec
from .operators import agent_calls
from .pool import step_spec
from .validate import MIN_ANSWER_TOKENS

__all__ = ["SHRINKS", "shrink_proposals"]

_VOTES = ("parallel_vote", "debate")
_TEAMS = (*_VOTES, "dynamic")
# The lowest cap lower_cap sets: the largest answer-format floor.
_CAP_FLOOR = max(MIN_ANSWER_TOKENS.values())
_CAP_STEP = 32


def _vote_to_one(spec: GraphSpec, layer: LayerSpec, records: list[dict[str, Any]]) -> list[Any]:
    if layer.aggregator not in _TEAMS or len(layer.agents) < 2:
        return []
    to_one: dict[str, Any] = {
        "op": "set_aggregator",
        "layer": layer.name,
        "aggregator": "sequential_cot",
    }
    if layer.candidates:
        to_one["candidates"] = []
    ops: list[dict[str, Any]] = [to_one]
    ops += [{"op": "remove_agent", "layer": layer.name, "agent": a.id} for a in layer.agents[1:]]
    return ops


def _drop_voter(spec: GraphSpec, layer: LayerSpec, records: list[dict[str, Any]]) -> list[Any]:
    if layer.aggregator not in _VOTES or len(layer.agents) < 3:
        return []
    return [{"op": "remove_agent", "layer": layer.name, "agent": layer.agents[-1].id}]


def _remove_layer(spec: GraphSpec, layer: LayerSpec, records: list[dict[str, Any]]) -> list[Any]:
    if layer.name == spec.layers[-1].name or len(spec.layers) < 2:
        return []
    index = [x.name for x in spec.layers].index(layer.name)
    feeds = spec.layer_inputs(index)  # what the removed layer read
    ops: list[dict[str, Any]] = []
    for i, other in enumerate(spec.layers):
        reads = spec.layer_inputs(i)
        if i == index or layer.name not in reads:
            continue
        if other.inputs is None and i == index + 1 and layer.inputs is None:
            continue  # the default (the previous layer) already gives it what the layer read
        rewired: list[str] = []
        for name in reads:
            for kept in feeds if name == layer.name else [name]:
                if kept not in rewired:
                    rewired.append(kept)
        ops.append({"op": "set_inputs", "layer": other.name, "inputs": rewired})
    return [*ops, {"op": "remove_layer", "layer": layer.name}]


def _lower_cap(spec: GraphSpec, layer: LayerSpec, records: list[dict[str, Any]]) -> list[Any]:
    ops = []
    calls = agent_calls(records, layer.name)
    for agent in layer.agents:
        mine = calls.get(agent.id, [])
        if not mine or any(r.get("truncated") for r in mine):
            continue
        cap = agent.max_tokens or max(int(r.get("max_tokens") or 0) for r in mine)
        longest = max(int(r.get("output_tokens") or 0) for r in mine)
        if not cap or not longest:
            continue
        lowered = max(_CAP_FLOOR, -(-int(1.5 * longest) // _CAP_STEP) * _CAP_STEP)
        if lowered <= 0.8 * cap:  # a cut worth a candidate
            ops.append(
                {
                    "op": "set_agent_param",
                    "layer": layer.name,
                    "agent": agent.id,
                    "param": "max_tokens",
                    "value": lowered,
                }
            )
    return ops


SHRINKS = {
    "vote_to_one": (_vote_to_one, "A single agent instead of the vote costs a fraction."),
    "drop_voter": (_drop_voter, "One voter fewer: the vote stays, at less cost."),
    "remove_layer": (
        _remove_layer,
        "Drop a layer before the answer; its readers read what it read instead.",
    ),
    "lower_cap": (
        _lower_cap,
        "No answer came near its output cap; a cap of 1.5x the longest bounds a runaway.",
    ),
}


def _settled(history: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(shrink, ops) pairs already scored: the same shrink of the same spec is not re-run."""
    return {
        (str(c.get("source")), repr((c.get("patch") or {}).get("ops")))
        for row in history
        for c in row.get("candidates") or []
        if str(c.get("source", "")).startswith("operator:") and not c.get("accepted")
    }


def _evidence(
    spec: GraphSpec,
    layer: LayerSpec,
    name: str,
    records: list[dict[str, Any]],
    usage: dict[str, LayerUsage],
) -> str:
    """What the step's minibatch records say about this shrink (kept in history.jsonl)."""
    if not records:
        return ""
    if name == "remove_layer":
        row = usage[layer.name]
        return (
            f" Evidence (minibatch): '{layer.name}' spends {100 * row.share:.0f}% of the "
            f"graph's tokens ({row.tokens_per_example:,.0f} per example); its own output held "
            f"an answer in {row.answered} of {row.examples} examples, the final answer in "
            f"{row.same_as_final}."
        )
    if name in ("vote_to_one", "drop_voter"):
        same, both = first_agent_agreement(
            records, layer.name, layer.agents[0].id, spec.answer_format
        )
        if both:
            return (
                f" Evidence (minibatch): the team's answer was its first agent's own in "
                f"{same} of {both} examples."
            )
    return ""


def shrink_proposals(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One proposal per shrink that applies to a layer of the step's parent spec, its
    rationale carrying the minibatch evidence for it (``layer_usage``)."""
    spec = GraphSpec.model_validate(step_spec(state))
    records = list((state.get("batch") or {}).get("records") or [])
    settled = _settled(list(state.get("history") or []))
    usage = {row.layer: row for row in layer_usage(spec, records)}
    out = []
    for layer in spec.layers:
        for name, (make, rationale) in SHRINKS.items():
            ops = make(spec, layer, records)
            source = f"operator:{name}"
            if not ops or (source, repr(ops)) in settled:
                continue
            why = rationale + _evidence(spec, layer, name, records, usage)
            out.append(
                {
                    "layer": layer.name,
                    "patch": {"rationale": why, "ops": ops},
                    "error": None,
                    "attempts": 0,
                    "source": source,
                }
            )
    return out
