"""The embedded model's chat model: ``LocalChatModel`` over the loopback server.

On the engine (llama.cpp's ``llama-server``, see ``engine``), structured output goes out as a
``json_schema`` response format that the engine compiles to a grammar, and tool calls use the
same grammars. Not the engine's own tool calling, measured on this llama.cpp: for SmolLM2 the
template shows no tools (the engine ignores them), and for Qwen2.5-Coder-1.5B its template
analysis finds no tool-call format, so ``tool_choice="required"`` gets no grammar and the model
writes its call in a ```json fence that the engine returns as text. So a forced call is one
request whose answer is constrained to the tool's argument schema, and ``auto`` first asks, under
a tiny grammar, whether to answer or call (the protocol below); both are exact on every model.

On the fallback (llama-cpp-python's server; measured on 0.3.x) the GGUF's own chat template
never shows tools to the model, and ``chatml-function-calling`` (that server's only generic tool
format) ignores ``max_tokens`` for arguments, returns empty text when the model chooses to
answer, drops ``tool`` messages and HTML-escapes every prompt. So there this module does the
function-calling protocol itself: it lists the tools in the system prompt, lets the model pick
``message`` or a function under a tiny grammar, then asks for the arguments with the server's
JSON-schema grammar (``tool_choice`` naming the function, which respects ``max_tokens``) or for
a plain answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatResult
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
from .registry import client_for, get_local_server
from .server import LocalServer
from .weights import find_gguf

__all__ = ["DEFAULT_MAX_TOKENS", "LocalChatModel", "is_local_model", "local_chat_model"]

_log = logging.getLogger(__name__)

# Answer cap for a GGUF outside the catalogue (entries carry their own, measured per model).
DEFAULT_MAX_TOKENS = 256
_ALIAS = "local"

_TOOLS_PREAMBLE = "You have access to the following functions:\n"
_TOOLS_INSTRUCTIONS = (
    "\nYou can respond to users messages with either a single message or a function call."
    "\n\nTo respond with a message begin the message with 'message:', use the following format:"
    "\n\nmessage:\n<message>"
    "\n\nTo respond with a function call begin the message with 'functions.<function_name>:', "
    "use the following format:"
    '\n\nfunctions.<function_name>:\n{ "arg1": "value1", "arg2": "value2" }'
)
_DEFAULT_SYSTEM = "You are a helpful assistant."
_DECISION_MAX_TOKENS = 24


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
        return Path(override).name if override else _ALIAS

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
        plan = _Plan.build(self, messages, stop, kwargs, mode=_mode(server))
        with server.gate.hold():
            if plan.decision is None:
                return plan.finish(client._generate(plan.messages, stop=stop, **plan.final))
            first = client._generate(plan.decision_messages, **plan.decision)
            plan.choose(first)
            second = client._generate(plan.messages, stop=stop, **plan.final)
        return _merge(first, plan.finish(second))

    async def _arun(
        self,
        server: LocalServer,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        client = client_for(server.url, self.timeout, self.max_retries)
        plan = _Plan.build(self, messages, stop, kwargs, mode=_mode(server))
        async with server.gate.ahold():
            if plan.decision is None:
                result = await client._agenerate(plan.messages, stop=stop, **plan.final)
                return plan.finish(result)
            first = await client._agenerate(plan.decision_messages, **plan.decision)
            plan.choose(first)
            second = await client._agenerate(plan.messages, stop=stop, **plan.final)
        return _merge(first, plan.finish(second))

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
        choice = _normalize_tool_choice(tool_choice, names)
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


def _normalize_tool_choice(choice: str | bool | dict[str, Any] | None, names: list[str]) -> Any:
    if choice is None or choice == "auto":
        return "auto"
    if choice is False or choice == "none":
        return "none"
    if choice is True or choice in ("any", "required"):
        return _named(names[0]) if len(names) == 1 else "required"
    name: Any = choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
    if not isinstance(name, str):
        raise ValueError(f"unrecognised tool_choice {choice!r}")
    if name not in names:
        raise ValueError(f"tool_choice names {name!r}, which is not among the tools {names}")
    return _named(name)


def _named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


_Mode = Literal["engine", "python"]


def _mode(server: LocalServer) -> _Mode:
    """``engine``: llama-server (JSON-schema grammars); ``python``: the fallback server."""
    return "engine" if server.engine == "llama-server" else "python"


class _Plan:
    """How one call maps onto server requests (one, or a decision then one)."""

    def __init__(self) -> None:
        self.mode: _Mode = "python"
        self.call_as_json: str | None = None  # the final request's JSON is this tool's call
        self.messages: list[BaseMessage] = []
        self.final: dict[str, Any] = {}
        self.decision: dict[str, Any] | None = None
        self.decision_messages: list[BaseMessage] = []
        self._tools: list[dict[str, Any]] = []
        self._plain: list[BaseMessage] = []
        self._base: dict[str, Any] = {}

    @classmethod
    def build(
        cls,
        model: LocalChatModel,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        mode: _Mode = "python",
    ) -> _Plan:
        """Requests for one call; ``mode`` as :func:`_mode` says."""
        kwargs = dict(kwargs)
        kwargs.pop("ls_structured_output_format", None)
        kwargs.pop("stream", None)
        requested = kwargs.pop("max_tokens", None)
        alias = kwargs.pop("max_completion_tokens", None)
        max_tokens = int(requested or alias or model.max_tokens or DEFAULT_MAX_TOKENS)
        extra_body: dict[str, Any] = dict(kwargs.pop("extra_body", None) or {})
        extra_body["max_tokens"] = max_tokens
        response_format = kwargs.pop("response_format", None)
        if mode != "python" and response_format is not None and "schema" in response_format:
            response_format = _json_schema_format(response_format["schema"])
        if response_format is not None:
            # Sent raw: langchain-openai would route it through the SDK's parse() helper.
            extra_body["response_format"] = response_format
        seed = kwargs.pop("seed", model.seed)
        if seed is not None:
            from ..cache import current_sample

            kwargs["seed"] = int(seed) + current_sample.get()
        kwargs.setdefault("temperature", model.temperature)
        tools: list[dict[str, Any]] = list(kwargs.pop("tools", None) or [])
        tool_choice = kwargs.pop("tool_choice", None)

        plan = cls()
        plan.mode = mode
        plan._tools = tools
        plan._base = {**kwargs, "extra_body": extra_body}
        plan._plain = _prepare_messages(messages)
        if not tools or tool_choice == "none":
            plan.messages = plan._plain
            plan.final = dict(plan._base)
            return plan
        tool_choice = _normalize_tool_choice(tool_choice, [t["function"]["name"] for t in tools])
        with_tools = _with_tools_prompt(plan._plain, tools)
        if isinstance(tool_choice, dict):
            plan.messages = with_tools
            plan._force(tool_choice["function"]["name"])
            return plan
        # "auto" or "required" with several tools: let the model choose under a grammar.
        options = [f"functions.{t['function']['name']}:" for t in tools]
        if tool_choice == "auto":
            options.insert(0, "message:")
        grammar = "root ::= " + " | ".join(_gbnf_literal(o) for o in options) + "\n"
        plan.decision_messages = with_tools
        plan.decision = {
            **{k: v for k, v in plan._base.items() if k not in ("temperature", "extra_body")},
            "temperature": 0.0,
            "extra_body": {"max_tokens": _DECISION_MAX_TOKENS, "grammar": grammar},
        }
        return plan

    def choose(self, decision: ChatResult) -> None:
        """Turn the decision into the final request (a forced call, or a plain answer)."""
        text = _result_text(decision).strip()
        names = {t["function"]["name"] for t in self._tools}
        name = text.removeprefix("functions.").removesuffix(":").strip()
        if text.startswith("functions.") and name in names:
            self.messages = self.decision_messages
            self._force(name)
        else:
            self.messages = self._plain
            self.final = dict(self._base)

    def _force(self, name: str) -> None:
        """The final request: a call of ``name`` with grammar-constrained arguments."""
        if self.mode == "python":  # that server constrains a named tool's arguments itself
            self.final = {**self._base, "tools": self._tools, "tool_choice": _named(name)}
            return
        # the engine without tool support in the template: ask for the arguments as JSON
        fn = next(t["function"] for t in self._tools if t["function"]["name"] == name)
        extra_body = dict(self._base["extra_body"])
        extra_body["response_format"] = _json_schema_format(fn.get("parameters") or {})
        self.final = {**self._base, "extra_body": extra_body}
        self.call_as_json = name

    def finish(self, result: ChatResult) -> ChatResult:
        """The result as the caller expects it (a JSON answer becomes the tool call it is)."""
        name = self.call_as_json
        if name is None or not result.generations:
            return result
        gen = result.generations[0]
        message = gen.message
        text = message.text if isinstance(message, BaseMessage) else ""
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        try:
            args = json.loads(text)
            if not isinstance(args, dict):
                raise ValueError("arguments are not a JSON object")
        except ValueError as exc:
            bad = invalid_tool_call(name=name, args=text, id=call_id, error=str(exc))
            update: dict[str, Any] = {"content": "", "invalid_tool_calls": [bad]}
        else:
            update = {"content": "", "tool_calls": [tool_call(name=name, args=args, id=call_id)]}
        # as the OpenAI API says it; generation_info keeps the engine's own reason ("length" when
        # the arguments were cut), which the execution records read
        metadata = dict(getattr(message, "response_metadata", None) or {})
        update["response_metadata"] = {**metadata, "finish_reason": "tool_calls"}
        new = message.model_copy(update=update)
        return ChatResult(
            generations=[ChatGeneration(message=new, generation_info=gen.generation_info)],
            llm_output=result.llm_output,
        )


def _json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The engine's (OpenAI's) JSON-schema response format."""
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def _prepare_messages(messages: list[BaseMessage]) -> list[BaseMessage]:
    """Make history renderable by the GGUF's template and acceptable to the server.

    The server rejects an assistant message whose content is null (what langchain-openai sends
    for a tool call) and the template shows only ``content``: so a past tool call becomes text in
    the same ``functions.<name>:`` form the tools prompt describes. List content becomes text.
    """
    prepared: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            parts: list[str] = [str(message.text)] if message.text else []
            for call in message.tool_calls:
                parts.append(f"functions.{call['name']}:\n{json.dumps(call['args'])}")
            for bad in message.invalid_tool_calls:
                parts.append(f"functions.{bad.get('name') or 'unknown'}:\n{bad.get('args') or ''}")
            prepared.append(AIMessage(content="\n".join(parts), id=message.id))
        elif not isinstance(message.content, str):
            prepared.append(message.model_copy(update={"content": message.text}))
        else:
            prepared.append(message)
    return prepared


