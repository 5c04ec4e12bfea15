"""``dynamic`` (DynamicRoutingSelect): a router picks one candidate aggregator per input.

The router sees the task, the layer's position, the layer input and the candidates'
descriptions, and answers with structured output. Any failure falls back to the first
candidate, and the reason is recorded in ``routes`` and in the trace.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, create_model

from ..models import structured_output_method
from .base import LayerContext, LayerInput, LayerOutput, LayerState
from .registry import get_aggregator

DESCRIPTION = (
    "DynamicRoutingSelect: a router chooses, per input, which of the layer's candidate "
    "aggregators to run."
)

ROUTER_NODE = "_router"
_INPUT_PREVIEW = 1500


def route_schema(candidates: list[str]) -> type[BaseModel]:
    """A structured-output schema whose choice is an enum of the candidates."""
    choice_type: Any = Literal[tuple(candidates)]
    return create_model(
        "RouteChoice",
        __doc__="Choose how this layer's team should work on the input.",
        aggregator=(choice_type, Field(description="The aggregation strategy to use.")),
        reason=(str, Field(default="", description="One short sentence: why.")),
    )


def router_messages(ctx: LayerContext, layer_text: str, candidates: list[str]) -> list[Any]:
    lines = "\n".join(f"- {c}: {get_aggregator(c).description}" for c in candidates)
    n = len(ctx.spec.layers)
    preview = (
        layer_text if len(layer_text) <= _INPUT_PREVIEW else layer_text[:_INPUT_PREVIEW] + "..."
    )
    system = (
        "You route work inside a multi-agent system. Pick the aggregation strategy that best "
        "suits this input for this layer. Answer with the function call only."
    )
    human = (
        f"Overall task: {ctx.spec.description or ctx.spec.name}\n"
        f"Layer {ctx.index + 1} of {n}: '{ctx.layer.name}' "
        f"(team: {', '.join(a.role for a in ctx.layer.agents)})\n"
        f"Candidates:\n{lines}\n\nLayer input:\n{preview}"
    )
    return [SystemMessage(system), HumanMessage(human)]


def build_dynamic(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    candidates = list(ctx.layer.candidates or [])
    schema = route_schema(candidates)
    builder = StateGraph(LayerState, input_schema=LayerInput, output_schema=LayerOutput)
    router_agent = ctx.layer.agents[0]

    def route(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
        choice, reason, fallback = candidates[0], "", True
        try:
            model = ctx.models.get(router_agent.model or "default")
            method = structured_output_method(model)
            kwargs = {"method": method} if method else {}
            structured = model.with_structured_output(schema, **kwargs)  # type: ignore[attr-defined]
            result = structured.invoke(
                router_messages(ctx, ctx.layer_input(state), candidates), config
            )
            if isinstance(result, dict):
                result = schema.model_validate(result)
            if result is None:
                reason = "router returned no choice; fell back to the first candidate"
            elif getattr(result, "aggregator", None) in candidates:
                choice, reason, fallback = result.aggregator, str(result.reason or ""), False
            else:
                reason = (
                    f"router chose an invalid option {result!r}; fell back to the first candidate"
                )
        except Exception as exc:  # any router failure must fall back, never crash the layer
            reason = (
                f"router failed ({type(exc).__name__}: {str(exc)[:200]}); "
                "fell back to the first candidate"
            )
        route_info = {"choice": choice, "reason": reason, "fallback": fallback}
        return {
            "routes": {ctx.layer.name: route_info},
            "decision": {"kind": "route", **route_info, "candidates": candidates},
        }

    def pick(state: LayerState) -> str:
        return str((state.get("routes") or {})[ctx.layer.name]["choice"])

    builder.add_node(ROUTER_NODE, route, metadata=ctx.metadata(ROUTER_NODE, record=True))
    builder.add_edge(START, ROUTER_NODE)
    builder.add_conditional_edges(ROUTER_NODE, pick, candidates)
    for cand in candidates:
        sub_ctx = replace(ctx, aggregator=cand)
        sub = get_aggregator(cand).build(sub_ctx).compile(name=f"{ctx.layer.name}.{cand}")
        builder.add_node(cand, sub)
        builder.add_edge(cand, END)
    return builder
