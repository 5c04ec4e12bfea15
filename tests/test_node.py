"""as_node: a spec as one node of an existing LangGraph app (key mapping and chat messages)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

import ann_langgraph as ann
from ann_langgraph.node import last_human_text
from ann_langgraph.testing import ScriptedChatModel
from tests.conftest import agent, make_spec


def echo_model() -> ScriptedChatModel:
    """Answers with the agent's role and the task it was given, so the flow is visible."""

    def respond(messages: list[Any], **_: Any) -> str:
        role = str(messages[0].content).split(".")[0].removeprefix("You are ")
        task = str(messages[-1].content).splitlines()[-1]
        return f"{role} says: {task}"

    return ScriptedChatModel(respond=respond)


@pytest.fixture
def two_layer_spec() -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "draft", "agents": [agent("d", "Drafter")]},
            {"name": "final", "agents": [agent("f", "Finisher")]},
        ],
        name="My Solver",
    )


class AppState(TypedDict, total=False):
    question: str
    answer: str
    layers: dict[str, str]
    log: Annotated[list[str], operator.add]


def test_key_mapping_in_a_parent_graph(two_layer_spec):
    model = echo_model()
    builder = StateGraph(AppState)
    builder.add_node("before", lambda s: {"log": ["before"]})
    builder.add_node(
        "solver",
        ann.as_node(
            two_layer_spec,
            models=model,
            input_key="question",
            output_key="answer",
            layer_outputs_key="layers",
        ),
    )
    builder.add_node("after", lambda s: {"log": [f"after:{s['answer']}"]})
    builder.add_edge(START, "before")
    builder.add_edge("before", "solver")
    builder.add_edge("solver", "after")
    builder.add_edge("after", END)
    out = builder.compile().invoke({"question": "What is 2+2?", "log": []})

    # The first layer saw the question; the second layer saw the first layer's output.
    assert out["layers"]["draft"] == "Drafter says: What is 2+2?"
    assert out["answer"] == out["layers"]["final"]
    assert out["answer"].startswith("Finisher says:")
    assert "Drafter says: What is 2+2?" in model.calls[1]["text"]
    assert out["log"] == ["before", f"after:{out['answer']}"]
    assert set(out) == {"question", "answer", "layers", "log"}  # no spec keys leak into the app


def test_callable_input_and_async(two_layer_spec):
    node = ann.as_node(
        two_layer_spec,
        models=echo_model(),
        input_key=lambda s: f"{s['a']} and {s['b']}",
    )
    builder = StateGraph(dict)  # type: ignore[type-var]
    builder.add_node("solver", node)
    builder.add_edge(START, "solver")
    graph = builder.compile()
    sync = graph.invoke({"a": "x", "b": "y"})
    asynchronous = asyncio.run(graph.ainvoke({"a": "x", "b": "y"}))
    assert sync["output"] == asynchronous["output"]
    assert "Finisher says" in sync["output"]


def test_messages_adapter_appends_one_ai_message(two_layer_spec):
    builder = StateGraph(MessagesState)
    builder.add_node("solver", ann.as_node(two_layer_spec, models=echo_model(), messages=True))
    builder.add_edge(START, "solver")
    graph = builder.compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"messages": [HumanMessage("hello there")]}, cfg)
    assert [type(m) for m in first["messages"]] == [HumanMessage, AIMessage]
    reply = first["messages"][-1]
    assert reply.name == "My_Solver"  # sanitized spec name (valid as an OpenAI message name)
    assert reply.response_metadata["ann_fingerprint"] == two_layer_spec.fingerprint
    assert reply.content == "Finisher says: Drafter says: hello there"
    # The conversation continues on the same thread: the node reads the *last* human message.
    second = graph.invoke({"messages": [HumanMessage("second question")]}, cfg)
    assert [m.type for m in second["messages"]] == ["human", "ai", "human", "ai"]
    assert second["messages"][-1].content == ("Finisher says: Drafter says: second question")


def test_messages_adapter_reads_last_human_and_history():
    msgs = [
        SystemMessage("sys"),
        HumanMessage("first"),
        AIMessage("answer one"),
        HumanMessage("and then?"),
        AIMessage("tool-ish trailing ai message"),
    ]
    assert last_human_text(msgs) == "and then?"
    with_history = last_human_text(msgs, history=2)
    assert with_history.startswith("Conversation so far:\nhuman: first\nai: answer one")
    assert with_history.endswith("Latest message:\nand then?")
    # Plain dict/tuple messages (state without add_messages) work too.
    assert last_human_text([("user", "hi"), ("assistant", "hello")]) == "hi"
    with pytest.raises(ValueError, match="no human message"):
        last_human_text([AIMessage("only ai")])


def test_messages_node_sees_only_the_last_question(two_layer_spec):
    model = echo_model()
    node = ann.as_node(two_layer_spec, models=model, messages=True)
    out = node.invoke({"messages": [HumanMessage("old"), AIMessage("x"), HumanMessage("new")]})
    assert model.calls[0]["messages"][-1].content == "new"
    assert isinstance(out["messages"][0], AIMessage)


def test_missing_keys_are_clear_errors(two_layer_spec):
    node = ann.as_node(two_layer_spec, models=echo_model(), input_key="question")
    with pytest.raises(KeyError, match="no 'question' key"):
        node.invoke({"other": "x"})
    with pytest.raises(TypeError, match="must be a string"):
        node.invoke({"question": 3})
    chat = ann.as_node(two_layer_spec, models=echo_model(), messages=True)
    with pytest.raises(KeyError, match="no 'messages' key"):
        chat.invoke({"question": "x"})


def test_parent_stream_with_subgraphs_sees_layers(two_layer_spec):
    builder = StateGraph(AppState)
    builder.add_node(
        "solver",
        ann.as_node(two_layer_spec, models=echo_model(), input_key="question", output_key="answer"),
    )
    builder.add_edge(START, "solver")
    seen: list[str] = []
    for ns, chunk in builder.compile().stream(
        {"question": "q"}, stream_mode="updates", subgraphs=True
    ):
        if len(ns) == 1:  # inside the spec graph: one update per finished layer
            seen.extend(chunk)
    assert seen == ["draft", "final"]


def test_accepts_a_spec_path(tmp_path, two_layer_spec):
    path = ann.save_spec(two_layer_spec, tmp_path / "spec.yaml")
    node = ann.as_node(path, models=echo_model())
    assert node.invoke({"input": "hi"})["output"].startswith("Finisher says:")
    assert node.get_name() == "My_Solver"
