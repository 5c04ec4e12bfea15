"""The embedded model's chat model: ``LocalChatModel`` over the loopback server (started on
demand through ``registry``). How a call with tools or a schema becomes server requests is in
``protocol``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableLambda,
    RunnableMap,
    RunnablePassthrough,
)
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from .catalogue import ENV_MODEL, EmbeddedModel, entry_for
from .protocol import (
    DEFAULT_MAX_TOKENS,
    Plan,
    merge_results,
    normalize_tool_choice,
    server_mode,
)
from .registry import client_for, get_local_server
from .server import ALIAS, LocalServer
from .weights import find_gguf

__all__ = ["DEFAULT_MAX_TOKENS", "LocalChatModel", "is_local_model", "local_chat_model"]

_log = logging.getLogger(__name__)


class LocalChatModel(BaseChatModel):
    """Chat model for the embedded server; starts it lazily on the first call.

    Constructing one starts nothing (``ann show`` builds graphs without calling models). Calls go
    through ``langchain_openai.ChatOpenAI`` against the server and come back with
    ``usage_metadata`` (on the engine, ``input_token_details.cache_read`` counts the prompt
    tokens it reused from its cache rather than processed). ``max_tokens`` is sent as
    ``extra_body`` because the servers ignore the ``max_completion_tokens`` field that
    langchain-openai sends. Requests from threads and tasks queue on a per-server gate with as
    many places as the server has slots (one on the fallback server).

    Tools (``bind_tools``; see the module docstring for why not the engine's own): the model sees
    the tools in its system prompt; ``tool_choice`` naming a function (or ``"any"``/
    ``"required"`` with one tool) goes straight to a grammar-constrained call; ``"auto"`` first
    asks the model under a small grammar whether to answer or call, then makes that call (token
    usage is the sum of both requests). Arguments cut by ``max_tokens`` land in
    ``invalid_tool_calls``.

    Streaming: not implemented natively (a stream carries no usage); ``stream()`` yields the
    whole answer as one chunk, with usage.
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    temperature: float = 0.2
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Answer cap; None: the catalogue entry's (measured per model), else 256.",
    )
    timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds per HTTP request (slots share two cores: a long answer beside "
        "three others takes several times its lone duration).",
    )
    max_retries: int = Field(
        default=1,
        ge=0,
        description="HTTP retries. Few on purpose: a timed-out generation keeps the server busy, "
        "so a retry queues behind it; a dead server is restarted and the call retried once.",
    )
    seed: int | None = Field(
        default=0,
        description="Sampling seed; sample i of a voter (ann's sample index) uses seed + i, so "
        "runs repeat exactly even without the cache while voters still differ. None: random.",
    )
    embedded: str | None = Field(
        default=None,
        description="Catalogue entry to serve (`ann models`); None: ANN_LOCAL_MODEL, else the "
        "default entry.",
    )
    model_path: str | None = Field(
        default=None, description="Any GGUF to serve instead of a catalogue entry."
    )

    _server: LocalServer | None = PrivateAttr(default=None)
    _gguf_cache: tuple[str, Path] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _fill_cap(self) -> LocalChatModel:
        if self.max_tokens is None:
            entry = self.entry
            self.max_tokens = entry.max_tokens if entry is not None else DEFAULT_MAX_TOKENS
        return self

    # -- identity

    @property
    def entry(self) -> EmbeddedModel | None:
        """The catalogue entry served (None for an arbitrary GGUF file)."""
        if self.model_path:
            return None
        return entry_for(self.embedded)

    @property
    def _llm_type(self) -> str:
        return "ann-local"

    @property
    def model_name(self) -> str:
        """File name of the GGUF served (known without locating or assembling it)."""
        if self.model_path:
            return Path(self.model_path).name
        entry = self.entry
        if entry is not None:
            return entry.file_name
        override = os.environ.get(ENV_MODEL, "").strip()
        return Path(override).name if override else ALIAS

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llamacpp"
        params["ls_model_name"] = self.model_name
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        return params

    def _resolved_path(self) -> Path:
        if self.model_path:
            return Path(self.model_path).resolve()
        key = f"{self.embedded}|{os.environ.get(ENV_MODEL, '')}"
        cached = self._gguf_cache
        if cached is None or cached[0] != key:
            cached = self._gguf_cache = (key, find_gguf(self.embedded))  # may assemble once
        return cached[1]

    # -- server access

    def _get_server(self) -> LocalServer:
        server = self._server
        if server is None or not server.is_running():
            entry = self.entry
            server = self._server = get_local_server(
                self._resolved_path(), n_ctx=entry.n_ctx if entry is not None else None
            )
        return server

    async def _aget_server(self) -> LocalServer:
        server = self._server
        if server is not None and server.is_running():
            return server
        return await asyncio.to_thread(self._get_server)

    # -- generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import openai

        for attempt in (0, 1):
            server = self._get_server()
            try:
                return self._run(server, messages, stop, kwargs)
            except openai.APIConnectionError:
                if attempt or server.is_running():
                    raise
                _log.warning("the local model server died during a request; restarting it")
        raise AssertionError("unreachable")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import openai

        for attempt in (0, 1):
            server = await self._aget_server()
            try:
                return await self._arun(server, messages, stop, kwargs)
            except openai.APIConnectionError:
                if attempt or server.is_running():
                    raise
                _log.warning("the local model server died during a request; restarting it")
        raise AssertionError("unreachable")

    def _run(
        self,
        server: LocalServer,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        client = client_for(server.url, self.timeout, self.max_retries)
        plan = Plan.build(self, messages, stop, kwargs, mode=server_mode(server))
        with server.gate.hold():
            if plan.decision is None:
                return plan.finish(client._generate(plan.messages, stop=stop, **plan.final))
            first = client._generate(plan.decision_messages, **plan.decision)
            plan.choose(first)
            second = client._generate(plan.messages, stop=stop, **plan.final)
        return merge_results(first, plan.finish(second))

    async def _arun(
        self,
        server: LocalServer,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        client = client_for(server.url, self.timeout, self.max_retries)
        plan = Plan.build(self, messages, stop, kwargs, mode=server_mode(server))
        async with server.gate.ahold():
            if plan.decision is None:
                result = await client._agenerate(plan.messages, stop=stop, **plan.final)
                return plan.finish(result)
            first = await client._agenerate(plan.decision_messages, **plan.decision)
            plan.choose(first)
            second = await client._agenerate(plan.messages, stop=stop, **plan.final)
        return merge_results(first, plan.finish(second))

    # -- tools and structured output

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (anything ``convert_to_openai_tool`` takes).

        ``tool_choice``: ``None``/``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, a
        tool name, or ``{"type": "function", "function": {"name": ...}}``.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        names = [tool["function"]["name"] for tool in formatted]
        choice = normalize_tool_choice(tool_choice, names)
        return self.bind(tools=formatted, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output; raises ``OutputParserException`` when nothing parseable came back.

        ``function_calling`` (default) forces one tool whose arguments are grammar-constrained to
        the schema. ``json_schema`` is sent as ``response_format={"type": "json_object",
        "schema": ...}`` (the server rejects the OpenAI ``json_schema`` type with HTTP 500 but
        constrains ``json_object`` to a schema). ``json_mode`` is unconstrained JSON.
        ``strict`` is accepted and ignored (constraints come from the grammar).
        """
        if kwargs:
            raise ValueError(f"unsupported arguments for with_structured_output: {sorted(kwargs)}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        ls_format = {"kwargs": {"method": method}, "schema": schema}
        llm: Runnable[LanguageModelInput, Any]
        parser: Runnable[Any, Any]
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=ls_format)
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            parser = parser | RunnableLambda(_require_parsed)
        elif method in ("json_mode", "json_schema"):
            response_format: dict[str, Any] = {"type": "json_object"}
            bound = self.bind(
                response_format=response_format, ls_structured_output_format=ls_format
            )
            if method == "json_schema":
                json_schema = convert_to_json_schema(schema)
                response_format["schema"] = json_schema
                # The grammar fixes the shape; the model still needs the fields' meanings.
                llm = RunnableLambda(_schema_instruction(json_schema)) | bound
            else:
                llm = bound
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if is_pydantic
                else JsonOutputParser()
            )
        else:
            raise ValueError(
                f"unknown method {method!r}: use 'function_calling', 'json_mode' or 'json_schema'"
            )
        if include_raw:
            assign = RunnablePassthrough.assign(
                parsed=lambda x: parser.invoke(x["raw"]), parsing_error=lambda _: None
            )
            fallback = RunnablePassthrough.assign(parsed=lambda _: None)
            return RunnableMap(raw=llm) | assign.with_fallbacks(
                [fallback], exception_key="parsing_error"
            )
        return llm | parser


def _schema_instruction(json_schema: dict[str, Any]) -> Callable[[Any], list[BaseMessage]]:
    """Prepend the schema to the system prompt (once) so field descriptions reach the model."""
    from langchain_core.prompt_values import PromptValue

    text = (
        "Answer with one JSON object that follows this JSON Schema (field descriptions say what "
        "each field means):\n" + json.dumps(json_schema, ensure_ascii=False)
    )

    def add(value: Any) -> list[BaseMessage]:
        if isinstance(value, PromptValue):
            messages = value.to_messages()
        elif isinstance(value, str):
            from langchain_core.messages import HumanMessage

            messages = [HumanMessage(value)]
        else:
            messages = list(value)
        if messages and isinstance(messages[0], SystemMessage):
            return [SystemMessage(f"{messages[0].text}\n\n{text}"), *messages[1:]]
        return [SystemMessage(text), *messages]

    return add


def _require_parsed(value: Any) -> Any:
    if value is None:
        raise OutputParserException(
            "the local model returned no parseable tool call (arguments cut by max_tokens or "
            "not valid for the schema)"
        )
    return value


# --------------------------------------------------------------------------- helpers


def local_chat_model(**kwargs: Any) -> LocalChatModel:
    """The ``"local"`` model string's chat model; starts nothing until the first call."""
    return LocalChatModel(**kwargs)


def is_local_model(model: object) -> bool:
    """True for a ``LocalChatModel`` or a ``RunnableBinding`` (``bind``, ``bind_tools``) of one."""
    for _ in range(64):
        if isinstance(model, LocalChatModel):
            return True
        if isinstance(model, RunnableBinding):
            model = model.bound
            continue
        return False
    return False
