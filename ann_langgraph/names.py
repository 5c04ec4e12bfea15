"""The names a spec may use for aggregators and tools: plain strings, no runtime.

``spec.py`` validates names against this registry, so loading a spec imports neither LangGraph
nor the tools nor the models (the old circle spec -> aggregators -> models -> spec is gone).
The runtime registries declare their names here when something is registered
(``register_aggregator``, ``register_tool``); the built-ins are listed below, and a test keeps
the two in step.
"""

from __future__ import annotations

import threading

__all__ = [
    "BUILTIN_AGGREGATORS",
    "BUILTIN_TOOLS",
    "aggregator_names",
    "declare_aggregator",
    "declare_tool",
    "tool_names",
]

BUILTIN_AGGREGATORS = (
    "sequential_cot",
    "parallel_vote",
    "tool_pipeline",
    "debate",
    "self_refine",
    "dynamic",
    "test_revise",
    "execute_code",
)
BUILTIN_TOOLS = ("calculator", "python")

_LOCK = threading.Lock()
_AGGREGATORS: set[str] = set(BUILTIN_AGGREGATORS)
_TOOLS: set[str] = set(BUILTIN_TOOLS)


def declare_aggregator(name: str) -> None:
    """Make ``name`` valid in specs (called by ``register_aggregator``)."""
    with _LOCK:
        _AGGREGATORS.add(name)


def declare_tool(name: str) -> None:
    """Make ``name`` valid in specs (called by ``register_tool``)."""
    with _LOCK:
        _TOOLS.add(name)


def aggregator_names() -> set[str]:
    with _LOCK:
        return set(_AGGREGATORS)


def tool_names() -> set[str]:
    with _LOCK:
        return set(_TOOLS)
