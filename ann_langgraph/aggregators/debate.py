"""``debate``: agents answer in parallel, then revise for ``rounds`` rounds after reading peers.

Multi-agent debate (Du et al., 2023); the final round is settled by majority vote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from ..spec import AgentSpec
from .base import LayerContext, LayerInput, LayerOutput, LayerState, message_text
from .vote import VOTE_NODE, tally

DESCRIPTION = (
    "Debate: agents answer in parallel, then revise over several rounds after reading each "
    "other's answers; the final round is settled by majority vote."
)

COLLECT_NODE = "_collect"


def _debater(ctx: LayerContext, agent: AgentSpec, index: int) -> Callable[..., dict[str, Any]]:
    def run_debater(payload: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        text = payload["layer_text"]
        peers = [p for p in payload["peers"] if p["agent"] != agent.id]
        own = next((p["text"] for p in payload["peers"] if p["agent"] == agent.id), None)
        if payload["peers"]:
            others = "\n\n".join(f"[{p['agent']}]\n{p['text']}" for p in peers)
            text += (
                (f"\n\nYour previous answer:\n{own}" if own else "")
                + f"\n\nOther agents answered:\n{others}\n\n"
                "Consider their reasoning, then give your updated answer."
            )
        reply = message_text(ctx.call(agent, ctx.messages(agent, text), config, sample=index))
        return {
            "steps": [{"agent": agent.id, "index": index, "round": payload["round"], "text": reply}]
        }

    return run_debater


def build_debate(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(LayerState, input_schema=LayerInput, output_schema=LayerOutput)
    agents = ctx.layer.agents
    rounds = ctx.layer.rounds

    def sends(state: LayerState, round_no: int, peers: list[dict[str, Any]]) -> list[Send]:
        text = ctx.layer_input(state)
        payload = {"layer_text": text, "round": round_no, "peers": peers}
        return [Send(a.id, payload) for a in agents]

    def start(state: LayerState) -> list[Send]:
        return sends(state, 1, [])

    def next_round(state: LayerState) -> list[Send] | str:
        steps = state.get("steps") or []
        latest = max(s["round"] for s in steps)
        if latest >= rounds:
            return VOTE_NODE
        peers = sorted((s for s in steps if s["round"] == latest), key=lambda s: s["index"])
        return sends(state, latest + 1, peers)

    def vote(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
        steps = state.get("steps") or []
        latest = max(s["round"] for s in steps)
        final = [s for s in steps if s["round"] == latest]
        winner, decision = tally(ctx, final, config, ctx.layer_input(state))
        decision["rounds"] = latest
        return {**ctx.finish(winner["text"]), "decision": decision}

    for i, agent in enumerate(agents):
        builder.add_node(
            agent.id,
            _debater(ctx, agent, i),
            metadata=ctx.metadata(agent.id),
            retry_policy=ctx.retry_policy(),
        )
        builder.add_edge(agent.id, COLLECT_NODE)
    builder.add_conditional_edges(START, start, [a.id for a in agents])
    builder.add_node(COLLECT_NODE, lambda state: {}, defer=True)
    builder.add_conditional_edges(COLLECT_NODE, next_round, [*(a.id for a in agents), VOTE_NODE])
    builder.add_node(VOTE_NODE, vote, metadata=ctx.metadata(VOTE_NODE, record=True))
    builder.add_edge(VOTE_NODE, END)
    return builder