def _with_tools_prompt(
    messages: list[BaseMessage], tools: list[dict[str, Any]]
) -> list[BaseMessage]:
    lines = [_TOOLS_PREAMBLE]
    for tool in tools:
        fn = tool["function"]
        lines.append(f"functions.{fn['name']}:")
        if fn.get("description"):
            lines.append(str(fn["description"]))
        lines.append(json.dumps(fn.get("parameters") or {}, ensure_ascii=False))
        lines.append("")
    block = "\n".join(lines) + _TOOLS_INSTRUCTIONS
    if messages and isinstance(messages[0], SystemMessage):
        head = messages[0]
        return [SystemMessage(content=f"{head.text}\n\n{block}"), *messages[1:]]
    return [SystemMessage(content=f"{_DEFAULT_SYSTEM}\n\n{block}"), *messages]


def _gbnf_literal(text: str) -> str:
    return json.dumps(text)  # GBNF string literals use JSON-style escapes


def _result_text(result: ChatResult) -> str:
    if not result.generations:
        return ""
    message = result.generations[0].message
    return message.text if isinstance(message, BaseMessage) else ""


def _merge(first: ChatResult, second: ChatResult) -> ChatResult:
    """The second result with the token usage of both requests."""
    usage_a = _usage(first)
    usage_b = _usage(second)
    generations = list(second.generations)
    if generations and isinstance(generations[0].message, AIMessage):
        gen = generations[0]
        total: UsageMetadata = add_usage(usage_a, usage_b)
        message = gen.message.model_copy(update={"usage_metadata": total})
        generations[0] = ChatGeneration(message=message, generation_info=gen.generation_info)
    llm_output = dict(second.llm_output or {})
    if usage_a or usage_b:
        total_usage = add_usage(usage_a, usage_b)
        llm_output["token_usage"] = {
            "prompt_tokens": total_usage["input_tokens"],
            "completion_tokens": total_usage["output_tokens"],
            "total_tokens": total_usage["total_tokens"],
        }
    return ChatResult(generations=generations, llm_output=llm_output)


def _usage(result: ChatResult) -> UsageMetadata | None:
    if result.generations and isinstance(result.generations[0].message, AIMessage):
        return result.generations[0].message.usage_metadata
    return None


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
