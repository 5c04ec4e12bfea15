"""The public scripted chat model users test with."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from ann_langgraph.testing import ScriptedChatModel, tool_call_message


class Pick(BaseModel):
    choice: str
    score: int = 0


def test_responses_in_order_then_default_then_error():
    model = ScriptedChatModel(responses=["one", "two"])
    assert model.invoke("a").content == "one"
    assert model.invoke("b").content == "two"
    with pytest.raises(RuntimeError, match="ran out"):
        model.invoke("c")
    model = ScriptedChatModel(responses=["one"], default="fallback")
    model.invoke("a")
    assert model.invoke("b").content == "fallback"


def test_rules_match_the_prompt_before_the_list():
    model = ScriptedChatModel(rules=[(r"weather", "sunny")], responses=["listed"])
    assert model.invoke("what's the weather").content == "sunny"
    assert model.invoke("hello").content == "listed"
    assert [c["text"] for c in model.calls] == ["human: what's the weather", "human: hello"]


def test_respond_function_and_exceptions():
    model = ScriptedChatModel(respond=lambda messages, **kw: messages[-1].content.upper())
    assert model.invoke("shout").content == "SHOUT"
    boom = ScriptedChatModel(responses=[TimeoutError("slow")])
    with pytest.raises(TimeoutError):
        boom.invoke("x")


def test_usage_metadata_counts_words():
    msg = ScriptedChatModel(default="three word reply").invoke("four words in here")
    assert msg.usage_metadata == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}


def test_bind_tools_passes_openai_tool_schemas_and_returns_tool_calls():
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ScriptedChatModel(responses=[tool_call_message("add", {"a": 1, "b": 2})])
    reply = model.bind_tools([add], tool_choice="auto").invoke("1+2")
    assert reply.tool_calls[0]["name"] == "add" and reply.tool_calls[0]["args"] == {"a": 1, "b": 2}
    sent = model.calls[0]["kwargs"]
    assert sent["tools"][0]["function"]["name"] == "add" and sent["tool_choice"] == "auto"


def test_with_structured_output_from_dict_json_text_and_garbage():
    model = ScriptedChatModel(responses=[{"choice": "x", "score": 3}, '{"choice": "y"}', "garbage"])
    structured = model.with_structured_output(Pick, method="function_calling")
    assert structured.invoke("a") == Pick(choice="x", score=3)
    assert structured.invoke("b") == Pick(choice="y")
    assert structured.invoke("c") is None  # no tool call, like a weak model


def test_async_and_reset():
    model = ScriptedChatModel(responses=["a", "b"], sleep_s=0.01)
    assert asyncio.run(model.ainvoke("x")).content == "a"
    model.reset()
    assert model.calls == [] and model.invoke("y").content == "a"
