"""examples/chat_app: an existing-style LangGraph chat app with an optimized spec as one node."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

import ann_langgraph as ann
from ann_langgraph.testing import ScriptedChatModel, agent_input, agent_role

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "chat_app" / "app.py"


def load_app() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("chat_app_example", APP)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def solver_model() -> ScriptedChatModel:
    """Each agent answers with its role; the tally and the writer make the flow visible."""

    def respond(messages: list[Any], **_: Any) -> str:
        role = agent_role(messages)
        question = agent_input(messages).strip().splitlines()[-1]
        return f"[{role}] {question} Answer: 12"

    return ScriptedChatModel(respond=respond)


@pytest.fixture
def app_and_models():
    module = load_app()
    chat = ScriptedChatModel(default="Hello! Ask me a math question.")
    solver = solver_model()
    graph = module.build_app(chat, spec_models=solver).compile(checkpointer=InMemorySaver())
    return graph, chat, solver


def test_the_example_spec_is_valid():
    spec = ann.load_spec(APP.parent / "solver.yaml")
    assert [layer.name for layer in spec.layers] == ["solve", "reply"]


def test_small_talk_goes_to_the_chat_node(app_and_models):
    graph, chat, solver = app_and_models
    out = graph.invoke(
        {"messages": [HumanMessage("hi there")]}, {"configurable": {"thread_id": "a"}}
    )
    assert [m.type for m in out["messages"]] == ["human", "ai"]
    assert out["messages"][-1].content == "Hello! Ask me a math question."
    assert solver.calls == []  # the spec did not run
    assert chat.calls[0]["messages"][0].content.startswith("You are a friendly assistant")


def test_math_goes_through_every_layer_of_the_spec(app_and_models):
    graph, chat, solver = app_and_models
    question = "A pen costs 3 dollars. How much do 4 pens cost?"
    out = graph.invoke({"messages": [HumanMessage(question)]}, {"configurable": {"thread_id": "b"}})
    human, reply = out["messages"]
    assert isinstance(human, HumanMessage) and isinstance(reply, AIMessage)
    assert reply.name == "math-helper"
    spec = ann.load_spec(APP.parent / "solver.yaml")
    assert reply.response_metadata["ann_fingerprint"] == spec.fingerprint
    # Two voters saw the question, then the writer saw the vote's winner (the first voter).
    roles = [agent_role(call["messages"]) for call in solver.calls]
    assert sorted(roles[:2]) == ["a careful solver", "a quick calculator"]
    assert roles[2] == "a friendly tutor"
    assert all(agent_input(call["messages"]) == question for call in solver.calls[:2])
    assert (
        reply.content == f"[a friendly tutor] [a careful solver] {question} Answer: 12 Answer: 12"
    )
    assert chat.calls == []


def test_a_thread_keeps_the_conversation(app_and_models):
    graph, chat, solver = app_and_models
    cfg = {"configurable": {"thread_id": "c"}}
    graph.invoke({"messages": [HumanMessage("hello")]}, cfg)
    out = graph.invoke({"messages": [HumanMessage("What is 5 + 7?")]}, cfg)
    assert [m.type for m in out["messages"]] == ["human", "ai", "human", "ai"]
    assert out["messages"][-1].name == "math-helper"
    # The spec read only the latest question, not the earlier small talk.
    assert agent_input(solver.calls[0]["messages"]) == "What is 5 + 7?"
    assert len(chat.calls) == 1  # small talk went to the chat node once
    assert ann.extract_answer(out["messages"][-1].content, "last_number") == "12"


def test_streaming_the_app_shows_the_spec_layers(app_and_models):
    graph, _, _ = app_and_models
    layers: list[str] = []
    for ns, chunk in graph.stream(
        {"messages": [HumanMessage("What is 2 * 6?")]},
        {"configurable": {"thread_id": "d"}},
        stream_mode="updates",
        subgraphs=True,
    ):
        if len(ns) == 1 and ns[0].startswith("solver"):
            layers.extend(chunk)
    assert layers == ["solve", "reply"]


def test_main_runs_with_a_registered_model(monkeypatch, capsys):
    from ann_langgraph import models as models_module

    monkeypatch.setattr(models_module, "_FACTORIES", dict(models_module._FACTORIES))
    ann.register_model("example-scripted", solver_model)
    replies = load_app().main(["--model", "example-scripted", "hello", "What is 3 * 4?"])
    assert len(replies) == 2
    assert replies[0].startswith("[a friendly assistant")  # the chat node's model
    assert replies[1].startswith("[a friendly tutor]")
    printed = capsys.readouterr().out
    assert "user: What is 3 * 4?\nmath-helper: [a friendly tutor]" in printed


@pytest.mark.local_model
def test_example_app_on_the_embedded_model():
    replies = load_app().main(["--model", "local", "What is 2 + 2?"])
    assert len(replies) == 1 and replies[0].strip()


# -- docs/use-in-your-app.md: the snippets are tested as written -----------------------------

GUIDE = ROOT / "docs" / "use-in-your-app.md"


def guide_blocks(lang: str) -> list[str]:
    """Fenced blocks whose info string is exactly ``lang`` (``python no-test`` is skipped)."""
    blocks, current, inside = [], [], False
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        if not inside and line.startswith("```"):
            inside, keep, current = True, line[3:].strip() == lang, []
        elif inside and line.startswith("```"):
            inside = False
            if keep:
                blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def test_guide_python_snippets_run(monkeypatch, capsys):
    from ann_langgraph import models as models_module

    def respond(messages: list[Any], **kwargs: Any) -> Any:
        if kwargs.get("tools"):  # the router's structured output
            return {"aggregator": "sequential_cot", "reason": "scripted"}
        return "Worked it out. Answer: 42"

    monkeypatch.setattr(models_module, "_FACTORIES", dict(models_module._FACTORIES))
    ann.register_model("local", lambda: ScriptedChatModel(respond=respond), replace=True)
    monkeypatch.chdir(ROOT)
    blocks = guide_blocks("python")
    assert len(blocks) >= 5
    namespace: dict[str, Any] = {"__name__": "guide"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{GUIDE.name}[python block {i}]", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "Worked it out. Answer: 42" in printed
    assert "['understand', 'solve', 'answer']" in printed
    assert "math-helper Worked it out" in printed
    assert "understand finished:" in printed and "answer finished:" in printed
    assert namespace["graph"].get_graph() is not None  # the OpenAI-compatible graph compiled
    assert namespace["chat_model"].openai_api_base == "http://127.0.0.1:11434/v1"
    assert "my-gateway" in models_module.registered_models()


def test_guide_yaml_spec_is_valid():
    specs = [b for b in guide_blocks("yaml") if "layers:" in b]
    assert specs
    for text in specs:
        spec = ann.parse_spec(text)
        assert spec.model_entry("local_llm").structured_output == "json_mode"


def test_guide_shell_snippets_use_real_ann_options():
    import shlex

    from typer.testing import CliRunner

    from ann_langgraph.cli import app

    runner = CliRunner()
    checked = 0
    for block in guide_blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line.split("|")[0], comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if len(words) < 2 or words[0] != "ann":
                continue
            help_text = runner.invoke(app, [words[1], "--help"], terminal_width=200).output
            for word in words[2:]:
                if word.startswith("-"):
                    assert word in help_text, f"`{line}`: ann {words[1]} has no {word}"
                    checked += 1
    assert checked >= 6
