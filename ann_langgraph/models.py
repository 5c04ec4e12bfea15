"""Model registry: resolve the names a spec uses to chat models, with retry and timeout rules."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool
from langgraph.types import RetryPolicy

from .spec import AgentSpec, GraphSpec, ModelConfig

__all__ = [
    "ModelError",
    "ModelResolver",
    "ModelsArg",
    "init_model",
    "is_retryable",
    "llm_retry_policy",
    "model_label",
    "register_model",
    "registered_models",
    "structured_output_method",
    "with_structured_output_method",
]

ModelLike = BaseChatModel | Runnable[Any, Any] | str | ModelConfig
ModelsArg = ModelLike | Mapping[str, ModelLike] | None

DEFAULT_TIMEOUT_S = 120.0

_RETRYABLE_NAMES = {
    "APITimeoutError",
    "APIConnectionError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "OverloadedError",
    "Timeout",
    "ReadTimeout",
    "ConnectTimeout",
    "RemoteProtocolError",
}


def model_label(model: Any) -> str:
    """A readable name for a model object (its ``model_name``/``model``, else its class)."""
    if isinstance(model, str):
        return model
    if isinstance(model, ModelConfig):
        return model.model
    return str(
        getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
    )


class ModelError(RuntimeError):
    """A model string could not be turned into a chat model (unknown provider, missing key...)."""


def is_retryable(exc: BaseException) -> bool:
    """Retry timeouts, connection drops, 408/429 and 5xx; never other 4xx or parse errors."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 429) or status >= 500
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return any(cls.__name__ in _RETRYABLE_NAMES for cls in type(exc).__mro__)


#: Seconds before the first retry of a failed model call (doubling after each retry), and
#: whether to add up to one second of random jitter. Read when a graph is built, so code (and
#: tests) that cannot wait can lower them: ``ann_langgraph.models.RETRY_INITIAL_INTERVAL = 0.01``.
RETRY_INITIAL_INTERVAL = 0.5
RETRY_JITTER = True


def llm_retry_policy(
    max_attempts: int = 3,
    *,
    initial_interval: float | None = None,
    jitter: bool | None = None,
) -> RetryPolicy:
    """The retry policy every LLM-calling node gets (defaults: the module settings above)."""
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_interval=RETRY_INITIAL_INTERVAL if initial_interval is None else initial_interval,
        jitter=RETRY_JITTER if jitter is None else jitter,
        retry_on=is_retryable,
    )


_FACTORIES: dict[str, Callable[[], BaseChatModel]] = {}


def register_model(
    name: str, factory: Callable[[], BaseChatModel], *, replace: bool = False
) -> None:
    """Let specs and ``--model`` use ``name`` for a model your code builds (custom clients)."""
    if name in _FACTORIES and not replace:
        raise ValueError(f"model '{name}' is already registered (pass replace=True)")
    _FACTORIES[name] = factory


#: Metadata key on a chat model that carries its structured-output method (set by init_model).
STRUCTURED_OUTPUT_KEY = "ann_structured_output"
#: API key sent to a keyless OpenAI-compatible server (vLLM, Ollama and llama.cpp ignore it).
PLACEHOLDER_API_KEY = "not-needed"


def registered_models() -> list[str]:
    """Names registered with ``register_model`` (usable as model strings)."""
    return sorted(_FACTORIES)


