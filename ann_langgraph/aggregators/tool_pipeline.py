"""``tool_pipeline``: sequential agents with the layer's tools, each in a bounded tool loop."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import StateGraph

from ..spec import AgentSpec
from ..tools import get_tool
from .base import LayerContext, LayerState, message_text
from .sequential import build_chain, team_so_far

DESCRIPTION = (
    "Tool pipeline: agents work one after another and may call the layer's tools (calculator, "
    "python, ...) in a bounded loop; tool results are fed back; the last agent's answer wins."
)

_TOOL_RESULT_LIMIT = 4000


def run_tool_call(tools: dict[str, BaseTool], call: dict[str, Any], config: RunnableConfig) -> str:
    """Run one tool call after checking its name and arguments; errors come back as text."""
    name = call.get("name")
    tool = tools.get(str(name))
    if tool is None:
        return f"error: unknown tool '{name}' (available: {', '.join(sorted(tools))})"
    args = call.get("args")
    if not isinstance(args, dict):
        return "error: tool arguments must be a JSON object"
    try:
        result = tool.invoke(args, config)
    except Exception as exc:  # a tool's failure is information for the agent, not a crash
        return f"error: {type(exc).__name__}: {str(exc)[:300]}"
    text = result if isinstance(result, str) else json.dumps(result, default=str)
    if len(text) > _TOOL_RESULT_LIMIT:
        text = text[:_TOOL_RESULT_LIMIT] + "...[truncated]"
    return text


def tool_loop(
    ctx: LayerContext,
    agent: AgentSpec,
    messages: list[BaseMessage],
    tools: list[BaseTool],
    config: RunnableConfig,
) -> str:
    """Call the agent, run its tool calls, feed results back; at most ``max_tool_calls`` rounds."""
    by_name = {t.name: t for t in tools}
    model = ctx.models.for_agent(agent, tools=tools)
    system, request = messages[0], message_text(messages[-1])
    transcript: list[str] = []
    reply = AIMessage(content="")
    for _ in range(ctx.layer.max_tool_calls):
        reply = model.invoke(messages, config)
        calls = list(reply.tool_calls) + [
            {"name": bad.get("name"), "args": None, "id": bad.get("id")}
            for bad in getattr(reply, "invalid_tool_calls", []) or []
        ]
        if not calls:
            return message_text(reply)
        messages = [*messages, reply]
        for call in calls:
            result = run_tool_call(by_name, call, config)
            call_id = call.get("id") or f"call_{uuid.uuid4().hex[:8]}"
            messages.append(ToolMessage(result, tool_call_id=call_id, name=str(call.get("name"))))
            transcript.append(f"{call.get('name')}({json.dumps(call.get('args'))}) -> {result}")
    # Out of tool rounds (or none allowed): ask for a final answer without tools, as plain text,
    # so models whose chat template has no tool role still understand the transcript.
    final_prompt = request
    if transcript:
        final_prompt += "\n\nTool results so far:\n" + "\n".join(transcript)
    final_prompt += "\n\nGive your final answer now, without calling tools."
    final = ctx.call(agent, [system, HumanMessage(final_prompt)], config)
    return message_text(final)


def _node(ctx: LayerContext, agent: AgentSpec, last: bool) -> Callable[..., dict[str, Any]]:
    tools = [get_tool(name) for name in ctx.layer.tools]

    def run_agent(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
        text = ctx.layer_input(state) + team_so_far(state.get("steps") or [])
        reply = tool_loop(ctx, agent, ctx.messages(agent, text), tools, config)
        update: dict[str, Any] = {"steps": [{"agent": agent.id, "text": reply}]}
        if last:
            update.update(ctx.finish(reply))
        return update

    return run_agent


def build_tool_pipeline(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    return build_chain(ctx, _node)
