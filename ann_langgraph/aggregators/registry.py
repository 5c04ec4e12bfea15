"""Aggregator registry: names in specs map to node-template builders with one-line descriptions.

The descriptions are read by the DynamicRoutingSelect router and by the optimizer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..names import declare_aggregator

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from .base import LayerContext

__all__ = [
    "AggregatorTemplate",
    "aggregator_descriptions",
    "aggregator_names",
    "get_aggregator",
    "register_aggregator",
]

Builder = Callable[["LayerContext"], "StateGraph[Any, Any, Any, Any]"]


@dataclass(frozen=True)
class AggregatorTemplate:
    """A registered node template: ``build(ctx)`` returns the layer's uncompiled subgraph."""

    name: str
    description: str
    build: Builder
    uses_tools: bool = False


_LOCK = threading.Lock()
_REGISTRY: dict[str, AggregatorTemplate] = {}
_BUILTINS_LOADED = False


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from . import builtins  # noqa: F401  (registers on import)


def register_aggregator(
    name: str,
    build: Builder,
    *,
    description: str,
    uses_tools: bool = False,
    replace: bool = False,
) -> AggregatorTemplate:
    """Register a node template under ``name`` so specs (and the router) can use it."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"aggregator name must be alphanumeric/underscore, got {name!r}")
    if not description.strip():
        raise ValueError("an aggregator needs a one-line description (the router reads it)")
    template = AggregatorTemplate(name, description.strip(), build, uses_tools)
    with _LOCK:
        if name in _REGISTRY and not replace:
            raise ValueError(f"aggregator '{name}' is already registered (pass replace=True)")
        _REGISTRY[name] = template
    declare_aggregator(name)  # specs may now name it
    return template


def get_aggregator(name: str) -> AggregatorTemplate:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown aggregator '{name}' (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def aggregator_names() -> set[str]:
    _load_builtins()
    return set(_REGISTRY)


def aggregator_descriptions() -> dict[str, str]:
    _load_builtins()
    return {name: t.description for name, t in sorted(_REGISTRY.items())}
