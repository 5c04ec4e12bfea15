"""The candidate pool (GEPA): every fully validated spec with its per-example scores, the
per-example Pareto front over it, the choice of each step's parent from that front, and the
merge of two front members.

A spec that wins validation examples the best mean loses keeps a chance to be improved: the
parent is drawn from the front with weight = how many examples it is best on (GEPA's
``select_program_candidate_from_pareto_front``, reused as is, with its dominated-program
removal), seeded per step so a resumed run draws the same parent. Committing still needs a
candidate to beat the best spec (``decide``): the pool changes where search starts, not what is
kept.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from gepa.gepa_utils import remove_dominated_programs, select_program_candidate_from_pareto_front

from ..spec import GraphSpec
from .context import OptimizerContext
from .state import OptimizerState

__all__ = [
    "SelectParent",
    "merge_patch",
    "merge_proposals",
    "pareto_front",
    "pool_entry",
    "step_spec",
]


def pool_entry(
    index: int,
    spec: Mapping[str, Any],
    val: Mapping[str, float],
    *,
    parent: int | None,
    global_step: int,
    source: str,
    version: int | None = None,
) -> dict[str, Any]:
    """One member of the pool (JSON, so the checkpoint holds it)."""
    return {
        "id": index,
        "spec": dict(spec),
        "val": {str(k): float(v) for k, v in val.items()},
        "val_score": sum(val.values()) / max(1, len(val)),
        "parent": parent,
        "global_step": global_step,
        "source": source,
        "version": version,
    }


def pareto_front(pool: Sequence[Mapping[str, Any]]) -> dict[str, set[int]]:
    """Per validation example, the pool members with its best score, dominated ones removed:
    a member no other member's examples cover stays; one whose every best example another
    member also holds (at a higher mean) goes."""
    if not pool:
        return {}
    ids = list(pool[0]["val"])
    mapping: dict[str, set[int]] = {}
    for key in ids:
        best = max(float(m["val"].get(key, 0.0)) for m in pool)
        mapping[key] = {i for i, m in enumerate(pool) if float(m["val"].get(key, 0.0)) == best}
    scores = {i: float(m["val_score"]) for i, m in enumerate(pool)}
    return dict(remove_dominated_programs(mapping, scores=scores))


def front_members(pool: Sequence[Mapping[str, Any]]) -> list[int]:
    """The members on the front, by how many examples they are best on (most first)."""
    counts: dict[int, int] = {}
    for members in pareto_front(pool).values():
        for i in members:
            counts[i] = counts.get(i, 0) + 1
    return sorted(counts, key=lambda i: (-counts[i], i))


def step_spec(state: Mapping[str, Any]) -> dict[str, Any]:
    """The spec this step improves: its parent from the pool, else the best spec."""
    parent = state.get("parent")
    pool = state.get("pool") or []
    if isinstance(parent, int) and 0 <= parent < len(pool):
        return dict(pool[parent]["spec"])
    return dict(state["spec"])


class SelectParent:
    """Draw the step's parent from the pool's Pareto front (GEPA's rule), seeded per step."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        cfg = self.ctx.cfg
        pool = state.get("pool") or []
        best = _best_member(pool, state)
        if not cfg.pareto_parents or len(pool) < 2:
            return {"parent": best}
        rng = random.Random(cfg.seed * 1_000_003 + int(state.get("global_step", 0)))
        scores = [float(m["val_score"]) for m in pool]
        mapping = {k: set(v) for k, v in pareto_front(pool).items()}
        chosen = select_program_candidate_from_pareto_front(mapping, scores, rng)
        self.ctx.emit("parent", parent=chosen, front=front_members(pool), best=best)
        return {"parent": int(chosen)}


def _best_member(pool: Sequence[Mapping[str, Any]], state: Mapping[str, Any]) -> int | None:
    """The pool member holding the best spec (the committed one)."""
    version = state.get("version")
    for i in range(len(pool) - 1, -1, -1):
        if pool[i].get("version") == version and pool[i].get("version") is not None:
            return i
    return None


# -- merge ---------------------------------------------------------------------------------

_AGENT_FIELDS = ("prompt", "role", "temperature", "max_tokens", "model", "demos")
_LAYER_FIELDS = ("aggregator", "tools")


def _ancestors(pool: Sequence[Mapping[str, Any]], index: int) -> list[int]:
    chain: list[int] = []
    current: int | None = index
    while current is not None and current not in chain:
        chain.append(current)
        current = pool[current].get("parent")
    return chain


def _parts(spec: GraphSpec) -> dict[tuple[str, str, str], Any]:
    """(layer, agent or "", field) -> value (a layer's agent ids under field "agents")."""
    out: dict[tuple[str, str, str], Any] = {}
    for layer in spec.layers:
        data = layer.model_dump(mode="json")
        for field in _LAYER_FIELDS:
            out[(layer.name, "", field)] = data.get(field)
        out[(layer.name, "", "agents")] = [a.id for a in layer.agents]
        for agent in data["agents"]:
            for field in _AGENT_FIELDS:
                out[(layer.name, agent["id"], field)] = agent.get(field)
    return out


def _op(layer: str, agent: str, field: str, value: Any) -> dict[str, Any] | None:
    if field == "prompt":
        return {"op": "set_prompt", "layer": layer, "agent": agent, "prompt": value}
    if field == "role":
        return {"op": "set_role", "layer": layer, "agent": agent, "role": value}
    if field in ("temperature", "max_tokens", "model"):
        return {
            "op": "set_agent_param",
            "layer": layer,
            "agent": agent,
            "param": field,
            "value": value,
        }
    if field == "demos":
        return {"op": "set_demos", "layer": layer, "agent": agent, "demos": value or []}
    if field == "aggregator":
        return {"op": "set_aggregator", "layer": layer, "aggregator": value}
    if field == "tools":
        return {"op": "set_tools", "layer": layer, "tools": value or []}
    return None


def merge_patch(pool: Sequence[Mapping[str, Any]], a: int, b: int) -> dict[str, Any] | None:
    """The patch that turns member ``a`` into the merge of ``a`` and ``b``, or None when the
    merge would equal one of them (or they share no ancestor, or differ in shape).

    Per part (a layer's aggregator or tools, an agent's prompt, role, parameters or demos): the
    one that changed it from their common ancestor; where both did, the member that wins more
    of the validation examples on which the two differ (GEPA's merge, over our spec's parts).
    """
    chain_a, chain_b = _ancestors(pool, a), _ancestors(pool, b)
    common = next((i for i in chain_a if i in chain_b), None)
    if common is None or common in (a, b):
        return None  # one descends from the other: nothing to combine
    specs = [GraphSpec.model_validate(pool[i]["spec"]) for i in (a, b, common)]
    if len({tuple(layer.name for layer in s.layers) for s in specs}) != 1:
        return None
    pa, pb, pc = (_parts(s) for s in specs)
    val_a, val_b = pool[a]["val"], pool[b]["val"]
    wins_a = sum(1 for k in val_a if val_a[k] > val_b.get(k, 0.0))
    wins_b = sum(1 for k in val_b if val_b[k] > val_a.get(k, 0.0))
    ops: list[dict[str, Any]] = []
    took_b = 0
    for key, value_a in pa.items():
        value_b = pb.get(key)
        if value_b == value_a:
            continue
        layer, agent, field = key
        if field == "agents" or pa.get((layer, "", "agents")) != pb.get((layer, "", "agents")):
            continue  # a team changed shape: the layer stays as ``a`` has it
        take_b = value_a == pc.get(key) or (value_b != pc.get(key) and wins_b > wins_a)
        if take_b and (op := _op(layer, agent, field, value_b)) is not None:
            ops.append(op)
            took_b += 1
    kept_a = sum(
        1
        for key, value_a in pa.items()
        if key[2] != "agents" and pb.get(key) != value_a and value_a != pc.get(key)
    )
    if not ops or not kept_a:
        return None  # the merge is ``a`` (no part of ``b``) or ``b`` (every part of ``b``)
    return {
        "rationale": f"Merge of pool members {a} and {b} (common ancestor {common}): each part "
        f"from the one that changed it, else from the one winning more validation examples "
        f"({wins_a} vs {wins_b}).",
        "ops": ops,
    }


def merge_proposals(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """At most one merge proposal: the first pair of front members (most-winning first) with
    a new merge that no earlier step tried."""
    pool = state.get("pool") or []
    if len(pool) < 3:
        return []
    tried = {
        tuple(c.get("merged") or ())
        for row in state.get("history") or []
        for c in row.get("candidates") or []
        if c.get("source") == "merge"
    }
    members = front_members(pool)
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if (a, b) in tried or (b, a) in tried:
                continue
            patch = merge_patch(pool, a, b)
            if patch is not None:
                layers = sorted({op["layer"] for op in patch["ops"]})
                return [
                    {
                        "layer": ", ".join(layers),
                        "patch": patch,
                        "error": None,
                        "attempts": 0,
                        "source": "merge",
                        "merged": [a, b],
                        "base": a,
                    }
                ]
    return []
