"""A small LangGraph chat app, written the usual way, that adds an optimized spec as one node.

Before ann-langgraph the app had one `chat` node. The only additions are the `solver` node
(``ann.as_node``: the last human message goes in, one AI message comes out) and the routing
that sends arithmetic questions to it. Everything else (``MessagesState``, the checkpointer,
threads, streaming) is plain LangGraph.

    python examples/chat_app/app.py "A pen costs 3 dollars. How much do 4 pens cost?"
    python examples/chat_app/app.py --model openai:gpt-4o-mini "hello" "What is 17 * 3?"
    python examples/chat_app/app.py --model openai:qwen2.5:7b \
        --base-url http://127.0.0.1:11434/v1 "What is 6 * 7?"     # Ollama, vLLM, llama.cpp
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

import ann_langgraph as ann
from ann_langgraph.models import ModelsArg

SPEC = Path(__file__).resolve().parent / "solver.yaml"
SYSTEM = "You are a friendly assistant. Answer briefly."
_MATH = re.compile(r"\d")


def route(state: MessagesState) -> Literal["solver", "chat"]:
    """Arithmetic questions (anything with a digit) go to the optimized solver."""
    text = state["messages"][-1].content
    return "solver" if isinstance(text, str) and _MATH.search(text) else "chat"


def build_app(
    chat_model: BaseChatModel,
    *,
    spec_path: str | Path = SPEC,
    spec_models: ModelsArg = None,
) -> StateGraph[Any, Any, Any, Any]:
    """The app's graph, uncompiled (the caller picks the checkpointer)."""

    def chat(state: MessagesState) -> dict[str, Any]:
        reply = chat_model.invoke([SystemMessage(SYSTEM), *state["messages"]])
        return {"messages": [reply]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    # The one new node: the optimized spec. `spec_models` overrides its models table.
    builder.add_node("solver", ann.as_node(spec_path, models=spec_models, messages=True))
    builder.add_conditional_edges(START, route, ["solver", "chat"])
    builder.add_edge("chat", END)
    builder.add_edge("solver", END)
    return builder


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="+", help="User messages, sent in order on one thread.")
    parser.add_argument("--model", default="local", help="Model string for chat and solver.")
    parser.add_argument("--base-url", default=None, help="An OpenAI-compatible server's URL.")
    args = parser.parse_args(argv)

    model_arg: str | ann.ModelConfig = args.model
    if args.base_url:
        model_arg = ann.ModelConfig(model=args.model, base_url=args.base_url)
    chat_model = ann.init_model(model_arg)
    app = build_app(chat_model, spec_models=chat_model).compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "demo"}}
    replies: list[str] = []
    for text in args.messages:
        state = app.invoke({"messages": [HumanMessage(text)]}, config)
        reply = state["messages"][-1]
        replies.append(str(reply.content))
        print(f"user: {text}\n{reply.name or 'assistant'}: {reply.content}\n")
    return replies


if __name__ == "__main__":
    main()
