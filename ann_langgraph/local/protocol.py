"""How one chat call of the embedded model maps onto server requests: tools, forced tool calls
and JSON-schema output, done with grammars because neither server does them for our models.

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

import json
import uuid
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.outputs import ChatGeneration, ChatResult

from .slots import reproducible

if TYPE_CHECKING:
    from .chat import LocalChatModel
    from .server import LocalServer

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "Mode",
    "Plan",
    "merge_results",
    "named_tool",
    "normalize_tool_choice",
    "server_mode",
]

# Answer cap for a GGUF outside the catalogue (entries carry their own, measured per model).
DEFAULT_MAX_TOKENS = 256
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


def normalize_tool_choice(choice: str | bool | dict[str, Any] | None, names: list[str]) -> Any:
    if choice is None or choice == "auto":
        return "auto"
    if choice is False or choice == "none":
        return "none"
    if choice is True or choice in ("any", "required"):
        return named_tool(names[0]) if len(names) == 1 else "required"
    name: Any = choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
    if not isinstance(name, str):
        raise ValueError(f"unrecognised tool_choice {choice!r}")
    if name not in names:
        raise ValueError(f"tool_choice names {name!r}, which is not among the tools {names}")
    return named_tool(name)


def named_tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


Mode = Literal["engine", "python"]


def server_mode(server: LocalServer) -> Mode:
    """``engine``: llama-server (JSON-schema grammars); ``python``: the fallback server."""
    return "python" if server.engine == "python" else "engine"


class Plan:
    """How one call maps onto server requests (one, or a decision then one)."""

    def __init__(self) -> None:
        self.mode: Mode = "python"
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
        mode: Mode = "python",
    ) -> Plan:
        """Requests for one call; ``mode`` as :func:`server_mode` says."""
        kwargs = dict(kwargs)
        kwargs.pop("ls_structured_output_format", None)
        kwargs.pop("stream", None)
        requested = kwargs.pop("max_tokens", None)
        alias = kwargs.pop("max_completion_tokens", None)
        max_tokens = int(requested or alias or model.max_tokens or DEFAULT_MAX_TOKENS)
        extra_body: dict[str, Any] = dict(kwargs.pop("extra_body", None) or {})
        extra_body["max_tokens"] = max_tokens
        if mode == "engine" and reproducible():
            extra_body["cache_prompt"] = False  # the whole prompt computed afresh, every time
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
        tool_choice = normalize_tool_choice(tool_choice, [t["function"]["name"] for t in tools])
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
            self.final = {**self._base, "tools": self._tools, "tool_choice": named_tool(name)}
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


def merge_results(first: ChatResult, second: ChatResult) -> ChatResult:
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
