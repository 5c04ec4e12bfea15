"""Structural diff of two specs: what a patch (or a training run) changed, in readable terms."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel

from .spec import GraphSpec, LayerSpec

__all__ = ["SpecChange", "diff_specs", "format_diff"]

_LAYER_FIELDS = ("aggregator", "candidates", "inputs", "tools", "max_tool_calls", "rounds", "judge")
_AGENT_FIELDS = ("role", "prompt", "model", "temperature", "max_tokens")
_SPEC_FIELDS = ("name", "description", "answer_format", "models")


class SpecChange(BaseModel):
    """One change: ``path`` like ``solve.solver_a.prompt``; ``before``/``after`` values."""

    kind: Literal["added", "removed", "changed", "moved"]
    path: str
    before: Any = None
    after: Any = None


def _dump(value: Any) -> Any:
    return (
        value.model_dump(mode="json", exclude_defaults=True)
        if isinstance(value, BaseModel)
        else value
    )


def _demo_names(demos: list[Any]) -> list[str]:
    """Demonstrations by where they came from (their text is long and may be training data)."""
    return [d.source or f"demo {i + 1} ({len(d.input)} chars)" for i, d in enumerate(demos)]


def _layer_changes(a: LayerSpec, b: LayerSpec) -> list[SpecChange]:
    out: list[SpecChange] = []
    for field in _LAYER_FIELDS:
        va, vb = _dump(getattr(a, field)), _dump(getattr(b, field))
        if va != vb:
            out.append(SpecChange(kind="changed", path=f"{a.name}.{field}", before=va, after=vb))
    agents_a = {x.id: x for x in a.agents}
    agents_b = {x.id: x for x in b.agents}
    for agent_id in agents_a.keys() - agents_b.keys():
        out.append(
            SpecChange(
                kind="removed", path=f"{a.name}.{agent_id}", before=_dump(agents_a[agent_id])
            )
        )
    for agent in b.agents:
        if agent.id not in agents_a:
            out.append(SpecChange(kind="added", path=f"{a.name}.{agent.id}", after=_dump(agent)))
            continue
        old = agents_a[agent.id]
        for field in _AGENT_FIELDS:
            va, vb = getattr(old, field), getattr(agent, field)
            if va != vb:
                out.append(
                    SpecChange(
                        kind="changed", path=f"{a.name}.{agent.id}.{field}", before=va, after=vb
                    )
                )
        if old.demos != agent.demos:
            out.append(
                SpecChange(
                    kind="changed",
                    path=f"{a.name}.{agent.id}.demos",
                    before=_demo_names(old.demos),
                    after=_demo_names(agent.demos),
                )
            )
    order_a = [x for x in (y.id for y in a.agents) if x in agents_b]
    order_b = [x for x in (y.id for y in b.agents) if x in agents_a]
    if order_a != order_b:
        out.append(SpecChange(kind="moved", path=f"{a.name}.agents", before=order_a, after=order_b))
    return out


def diff_specs(a: GraphSpec, b: GraphSpec) -> list[SpecChange]:
    """Changes that turn ``a`` into ``b``, layer by layer and agent by agent."""
    out: list[SpecChange] = []
    for field in _SPEC_FIELDS:
        va, vb = getattr(a, field), getattr(b, field)
        if va != vb:
            out.append(SpecChange(kind="changed", path=field, before=va, after=vb))
    layers_a = {x.name: x for x in a.layers}
    layers_b = {x.name: x for x in b.layers}
    for layer in a.layers:
        if layer.name not in layers_b:
            out.append(SpecChange(kind="removed", path=layer.name, before=_dump(layer)))
    for layer in b.layers:
        if layer.name not in layers_a:
            out.append(SpecChange(kind="added", path=layer.name, after=_dump(layer)))
        else:
            out.extend(_layer_changes(layers_a[layer.name], layer))
    order_a = [x.name for x in a.layers if x.name in layers_b]
    order_b = [x.name for x in b.layers if x.name in layers_a]
    if order_a != order_b:
        out.append(SpecChange(kind="moved", path="layers", before=order_a, after=order_b))
    return out


def format_diff(changes: list[SpecChange]) -> str:
    """Plain-text rendering; long text fields get a word-level unified diff."""
    if not changes:
        return "no changes"
    lines: list[str] = []
    for change in changes:
        if change.kind == "added":
            lines.append(f"+ {change.path}: {change.after}")
        elif change.kind == "removed":
            lines.append(f"- {change.path}: {change.before}")
        elif change.kind == "moved":
            lines.append(f"~ {change.path} order: {change.before} -> {change.after}")
        elif (
            isinstance(change.before, str)
            and isinstance(change.after, str)
            and ("\n" in change.before + change.after or len(change.before + change.after) > 80)
        ):
            lines.append(f"~ {change.path}:")
            diff = difflib.unified_diff(
                change.before.splitlines(), change.after.splitlines(), lineterm="", n=1
            )
            lines.extend(f"    {line}" for line in list(diff)[2:])
        else:
            lines.append(f"~ {change.path}: {change.before!r} -> {change.after!r}")
    return "\n".join(lines)
