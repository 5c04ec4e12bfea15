"""``parallel_vote``: agents answer independently in parallel (``Send`` fan-out); majority wins."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from ..answers import extract_answer, normalize_answer
from ..spec import AgentSpec
from .base import LayerContext, LayerInput, LayerOutput, LayerState, message_text

DESCRIPTION = (
    "Parallel vote: every agent answers independently and in parallel; the answer most agents "
    "give wins (ties go to the earliest agent)."
)

VOTE_NODE = "_vote"


def tally(
    ctx: LayerContext, steps: list[dict[str, Any]], config: RunnableConfig, layer_text: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pick the winning step. Returns (winning step, decision record)."""
    ordered = sorted(steps, key=lambda s: s["index"])
    answers = [normalize_answer(extract_answer(s["text"], ctx.spec.answer_format)) for s in ordered]
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    decision: dict[str, Any] = {
        "kind": "vote",
        "answers": {s["agent"]: a for s, a in zip(ordered, answers, strict=True)},
        "counts": counts,
    }
    if not counts:
        decision.update(winner=ordered[0]["agent"], reason="no extractable answer; earliest agent")
        return ordered[0], decision
    best = max(counts.values())
    tied = [a for a in counts if counts[a] == best]
    # Earliest agent (in spec order) whose answer is among the tied ones.
    first_for = {a: next(s for s, x in zip(ordered, answers, strict=True) if x == a) for a in tied}
    winner_answer = min(tied, key=lambda a: first_for[a]["index"])
    reason = "majority" if len(tied) == 1 else "tie; earliest agent"
    if len(tied) > 1 and ctx.layer.judge is not None:
        judged = _judge(ctx, ctx.layer.judge, [first_for[a] for a in tied], config, layer_text)
        if judged is not None:
            winner_answer = tied[judged]
            reason = f"tie; judge '{ctx.layer.judge.id}' chose"
        else:
            reason = "tie; judge gave no usable choice; earliest agent"
    winner = first_for[winner_answer]
    decision.update(winner=winner["agent"], answer=winner_answer, reason=reason)
    return winner, decision


def _judge(
    ctx: LayerContext,
    judge: AgentSpec,
    options: list[dict[str, Any]],
    config: RunnableConfig,
    layer_text: str,
) -> int | None:
    listing = "\n\n".join(f"Option {i + 1}:\n{o['text']}" for i, o in enumerate(options))
    prompt = (
        f"{layer_text}\n\nThese answers are tied. Reply with the number of the best "
        f"option only.\n\n{listing}"
    )
    reply = message_text(
        ctx.call(judge, ctx.messages(judge, prompt), config, override_agent_id=judge.id)
    )
    match = re.search(r"\d+", reply)
    if match and 1 <= int(match.group()) <= len(options):
        return int(match.group()) - 1
    return None


def voter(ctx: LayerContext, agent: AgentSpec, index: int) -> Callable[..., dict[str, Any]]:
    def run_voter(payload: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        reply = message_text(
            ctx.call(agent, ctx.messages(agent, payload["layer_text"]), config, sample=index)
        )
        return {"steps": [{"agent": agent.id, "index": index, "text": reply}]}

    return run_voter


VoterFactory = Callable[[LayerContext, AgentSpec, int], Callable[..., dict[str, Any]]]


def build_vote(
    ctx: LayerContext, *, make_voter: VoterFactory = voter
) -> StateGraph[Any, Any, Any, Any]:
    """Send fan-out to every agent, then a deferred tally. ``make_voter(ctx, agent, index)``
    builds each voter node (variants, e.g. voters with their own tool loop, swap it)."""
    builder = StateGraph(LayerState, input_schema=LayerInput, output_schema=LayerOutput)
    agents = ctx.layer.agents

    def fan_out(state: LayerState) -> list[Send]:
        text = ctx.layer_input(state)
        return [Send(agent.id, {"layer_text": text}) for agent in agents]

    def vote(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
        steps = state.get("steps") or []
        winner, decision = tally(ctx, steps, config, ctx.layer_input(state))
        return {**ctx.finish(winner["text"]), "decision": decision}

    for i, agent in enumerate(agents):
        builder.add_node(
            agent.id,
            make_voter(ctx, agent, i),
            metadata=ctx.metadata(agent.id),
            retry_policy=ctx.retry_policy(),
        )
        builder.add_edge(agent.id, VOTE_NODE)
    builder.add_conditional_edges(START, fan_out, [a.id for a in agents])
    builder.add_node(VOTE_NODE, vote, defer=True, metadata=ctx.metadata(VOTE_NODE, record=True))
    builder.add_edge(VOTE_NODE, END)
    return builder
