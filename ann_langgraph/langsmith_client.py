"""LangSmith configuration: whether it is on, and a client from the environment.

Reads the environment only; no ``langsmith.Client`` is created (so nothing reaches the network)
until one is asked for.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langsmith import Client

__all__ = ["LangSmithError", "langsmith_configured", "make_client", "new_run_id"]

_TRUE = ("true", "1", "yes")


class LangSmithError(RuntimeError):
    """LangSmith was asked for but is not configured, or a LangSmith call failed."""


def _env(name: str) -> str | None:
    """``LANGSMITH_<name>`` or its older ``LANGCHAIN_<name>`` alias, read fresh (the langsmith
    package caches environment reads for the life of the process)."""
    for key in (f"LANGSMITH_{name}", f"LANGCHAIN_{name}"):
        value = os.environ.get(key)
        if value:
            return value
    return None


def _api_key() -> str | None:
    return _env("API_KEY")


def langsmith_configured() -> bool:
    """True when LangSmith tracing is on: an API key and ``LANGSMITH_TRACING=true``
    (or ``LANGCHAIN_TRACING_V2=true``). Reads the environment only."""
    tracing = _env("TRACING") or os.environ.get("LANGCHAIN_TRACING_V2") or ""
    return bool(_api_key()) and tracing.strip().lower() in _TRUE


def make_client() -> Client:
    """A ``langsmith.Client`` from the environment (``LANGSMITH_ENDPOINT``, ``LANGSMITH_API_KEY``);
    raises :class:`LangSmithError` when there is no API key."""
    key = _api_key()
    if not key:
        raise LangSmithError(
            "LangSmith is not configured: set LANGSMITH_API_KEY (and LANGSMITH_TRACING=true to "
            "trace runs)"
        )
    from langsmith import Client

    return Client(api_url=_env("ENDPOINT"), api_key=key)


def new_run_id(name: str) -> str:
    """A readable, unique ANN run id: ``<name>-<UTC timestamp>-<4 hex>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "run"
    return f"{safe}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
