"""Structured-output schemas for the critic and the repairers, built per spec.

Names are enums of the spec's real layers, agents, aggregators and tools: a tiny model chose an
existing name 0/10 times with free strings and 4/10 times with enums (DESIGN.md section 9).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..aggregators.registry import aggregator_names
from ..patch import Patch
from ..spec import GraphSpec
from ..tools import tool_names

__all__ = ["LayerBlame", "critic_schema", "layer_patch_schema", "to_patch"]


class LayerBlame(BaseModel):
    layer: str
    reason: str


def _enum(values: list[str]) -> Any:
    return Literal[tuple(values)]


def critic_schema(spec: GraphSpec) -> type[BaseModel]:
    """``{"summary": str, "blame": [{"layer": <layer enum>, "reason": str}]}``."""
    blame = create_model(
        "Blame",
        layer=(_enum([layer.name for layer in spec.layers]), Field(description="A layer to fix.")),
        reason=(str, Field(description="What this layer does wrong, with evidence.")),
    )
    return create_model(
        "GlobalGradient",
        __doc__="Which layers caused the failures, and why.",
        summary=(str, Field(description="One or two sentences: the main failure pattern.")),
        blame=(list[blame], Field(description="Layers to fix, most important first.")),  # type: ignore[valid-type]
    )


def layer_patch_schema(
    spec: GraphSpec, layer_name: str, *, demo_agents: Sequence[str] = (), max_demos: int = 3
) -> type[BaseModel]:
    """A patch schema that can only name ``layer_name``, its agents and registered names.

    ``demo_agents``: agents with successful training traces; for them the schema offers
    ``use_demos`` (the optimizer fills the demonstrations in, see ``to_patch``).
    """
    layer = spec.layer(layer_name)
    layer_t = _enum([layer_name])
    agent_t = _enum([a.id for a in layer.agents])
    # never the layer's own aggregator: "set it to what it is" was a measured favourite no-op
    agg_t = _enum(sorted(a for a in aggregator_names() if a not in ("dynamic", layer.aggregator)))
    tool_t = _enum(sorted(tool_names()))
    cfg = ConfigDict(extra="forbid")

    def op(name: str, doc: str, **fields: Any) -> Any:
        tag: Any = Literal[_snake(name)]
        return create_model(name, __config__=cfg, __doc__=doc, op=(tag, ...), **fields)

    new_agent = create_model(
        "NewAgent",
        __config__=cfg,
        id=(str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")),
        role=(str, ...),
        prompt=(str, ...),
    )
    ops = [
        op(
            "SetPrompt",
            "Rewrite one agent's prompt.",
            layer=(layer_t, ...),
            agent=(agent_t, ...),
            prompt=(str, ...),
        ),
        op(
            "SetRole",
            "Change one agent's role.",
            layer=(layer_t, ...),
            agent=(agent_t, ...),
            role=(str, ...),
        ),
        op(
            "SetAggregator",
            "Change how the layer combines its agents.",
            layer=(layer_t, ...),
            aggregator=(agg_t, ...),
        ),
        op("AddAgent", "Add an agent to the layer.", layer=(layer_t, ...), agent=(new_agent, ...)),
        op(
            "RemoveAgent",
            "Remove an agent from the layer.",
            layer=(layer_t, ...),
            agent=(agent_t, ...),
        ),
        op("SetTools", "Set the layer's tools.", layer=(layer_t, ...), tools=(list[tool_t], ...)),  # type: ignore[valid-type]
        op(
            "SetAgentParam",
            "Set an agent's temperature (0-2) or max_tokens.",
            layer=(layer_t, ...),
            agent=(agent_t, ...),
            param=(Literal["temperature", "max_tokens"], ...),
            value=(float, ...),
        ),
    ]
    if demo_agents:
        ops.append(
            op(
                "UseDemos",
                "Show an agent some of its own correct answers from training as worked "
                "examples before each input (teaches the answer's format and length).",
                layer=(layer_t, ...),
                agent=(_enum(list(demo_agents)), ...),
                count=(int, Field(ge=1, le=max_demos, description="How many examples.")),
            )
        )
    union: Any = ops[0]
    for extra in ops[1:]:
        union = union | extra
    return create_model(
        "LayerPatch",
        __doc__=f"Edits to layer '{layer_name}' that fix the reported failures.",
        rationale=(str, Field(description="Why these edits fix the failures.")),
        ops=(list[union], Field(min_length=1, description="One to three edits.")),
    )


def _snake(name: str) -> str:
    out = ""
    for ch in name:
        out += ("_" + ch.lower()) if ch.isupper() and out else ch.lower()
    return out


def to_patch(
    value: BaseModel, *, demos: Callable[[str, int], list[dict[str, Any]]] | None = None
) -> Patch:
    """Convert a per-layer schema instance into the contract ``Patch``.

    ``use_demos`` becomes ``set_demos`` with ``demos(agent, count)``'s demonstrations.
    """
    data = value.model_dump(mode="json")
    for op in data.get("ops", []):
        if op.get("op") == "set_agent_param" and op.get("param") == "max_tokens":
            op["value"] = int(op["value"])
        if op.get("op") == "use_demos":
            chosen = demos(op["agent"], int(op["count"])) if demos is not None else []
            if not chosen:
                raise ValueError(f"no successful training traces for agent '{op['agent']}'")
            layer, agent = op["layer"], op["agent"]
            op.clear()
            op.update(op="set_demos", layer=layer, agent=agent, demos=chosen)
    return Patch.model_validate(data)
