"""Test doubles for users' tests: a scripted chat model with tools and structured output.

None of langchain-core's fake chat models implement ``bind_tools`` or ``with_structured_output``,
which aggregators and the optimizer need; this one does, deterministically and offline.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from .aggregators.base import BRIEF_SEPARATOR

__all__ = ["ScriptedCall", "ScriptedChatModel", "agent_input", "agent_role", "tool_call_message"]

Response = str | AIMessage | dict[str, Any] | BaseException | Callable[..., Any]


def tool_call_message(name: str, args: dict[str, Any], *, content: str = "") -> AIMessage:
    """An ``AIMessage`` that calls tool ``name`` with ``args`` (for scripting tool use)."""
    return AIMessage(
        content=content,
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"}
        ],
    )


def _text(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else json.dumps(message.content)


def _split_brief(messages: Sequence[BaseMessage]) -> tuple[str, str | None]:
    """The last message as (input, trailing brief), the brief None outside context-first."""
    last = _text(messages[-1]) if messages else ""
    head, sep, brief = last.rpartition(BRIEF_SEPARATOR)
    return (head, brief) if sep and brief.startswith("You are ") else (last, None)


def agent_role(messages: Sequence[BaseMessage]) -> str:
    """The role an agent was called as (``You are <role>.``), in either prompt layout: first
    in the system prompt, or, for a layer whose agents differ, after the input."""
    _input, brief = _split_brief(messages)
    text = brief if brief is not None else _text(messages[0])
    match = re.match(r"You are (.*?)\.(?:\s|$)", text)
    return match.group(1) if match else ""


def agent_input(messages: Sequence[BaseMessage]) -> str:
    """The input an agent was given, without a context-first layout's trailing brief."""
    return _split_brief(messages)[0]


class ScriptedCall(dict[str, Any]):
    """One recorded call: ``messages``, ``text`` (the prompt flattened), ``kwargs``, ``thread``."""


def _flatten(messages: Sequence[BaseMessage]) -> str:
    parts = []
    for m in messages:
        parts.append(f"{m.type}: {_text(m)}")
    return "\n".join(parts)


def _count_tokens(text: str) -> int:
    return max(1, len(text.split()))


class ScriptedChatModel(BaseChatModel):
    """A chat model whose answers are scripted.

    Resolution order per call: ``respond`` (a function of the messages) if set, then the first
    matching ``rules`` entry (regex searched in the flattened prompt), then the next item of
    ``responses``, then ``default``. A response may be text, an ``AIMessage`` (e.g. from
    ``tool_call_message``), a dict (becomes structured output / a tool call when a schema or tool
    is bound), an exception (raised), or a callable ``f(messages, **kwargs)`` returning one.
    Every call is recorded in ``calls``; ``sleep_s`` adds latency (to test concurrency).
    """

    responses: list[Any] = Field(default_factory=list)
    rules: list[tuple[str, Any]] = Field(default_factory=list)
    respond: Callable[..., Any] | None = None
    default: Any = None
    sleep_s: float = 0.0
    model_name: str = "scripted"
    honour_max_tokens: bool = Field(
        default=False,
        description="Cut text answers at the call's max_tokens (one token per word here) and "
        "report finish_reason 'length', as a capped real model does.",
    )
    prompt_cache: bool = Field(
        default=False,
        description="Report input_token_details.cache_read: the longest prompt prefix (in "
        "words) shared with an earlier call, as a server with a prompt cache does.",
    )
    calls: list[ScriptedCall] = Field(default_factory=list)

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _cursor: int = PrivateAttr(default=0)
    _seen_prompts: list[list[str]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    # -- scripting ----------------------------------------------------------------
    def _next_response(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
        text = _flatten(messages)
        with self._lock:
            self.calls.append(
                ScriptedCall(
                    messages=list(messages),
                    text=text,
                    kwargs=dict(kwargs),
                    thread=threading.get_ident(),
                    time=time.monotonic(),
                )
            )
            if self.respond is not None:
                response: Any = self.respond
            else:
                response = None
                for pattern, candidate in self.rules:
                    if re.search(pattern, text, flags=re.DOTALL):
                        response = candidate
                        break
                if response is None:
                    if self._cursor < len(self.responses):
                        response = self.responses[self._cursor]
                        self._cursor += 1
                    elif self.default is not None:
                        response = self.default
                    else:
                        raise RuntimeError(
                            f"ScriptedChatModel ran out of responses after {len(self.calls)} calls"
                        )
        if callable(response) and not isinstance(response, BaseException | type):
            response = response(messages, **kwargs)
        return response

    def _to_message(
        self, response: Any, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> AIMessage:
        if isinstance(response, BaseException):
            raise response
        if isinstance(response, type) and issubclass(response, BaseException):
            raise response()
        tools = kwargs.get("tools") or []
        if isinstance(response, AIMessage):
            message = response.model_copy(deep=True)
        elif isinstance(response, dict) or (
            isinstance(response, str) and tools and _forced(kwargs)
        ):
            message = self._as_tool_call(response, tools)
        else:
            message = AIMessage(content=str(response))
        finish = message.response_metadata.get("finish_reason", "stop")
        cap = kwargs.get("max_tokens")
        if (
            self.honour_max_tokens
            and isinstance(cap, int)
            and isinstance(message.content, str)
            and _count_tokens(message.content) > cap
        ):
            message.content = " ".join(message.content.split()[:cap])
            finish = "length"
        message.response_metadata = {**message.response_metadata, "finish_reason": finish}
        prompt_words = _flatten(messages).split()
        prompt_tokens = _count_tokens(_flatten(messages))
        out_text = (
            message.content if isinstance(message.content, str) else json.dumps(message.content)
        )
        if message.tool_calls:
            out_text += json.dumps([tc["args"] for tc in message.tool_calls])
        completion_tokens = _count_tokens(out_text)
        message.usage_metadata = {
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if self.prompt_cache:
            with self._lock:
                reused = max(
                    (_shared_prefix(prompt_words, seen) for seen in self._seen_prompts),
                    default=0,
                )
                self._seen_prompts.append(prompt_words)
            message.usage_metadata["input_token_details"] = {
                "cache_read": min(reused, prompt_tokens)
            }
        message.response_metadata = {**message.response_metadata, "model_name": self.model_name}
        return message

    @staticmethod
    def _as_tool_call(response: Any, tools: list[dict[str, Any]]) -> AIMessage:
        name = tools[0]["function"]["name"] if tools else "output"
        if isinstance(response, dict):
            if set(response) == {"name", "args"} and isinstance(response["args"], dict):
                return tool_call_message(str(response["name"]), response["args"])
            return tool_call_message(name, response)
        try:
            args = json.loads(response)
        except (TypeError, ValueError):
            # Garbage where a tool call was required: no tool call at all, like a weak model.
            return AIMessage(content=str(response))
        if not isinstance(args, dict):
            return AIMessage(content=str(response))
        return tool_call_message(name, args)

    # -- BaseChatModel ---------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        response = self._next_response(messages, kwargs)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        message = self._to_message(response, messages, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        response = self._next_response(messages, kwargs)
        if self.sleep_s:
            await asyncio.sleep(self.sleep_s)
        message = self._to_message(response, messages, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: str | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Function-calling structured output; ``method``/``strict`` are accepted, ignored."""
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    def reset(self) -> None:
        """Forget recorded calls and rewind ``responses``."""
        with self._lock:
            self.calls.clear()
            self._cursor = 0


def _forced(kwargs: dict[str, Any]) -> bool:
    choice = kwargs.get("tool_choice")
    return choice not in (None, "auto", "none", False)


def _shared_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
