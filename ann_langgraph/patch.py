"""Typed JSON patches to a graph spec: the optimizer's update step.

``apply_patch`` is pure and all-or-nothing: ops apply in order to a copy, the spec is
re-validated after every op, and the first failing op raises ``PatchError`` naming its index.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .spec import MAX_DEMOS, AgentSpec, Demo, GraphSpec, LayerSpec, SpecError

__all__ = [
    "AddAgent",
    "AddLayer",
    "Patch",
    "PatchError",
    "PatchOp",
    "RemoveAgent",
    "RemoveLayer",
    "SetAgentParam",
    "SetAggregator",
    "SetDemos",
    "SetInputs",
    "SetPrompt",
    "SetRole",
    "SetTools",
    "apply_patch",
]


class PatchError(ValueError):
    """A patch cannot be applied. ``op_index`` is the failing op (``None``: the patch itself)."""

    def __init__(self, reason: str, *, op_index: int | None = None, op: str | None = None) -> None:
        self.reason = reason
        self.op_index = op_index
        self.op = op
        where = f"op {op_index} ({op}): " if op_index is not None else ""
        super().__init__(where + reason)


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetPrompt(_Op):
    """Replace an agent's prompt."""

    op: Literal["set_prompt"] = "set_prompt"
    layer: str
    agent: str
    prompt: str = Field(min_length=1)


class SetRole(_Op):
    """Replace an agent's role."""

    op: Literal["set_role"] = "set_role"
    layer: str
    agent: str
    role: str = Field(min_length=1)


class SetAggregator(_Op):
    """Change how a layer combines its agents (``candidates`` for ``dynamic``; ``[]`` clears
    them, as when a routed layer becomes a plain one)."""

    op: Literal["set_aggregator"] = "set_aggregator"
    layer: str
    aggregator: str
    candidates: list[str] | None = None


class AddAgent(_Op):
    """Add an agent to a layer (at ``position``, default: the end)."""

    op: Literal["add_agent"] = "add_agent"
    layer: str
    agent: AgentSpec
    position: int | None = None


class RemoveAgent(_Op):
    """Remove an agent from a layer (a layer keeps at least one agent)."""

    op: Literal["remove_agent"] = "remove_agent"
    layer: str
    agent: str


class AddLayer(_Op):
    """Insert a layer after ``after`` (``None``: first)."""

    op: Literal["add_layer"] = "add_layer"
    after: str | None
    layer: LayerSpec


class RemoveLayer(_Op):
    """Remove a layer that no other layer reads explicitly."""

    op: Literal["remove_layer"] = "remove_layer"
    layer: str


class SetInputs(_Op):
    """Set the earlier layers a layer reads (``None``: the previous one; ``[]``: the task
    only). With ``remove_layer`` after it, a layer others read can go, its readers rewired."""

    op: Literal["set_inputs"] = "set_inputs"
    layer: str
    inputs: list[str] | None


class SetTools(_Op):
    """Replace a layer's tools (registered names only: a patch never adds code)."""

    op: Literal["set_tools"] = "set_tools"
    layer: str
    tools: list[str]


AGENT_PARAMS = ("temperature", "max_tokens", "model")


class SetAgentParam(_Op):
    """Set one of an agent's model parameters (``temperature``, ``max_tokens``, ``model``)."""

    op: Literal["set_agent_param"] = "set_agent_param"
    layer: str
    agent: str
    param: Literal["temperature", "max_tokens", "model"]
    value: float | int | str | None


class SetDemos(_Op):
    """Replace an agent's few-shot demonstrations (an empty list removes them).

    The optimizer fills them from the layer's own successful training traces (each demo's
    ``source`` names the training example); a person may write them by hand.
    """

    op: Literal["set_demos"] = "set_demos"
    layer: str
    agent: str
    demos: list[Demo] = Field(max_length=MAX_DEMOS)


PatchOp = Annotated[
    SetPrompt
    | SetRole
    | SetAggregator
    | AddAgent
    | RemoveAgent
    | AddLayer
    | RemoveLayer
    | SetTools
    | SetAgentParam
    | SetDemos
    | SetInputs,
    Field(discriminator="op"),
]


