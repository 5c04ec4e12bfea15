"""Drop an (optimized) spec into an existing LangGraph app as one node.

``as_node`` returns a runnable that ``StateGraph.add_node`` accepts. It maps the app's state to
the spec's ``{"input": ...}`` and the spec's answer back to the app's keys, or, for chat apps,
reads the last human message and appends an AI message. The spec runs as a nested graph with
the node's config, so the app's callbacks, tracing, checkpointer and ``stream(...,
subgraphs=True)`` see every layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from .aggregators.base import message_text
from .compile import SpecLike, _coerce_spec, compile_graph
from .models import ModelsArg

__all__ = ["as_node", "last_human_text"]

InputKey = str | Callable[[Mapping[str, Any]], str]


def _node_name(text: str) -> str:
    """LangGraph node names and OpenAI message names: letters, digits, '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "ann"


def last_human_text(messages: Sequence[Any], *, history: int = 0) -> str:
    """The last human message's text; with ``history`` > 0, up to that many earlier messages
    are prepended as a transcript so follow-up questions keep their context."""
    msgs: list[BaseMessage] = convert_to_messages(list(messages))
    for i in range(len(msgs) - 1, -1, -1):
        if isinstance(msgs[i], HumanMessage):
            question = message_text(msgs[i])
            if history <= 0 or i == 0:
                return question
            earlier = [m for m in msgs[max(0, i - history) : i] if message_text(m).strip()]
            if not earlier:
                return question
            lines = [f"{m.type}: {message_text(m)}" for m in earlier]
            return "Conversation so far:\n" + "\n".join(lines) + f"\n\nLatest message:\n{question}"
    raise ValueError("as_node(messages=True): the conversation has no human message")


def as_node(
    spec: SpecLike,
    *,
    models: ModelsArg = None,
    input_key: InputKey = "input",
    output_key: str = "output",
    layer_outputs_key: str | None = None,
    messages: bool = False,
    messages_key: str = "messages",
    history: int = 0,
    cache: BaseCache | None = None,
    retry_attempts: int = 3,
    name: str | None = None,
) -> Runnable[Any, dict[str, Any]]:
    """A node for ``StateGraph.add_node`` that runs ``spec`` on the app's state.

    Key mapping (default): reads ``state[input_key]`` (or ``input_key(state)`` when callable)
    and writes ``{output_key: answer}`` plus, when ``layer_outputs_key`` is set, every layer's
    output under that key. With ``messages=True`` (chat apps on ``MessagesState``): reads the
    last human message of ``state[messages_key]`` (plus ``history`` earlier messages as
    context) and writes ``{messages_key: [AIMessage(answer)]}``, which ``add_messages``
    appends. The spec is compiled once, here; ``models``/``cache``/``retry_attempts`` are as in
    ``compile_graph``.
    """
    graph_spec = _coerce_spec(spec)
    node_name = name or _node_name(graph_spec.name)
    graph = compile_graph(
        graph_spec, models=models, cache=cache, retry_attempts=retry_attempts, name=node_name
    )
    fingerprint = graph_spec.fingerprint

    def task_text(state: Mapping[str, Any]) -> str:
        if not isinstance(state, Mapping):
            raise TypeError(f"as_node expects a dict-like state, got {type(state).__name__}")
        if messages:
            if messages_key not in state:
                raise KeyError(f"as_node: the state has no '{messages_key}' key")
            return last_human_text(state[messages_key], history=history)
        if callable(input_key):
            text = input_key(state)
        else:
            if input_key not in state:
                keys = ", ".join(sorted(map(str, state))) or "none"
                raise KeyError(f"as_node: the state has no '{input_key}' key (keys: {keys})")
            text = state[input_key]
        if not isinstance(text, str):
            raise TypeError(f"as_node: the task must be a string, got {type(text).__name__}")
        return text

    def update(result: Mapping[str, Any]) -> dict[str, Any]:
        answer = str(result.get("output", ""))
        out: dict[str, Any] = {}
        if messages:
            out[messages_key] = [
                AIMessage(
                    content=answer,
                    name=node_name,
                    response_metadata={"ann_spec": graph_spec.name, "ann_fingerprint": fingerprint},
                )
            ]
        else:
            out[output_key] = answer
        if layer_outputs_key:
            out[layer_outputs_key] = dict(result.get("layer_outputs") or {})
        return out

    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return update(graph.invoke({"input": task_text(state)}, config))

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return update(await graph.ainvoke({"input": task_text(state)}, config))

    return RunnableLambda(run, afunc=arun, name=node_name)
