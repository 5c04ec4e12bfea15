"""Compile a graph spec to a LangGraph ``StateGraph``: one compiled subgraph per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.caches import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from .aggregators.base import LayerContext, merge_dicts
from .aggregators.registry import get_aggregator
from .models import ModelResolver, ModelsArg
from .spec import GraphSpec, SpecError, load_spec

__all__ = ["GraphInput", "GraphOutput", "GraphState", "build_graph", "compile_graph"]


class GraphInput(TypedDict):
    """What a compiled spec takes: the task text."""

    input: str


class GraphOutput(TypedDict, total=False):
    """What a compiled spec returns."""

    output: str
    layer_outputs: dict[str, str]
    routes: dict[str, dict[str, Any]]


class GraphState(TypedDict, total=False):
    input: str
    output: str
    layer_outputs: Annotated[dict[str, str], merge_dicts]
    routes: Annotated[dict[str, dict[str, Any]], merge_dicts]


SpecLike = GraphSpec | str | Path | dict[str, Any]


def _coerce_spec(spec: SpecLike) -> GraphSpec:
    if isinstance(spec, GraphSpec):
        return spec
    if isinstance(spec, str | Path):
        return load_spec(spec)
    if isinstance(spec, dict):
        from pydantic import ValidationError

        try:
            return GraphSpec.model_validate(spec)
        except ValidationError as exc:
            raise SpecError.from_validation_error(exc) from None
    raise TypeError(f"expected a GraphSpec, a path or a dict, got {type(spec).__name__}")


def build_graph(
    spec: SpecLike,
    *,
    models: ModelsArg = None,
    retry_attempts: int = 3,
    cache: BaseCache | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """Build the uncompiled parent graph; each layer is a compiled subgraph node.

    Layers read the outputs named in ``inputs`` (default: the previous layer); layers with
    several inputs wait for all of them. The last layer's output is the graph's ``output``.
    """
    spec = _coerce_spec(spec)
    resolver = ModelResolver(spec, models, cache=cache)
    builder = StateGraph(GraphState, input_schema=GraphInput, output_schema=GraphOutput)
    consumed: set[str] = set()
    last = len(spec.layers) - 1
    for i, layer in enumerate(spec.layers):
        ctx = LayerContext(
            spec=spec,
            layer=layer,
            index=i,
            models=resolver,
            is_last=i == last,
            retry_attempts=retry_attempts,
        )
        subgraph = get_aggregator(layer.aggregator).build(ctx).compile(name=layer.name)
        builder.add_node(
            layer.name,
            subgraph,
            metadata={"ann_layer": layer.name, "ann_spec": ctx.fingerprint},
        )
        sources = spec.layer_inputs(i)
        consumed.update(sources)
        if not sources:
            builder.add_edge(START, layer.name)
        elif len(sources) == 1:
            builder.add_edge(sources[0], layer.name)
        else:
            builder.add_edge(sources, layer.name)
    for layer in spec.layers:
        if layer.name not in consumed:
            builder.add_edge(layer.name, END)
    return builder


def compile_graph(
    spec: SpecLike,
    *,
    models: ModelsArg = None,
    checkpointer: Any = None,
    retry_attempts: int = 3,
    cache: BaseCache | None = None,
    **compile_kwargs: Any,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """``build_graph(...).compile(...)``, named after the spec."""
    spec = _coerce_spec(spec)
    builder = build_graph(spec, models=models, retry_attempts=retry_attempts, cache=cache)
    compile_kwargs.setdefault("name", spec.name)
    return builder.compile(checkpointer=checkpointer, **compile_kwargs)
