"""Structured output that small and local models cannot crash: validate, retry once with the
error fed back, then give up with a recorded reason."""

from __future__ import annotations

from typing import Any, TypeVar

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ValidationError

from .cache import is_cache_hit
from .models import is_retryable, structured_output_method

__all__ = ["StructuredResult", "call_usage", "invoke_structured"]

T = TypeVar("T", bound=BaseModel)


class StructuredResult(BaseModel):
    """What came back: the parsed object, or why there is none, and how many tries it took."""

    value: Any = None
    error: str | None = None
    attempts: int = 0
    usage: dict[str, int] = {}


def call_usage(raw: Any) -> dict[str, int]:
    """What one model answer cost: a cache replay is free (a cached call), else its tokens."""
    if raw is not None and is_cache_hit(raw):
        return {"calls": 0, "cached_calls": 1, "input_tokens": 0, "output_tokens": 0}
    tokens = getattr(raw, "usage_metadata", None) or {}
    return {
        "calls": 1,
        "cached_calls": 0,
        "input_tokens": int(tokens.get("input_tokens", 0)),
        "output_tokens": int(tokens.get("output_tokens", 0)),
    }


def invoke_structured(
    model: Runnable[Any, Any],
    schema: type[T],
    messages: list[BaseMessage],
    config: RunnableConfig | None = None,
    *,
    retries: int = 1,
) -> StructuredResult:
    """Ask ``model`` for a ``schema`` object; on failure retry with the validation error shown.

    The method is picked per model (function calling for the embedded server, the provider's
    default elsewhere). Transient transport errors propagate so the graph's retry policy handles
    them; everything else becomes ``error``.
    """
    method = structured_output_method(model)
    kwargs = {"method": method} if method else {}
    try:
        runnable = model.with_structured_output(schema, include_raw=True, **kwargs)  # type: ignore[attr-defined]
    except (NotImplementedError, AttributeError, TypeError, ValueError) as exc:
        return StructuredResult(error=f"model cannot do structured output: {exc}")
    error = "no answer"
    attempt = 0
    usage = {"calls": 0, "cached_calls": 0, "input_tokens": 0, "output_tokens": 0}
    for attempt in range(1, retries + 2):
        try:
            out = runnable.invoke(messages, config)
        except Exception as exc:
            if is_retryable(exc):
                raise
            usage["calls"] += 1
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
        else:
            raw = out.get("raw") if isinstance(out, dict) else None
            for key, value in call_usage(raw).items():
                usage[key] += value
            parsed = out.get("parsed") if isinstance(out, dict) else out
            parse_error = out.get("parsing_error") if isinstance(out, dict) else None
            if isinstance(parsed, dict):
                try:
                    parsed = schema.model_validate(parsed)
                except ValidationError as exc:
                    parsed, parse_error = None, exc
            if isinstance(parsed, schema) and parse_error is None:
                return StructuredResult(value=parsed, attempts=attempt, usage=usage)
            error = (
                str(parse_error)[:500] if parse_error else "the model returned no structured answer"
            )
        messages = [
            *messages,
            HumanMessage(
                f"Your previous answer was not valid: {error}\n"
                "Answer again, with an answer that matches the schema exactly."
            ),
        ]
    return StructuredResult(error=error, attempts=attempt, usage=usage)