def init_model(
    name: str | ModelConfig,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    base_url: str | None = None,
    api_key_env: str | None = None,
    structured_output: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> BaseChatModel:
    """Turn a model string (or a models-table entry) into a chat model.

    ``name`` is a registered name, ``"local"``, or any ``init_chat_model`` string such as
    ``"openai:gpt-4o-mini"``. ``base_url`` points an OpenAI-style client at an OpenAI-compatible
    server (``OPENAI_BASE_URL`` does the same for ``openai:`` models); such a server gets a
    placeholder key when no key is set. ``structured_output`` fixes the method the router and
    the optimizer use with this model.
    """
    if isinstance(name, ModelConfig):
        return init_model(
            name.model,
            timeout_s=timeout_s,
            base_url=base_url or name.base_url,
            api_key_env=api_key_env or name.api_key_env,
            structured_output=structured_output or name.structured_output,
            params={**name.params, **(params or {})},
        )
    if structured_output not in (None, "function_calling", "json_schema", "json_mode"):
        raise ModelError(
            f"model '{name}': unknown structured_output '{structured_output}' "
            "(use function_calling, json_schema or json_mode)"
        )
    from .local.catalogue import is_local_string

    if name in _FACTORIES or is_local_string(name):
        if base_url or api_key_env or params:
            raise ModelError(
                f"model '{name}': base_url, api_key_env and params apply to provider models "
                "(e.g. 'openai:NAME'), not to registered or embedded ones"
            )
        if name in _FACTORIES:
            model = _FACTORIES[name]()
        else:
            from .local import UnknownEmbeddedModel, local_chat_model, parse_local_string

            try:
                model = local_chat_model(embedded=parse_local_string(name))
            except UnknownEmbeddedModel as exc:
                raise ModelError(str(exc)) from None
        return with_structured_output_method(model, structured_output)
    model = _init_provider_model(
        name, timeout_s=timeout_s, base_url=base_url, api_key_env=api_key_env, params=params
    )
    if structured_output:
        model.metadata = {**(model.metadata or {}), STRUCTURED_OUTPUT_KEY: structured_output}
    return model


def _init_provider_model(
    name: str,
    *,
    timeout_s: float,
    base_url: str | None,
    api_key_env: str | None,
    params: Mapping[str, Any] | None,
) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    common: dict[str, Any] = dict(params or {})
    provider, sep, _ = name.partition(":")
    if base_url and not sep:
        common["model_provider"] = "openai"  # a bare name on an OpenAI-compatible server
        provider = "openai"
    if base_url:
        common["base_url"] = base_url
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ModelError(f"model '{name}': environment variable {api_key_env} is not set")
        common["api_key"] = key
    elif (
        provider == "openai"
        and (base_url or os.environ.get("OPENAI_BASE_URL"))
        and not os.environ.get("OPENAI_API_KEY")
    ):
        common["api_key"] = PLACEHOLDER_API_KEY
    last: Exception | None = None
    # Retries are done by the graph's RetryPolicy; turn the client's own off where supported.
    attempts: list[dict[str, Any]] = [
        {"timeout": timeout_s, "max_retries": 0},
        {"timeout": timeout_s},
        {},
    ]
    for extra in attempts:
        try:
            return init_chat_model(name, **{**extra, **common})
        except ImportError as exc:
            raise ModelError(f"model '{name}': provider package missing ({exc})") from None
        except TypeError as exc:
            last = exc
            continue
        except Exception as exc:  # provider constructors raise many types (missing key...)
            raise ModelError(f"model '{name}': {type(exc).__name__}: {exc}") from None
    raise ModelError(f"model '{name}': {last}")


def with_structured_output_method(model: BaseChatModel, method: str | None) -> BaseChatModel:
    """A copy of ``model`` whose structured output uses ``method`` (``None``: unchanged)."""
    if not method:
        return model
    metadata = {**(model.metadata or {}), STRUCTURED_OUTPUT_KEY: method}
    return model.model_copy(update={"metadata": metadata})


def structured_output_method(model: Any) -> str | None:
    """The method set for this model (models table / ``init_model``), else function calling
    for the embedded server and the provider's default elsewhere."""
    from .local import is_local_model

    inner = model
    for _ in range(64):
        if not isinstance(inner, RunnableBinding):
            break
        inner = inner.bound
    if isinstance(inner, BaseChatModel):
        chosen = (inner.metadata or {}).get(STRUCTURED_OUTPUT_KEY)
        if chosen:
            return str(chosen)
    if is_local_model(model):
        entry = getattr(inner, "entry", None)
        return entry.structured_output if entry is not None else "function_calling"
    return None


class ModelResolver:
    """Maps the spec's model names to chat models, honouring a compile-time ``models=`` override.

    ``models`` may be one model (or string) for every name, or a mapping from spec names to
    models/strings; names it does not cover fall back to the spec's own ``models`` table.

    ``cache`` (an LLM response cache, e.g. ``ann_langgraph.cache.SQLiteLLMCache``) is attached
    to every resolved ``BaseChatModel`` as a copy with ``cache=`` set (one copy per distinct
    model object, so a model used under several names keeps one script/state); models with
    ``cache=False`` keep it, and other runnables (chains, bindings) are used uncached, with a
    warning.
    """

    def __init__(
        self, spec: GraphSpec, models: ModelsArg = None, cache: BaseCache | None = None
    ) -> None:
        self._spec = spec
        self._override = models
        self._cache: dict[str, Runnable[Any, Any]] = {}
        self._lock = threading.Lock()
        self.llm_cache = cache
        self._cached_copies: dict[int, tuple[Runnable[Any, Any], Runnable[Any, Any]]] = {}
        if isinstance(models, Mapping):
            for key, value in models.items():
                if not isinstance(value, str | Runnable | ModelConfig):
                    raise TypeError(f"models['{key}'] must be a chat model or a model string")
        elif models is not None and not isinstance(models, str | Runnable | ModelConfig):
            raise TypeError("models must be a chat model, a model string, or a mapping of them")

    def names(self) -> set[str]:
        return set(self._spec.models)

    def only_embedded(self) -> bool:
        """Whether every model name resolves to the embedded ``"local"`` server.

        That server answers one request at a time, so callers run examples one by one
        (see ``evaluate.default_concurrency``). Decided without creating any model.
        """
        from .local import LocalChatModel, is_local_string

        def embedded(choice: ModelLike) -> bool:
            if isinstance(choice, ModelConfig):
                return is_local_string(choice.model)
            if isinstance(choice, str):
                return is_local_string(choice)
            return isinstance(choice, LocalChatModel)

        try:
            return all(embedded(self._choice(name)) for name in self.names())
        except ModelError:
            return False

    def model_string(self, name: str) -> str:
        """A readable label for the model behind ``name`` (for traces and the CLI)."""
        return model_label(self._choice(name))

    def _choice(self, name: str) -> ModelLike:
        override = self._override
        if isinstance(override, Mapping):
            if name in override:
                return override[name]
        elif override is not None:
            return override
        try:
            return self._spec.models[name]
        except KeyError:
            raise ModelError(f"unknown model name '{name}'") from None

    def get(self, name: str) -> Runnable[Any, Any]:
        with self._lock:
            if name not in self._cache:
                chosen = self._choice(name)
                model = init_model(chosen) if isinstance(chosen, str | ModelConfig) else chosen
                self._cache[name] = self._with_llm_cache(model)
            return self._cache[name]

    def _with_llm_cache(self, model: Runnable[Any, Any]) -> Runnable[Any, Any]:
        """``model`` with ``self.llm_cache`` attached (called under ``self._lock``)."""
        if self.llm_cache is None:
            return model
        if not isinstance(model, BaseChatModel):
            warnings.warn(
                f"LLM cache not attached to a {type(model).__name__}: only BaseChatModel "
                "instances get it; calls through this model are not cached",
                RuntimeWarning,
                stacklevel=4,
            )
            return model
        if model.cache is False:
            return model
        hit = self._cached_copies.get(id(model))
        if hit is None:
            hit = (model, model.model_copy(update={"cache": self.llm_cache}))
            self._cached_copies[id(model)] = hit  # the original is kept alive: ids stay unique
        return hit[1]

    def for_agent(self, agent: AgentSpec, *, tools: Sequence[BaseTool] = ()) -> Runnable[Any, Any]:
        """The agent's model with its tools, temperature and max_tokens bound."""
        model = self.get(agent.model or "default")
        if tools:
            try:
                model = model.bind_tools(list(tools))  # type: ignore[attr-defined]
            except (NotImplementedError, AttributeError) as exc:
                raise ModelError(
                    f"model '{self.label_for(agent)}' does not support tool calling, which "
                    f"layer tools need ({exc})"
                ) from None
        params: dict[str, Any] = {}
        if agent.temperature is not None:
            params["temperature"] = agent.temperature
        if agent.max_tokens is not None:
            params["max_tokens"] = agent.max_tokens
        return model.bind(**params) if params else model

    def label_for(self, agent: AgentSpec) -> str:
        return self.model_string(agent.model or "default")