class Patch(BaseModel):
    """A rationale and an ordered list of ops (DESIGN.md section 8)."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = ""
    ops: list[PatchOp] = Field(min_length=1)


# -- applying ------------------------------------------------------------------------------


def _layer(data: dict[str, Any], name: str) -> dict[str, Any]:
    for layer in data["layers"]:
        if layer["name"] == name:
            return layer
    known = ", ".join(layer["name"] for layer in data["layers"])
    raise LookupError(f"no layer '{name}' (layers: {known})")


def _agent_index(layer: dict[str, Any], agent_id: str) -> int:
    for i, agent in enumerate(layer["agents"]):
        if agent["id"] == agent_id:
            return i
    known = ", ".join(a["id"] for a in layer["agents"])
    raise LookupError(f"no agent '{agent_id}' in layer '{layer['name']}' (agents: {known})")


def _apply_op(data: dict[str, Any], op: Any) -> None:
    if isinstance(op, SetPrompt | SetRole):
        layer = _layer(data, op.layer)
        field = "prompt" if isinstance(op, SetPrompt) else "role"
        layer["agents"][_agent_index(layer, op.agent)][field] = getattr(op, field)
    elif isinstance(op, SetAggregator):
        layer = _layer(data, op.layer)
        layer["aggregator"] = op.aggregator
        if op.candidates is not None:
            layer["candidates"] = list(op.candidates) or None
    elif isinstance(op, AddAgent):
        layer = _layer(data, op.layer)
        if any(a["id"] == op.agent.id for a in layer["agents"]):
            raise ValueError(f"layer '{op.layer}' already has an agent '{op.agent.id}'")
        position = len(layer["agents"]) if op.position is None else op.position
        if not 0 <= position <= len(layer["agents"]):
            raise ValueError(f"position {position} is out of range 0..{len(layer['agents'])}")
        layer["agents"].insert(position, op.agent.model_dump(mode="json"))
    elif isinstance(op, RemoveAgent):
        layer = _layer(data, op.layer)
        index = _agent_index(layer, op.agent)
        if len(layer["agents"]) == 1:
            raise ValueError(
                f"cannot remove '{op.agent}': it is the last agent of layer '{op.layer}'"
            )
        del layer["agents"][index]
    elif isinstance(op, AddLayer):
        if any(layer["name"] == op.layer.name for layer in data["layers"]):
            raise ValueError(f"a layer named '{op.layer.name}' already exists")
        position = 0
        if op.after is not None:
            after = _layer(data, op.after)
            position = data["layers"].index(after) + 1
        data["layers"].insert(position, op.layer.model_dump(mode="json"))
    elif isinstance(op, RemoveLayer):
        target = _layer(data, op.layer)
        if len(data["layers"]) == 1:
            raise ValueError(f"cannot remove '{op.layer}': it is the only layer")
        readers = [
            layer["name"] for layer in data["layers"] if op.layer in (layer.get("inputs") or [])
        ]
        if readers:
            raise ValueError(f"cannot remove '{op.layer}': layers {readers} read it in `inputs`")
        data["layers"].remove(target)
    elif isinstance(op, SetTools):
        _layer(data, op.layer)["tools"] = list(op.tools)
    elif isinstance(op, SetInputs):
        _layer(data, op.layer)["inputs"] = None if op.inputs is None else list(op.inputs)
    elif isinstance(op, SetAgentParam):
        layer = _layer(data, op.layer)
        agent = layer["agents"][_agent_index(layer, op.agent)]
        agent[op.param] = op.value
    elif isinstance(op, SetDemos):
        layer = _layer(data, op.layer)
        agent = layer["agents"][_agent_index(layer, op.agent)]
        agent["demos"] = [demo.model_dump(mode="json") for demo in op.demos]
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown op {op!r}")


def _coerce_patch(patch: Patch | dict[str, Any] | str) -> Patch:
    if isinstance(patch, Patch):
        # Validated again: pydantic does not check assignments (`patch.ops[0].tools = None`),
        # nor `Patch.model_construct(...)`, and a bad op must be a PatchError, not a crash.
        try:
            patch = patch.model_dump(warnings=False)
        except Exception as exc:
            raise PatchError(f"invalid patch: {type(exc).__name__}: {exc}") from None
    try:
        if isinstance(patch, str):
            return Patch.model_validate_json(patch)
        return Patch.model_validate(patch)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PatchError(f"invalid patch: {loc}: {first['msg']}") from None


def apply_patch(spec: GraphSpec, patch: Patch | dict[str, Any] | str) -> GraphSpec:
    """Return a new spec with ``patch`` applied; ``spec`` is never mutated."""
    parsed = _coerce_patch(patch)
    data = copy.deepcopy(spec.model_dump(mode="json"))
    for index, op in enumerate(parsed.ops):
        try:
            _apply_op(data, op)
            GraphSpec.model_validate(data)
        except (LookupError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                reason = str(SpecError.from_validation_error(exc))
                reason = f"the result is not a valid spec: {reason}"
            else:
                reason = str(exc)
            raise PatchError(reason, op_index=index, op=op.op) from None
    return GraphSpec.model_validate(data)
