"""Model registry: resolve the names a spec uses to chat models, with retry and timeout rules."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.types import RetryPolicy

from .spec import AgentSpec, GraphSpec

__all__ = [
    "ModelError",
    "ModelResolver",
    "ModelsArg",
    "init_model",
    "is_retryable",
    "llm_retry_policy",
    "model_label",
    "register_model",
    "structured_output_method",
]

ModelLike = BaseChatModel | Runnable[Any, Any] | str
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


def init_model(name: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> BaseChatModel:
    """Turn a model string into a chat model: a registered name, ``"local"``, or any
    ``init_chat_model`` string such as ``"openai:gpt-4o-mini"``."""
    if name in _FACTORIES:
        return _FACTORIES[name]()
    if name == "local":
        from .local import local_chat_model

        return local_chat_model()
    from langchain.chat_models import init_chat_model

    last: Exception | None = None
    # Retries are done by the graph's RetryPolicy; turn the client's own off where supported.
    attempts: list[dict[str, Any]] = [
        {"timeout": timeout_s, "max_retries": 0},
        {"timeout": timeout_s},
        {},
    ]
    for extra in attempts:
        try:
            return init_chat_model(name, **extra)
        except ImportError as exc:
            raise ModelError(f"model '{name}': provider package missing ({exc})") from None
        except TypeError as exc:
            last = exc
            continue
        except Exception as exc:  # provider constructors raise many types (missing key...)
            raise ModelError(f"model '{name}': {type(exc).__name__}: {exc}") from None
    raise ModelError(f"model '{name}': {last}")


def structured_output_method(model: Any) -> str | None:
    """Function calling for the embedded server; the provider's default elsewhere."""
    from .local import is_local_model

    if is_local_model(model):
        return "function_calling"
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
                if not isinstance(value, str | Runnable):
                    raise TypeError(f"models['{key}'] must be a chat model or a model string")
        elif models is not None and not isinstance(models, str | Runnable):
            raise TypeError("models must be a chat model, a model string, or a mapping of them")

    def names(self) -> set[str]:
        return set(self._spec.models)

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
                model = init_model(chosen) if isinstance(chosen, str) else chosen
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
