"""``self_refine``: the first agent drafts; critics (the other agents, or itself) give feedback;
the drafter revises, for up to ``rounds`` rounds or until every critic approves.

Self-Refine (Madaan et al., 2023) / Reflexion-style critique and revision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from ..spec import AgentSpec
from .base import LayerContext, LayerInput, LayerOutput, LayerState, message_text

DESCRIPTION = (
    "Self-refine: the first agent drafts an answer, the other agents (or the drafter itself) "
    "critique it, and the drafter revises until the critics approve or the rounds run out."
)

APPROVAL = "NO ISSUES"
SELF_CRITIC_NODE = "_self_critic"
COLLECT_NODE = "_collect"

CRITIC_INSTRUCTIONS = (
    "Critique the draft below: point out concrete errors and how to fix them. If it is correct "
    f"and complete, reply exactly '{APPROVAL}'."
)


def _approves(text: str) -> bool:
    return APPROVAL.lower() in text.lower()


def build_self_refine(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(LayerState, input_schema=LayerInput, output_schema=LayerOutput)
    writer, *critics = ctx.layer.agents
    rounds = ctx.layer.rounds
    critic_nodes = [c.id for c in critics] or [SELF_CRITIC_NODE]

    def drafts(state: LayerState) -> list[dict[str, Any]]:
        return [s for s in state.get("steps") or [] if s["kind"] == "draft"]

    def write(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
        done = drafts(state)
        text = ctx.layer_input(state)
        if done:
            latest = done[-1]
            feedback = [
                s
                for s in state.get("steps") or []
                if s["kind"] == "critique" and s["round"] == latest["round"]
            ]
            if feedback and all(_approves(f["text"]) for f in feedback):
                approved = ctx.finish(latest["text"])
                approved["decision"] = {
                    "kind": "refine",
                    "drafts": len(done),
                    "stopped": "approved",
                }
                return approved
            notes = "\n\n".join(f"[{f['agent']}]\n{f['text']}" for f in feedback)
            text += (
                f"\n\nYour previous draft:\n{latest['text']}\n\nFeedback:\n{notes}\n\n"
                "Write an improved answer that fixes these issues."
            )
        reply = message_text(ctx.call(writer, ctx.messages(writer, text), config))
        round_no = len(done) + 1
        update: dict[str, Any] = {
            "steps": [{"kind": "draft", "agent": writer.id, "round": round_no, "text": reply}]
        }
        if round_no > rounds:
            update.update(ctx.finish(reply))
            update["decision"] = {"kind": "refine", "drafts": round_no, "stopped": "rounds"}
        return update

    def after_write(state: LayerState) -> list[Send] | str:
        if ctx.layer.name in (state.get("layer_outputs") or {}):
            return END
        latest = drafts(state)[-1]
        payload = {
            "layer_text": ctx.layer_input(state),
            "draft": latest["text"],
            "round": latest["round"],
        }
        return [Send(node, payload) for node in critic_nodes]

    def critic(agent: AgentSpec, node_id: str) -> Callable[..., dict[str, Any]]:
        def run_critic(payload: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            text = f"{payload['layer_text']}\n\n{CRITIC_INSTRUCTIONS}\n\nDraft:\n{payload['draft']}"
            reply = message_text(ctx.call(agent, ctx.messages(agent, text), config))
            step = {"kind": "critique", "agent": node_id, "round": payload["round"], "text": reply}
            return {"steps": [step]}

        return run_critic

    builder.add_node(
        writer.id,
        write,
        metadata=ctx.metadata(writer.id, record=True),
        retry_policy=ctx.retry_policy(),
    )
    builder.add_edge(START, writer.id)
    builder.add_conditional_edges(writer.id, after_write, [*critic_nodes, END])
    if critics:
        for agent in critics:
            builder.add_node(
                agent.id,
                critic(agent, agent.id),
                metadata=ctx.metadata(agent.id),
                retry_policy=ctx.retry_policy(),
            )
    else:
        builder.add_node(
            SELF_CRITIC_NODE,
            critic(writer, writer.id),
            metadata=ctx.metadata(writer.id),
            retry_policy=ctx.retry_policy(),
        )
    for node in critic_nodes:
        builder.add_edge(node, COLLECT_NODE)
    builder.add_node(COLLECT_NODE, lambda state: {}, defer=True)
    builder.add_edge(COLLECT_NODE, writer.id)
    return builder
