"""``sequential_cot``: agents run in order, each seeing the layer input and all earlier outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from ..spec import AgentSpec
from .base import LayerContext, LayerInput, LayerOutput, LayerState, message_text

DESCRIPTION = (
    "Sequential chain-of-thought: agents work one after another, each building on the "
    "previous agents' outputs; the last agent's answer is the layer output."
)


def team_so_far(steps: list[dict[str, Any]]) -> str:
    """Earlier agents' outputs in this layer, as prompt text."""
    if not steps:
        return ""
    body = "\n\n".join(f"[{s['agent']}]\n{s['text']}" for s in steps)
    return f"\n\nYour team's work so far:\n{body}"


def _node(ctx: LayerContext, agent: AgentSpec, last: bool) -> Callable[..., dict[str, Any]]:
    def run_agent(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
        text = ctx.layer_input(state) + team_so_far(state.get("steps") or [])
        reply = message_text(ctx.call(agent, ctx.messages(agent, text), config))
        update: dict[str, Any] = {"steps": [{"agent": agent.id, "text": reply}]}
        if last:
            update.update(ctx.finish(reply))
        return update

    return run_agent


NodeFactory = Callable[[LayerContext, AgentSpec, bool], Callable[..., dict[str, Any]]]


def build_chain(ctx: LayerContext, make_node: NodeFactory) -> StateGraph[Any, Any, Any, Any]:
    """START -> agent 1 -> ... -> agent n -> END; the last agent publishes the layer output."""
    builder = StateGraph(LayerState, input_schema=LayerInput, output_schema=LayerOutput)
    previous = START
    agents = ctx.layer.agents
    for i, agent in enumerate(agents):
        builder.add_node(
            agent.id,
            make_node(ctx, agent, i == len(agents) - 1),
            metadata=ctx.metadata(agent.id),
            retry_policy=ctx.retry_policy(),
        )
        builder.add_edge(previous, agent.id)
        previous = agent.id
    builder.add_edge(previous, END)
    return builder


def build_sequential(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    return build_chain(ctx, _node)
