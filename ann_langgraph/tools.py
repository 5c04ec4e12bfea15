"""Tool registry: specs name tools, code registers them, so a patch can never add code."""

from __future__ import annotations

import threading

from langchain_core.tools import BaseTool

from .names import declare_tool

__all__ = ["get_tool", "register_tool", "tool_names"]

_LOCK = threading.Lock()
_REGISTRY: dict[str, BaseTool] = {}
_BUILTINS_LOADED = False


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _LOCK:
        if _BUILTINS_LOADED:
            return
        from .calculator import calculator_tool
        from .sandbox import python_tool

        _REGISTRY.setdefault(calculator_tool.name, calculator_tool)
        _REGISTRY.setdefault(python_tool.name, python_tool)
        _BUILTINS_LOADED = True


def register_tool(tool: BaseTool, *, replace: bool = False) -> BaseTool:
    """Make ``tool`` available to specs under ``tool.name``."""
    if not isinstance(tool, BaseTool):
        raise TypeError("register_tool expects a langchain_core BaseTool (e.g. from @tool)")
    _load_builtins()
    with _LOCK:
        if tool.name in _REGISTRY and not replace:
            raise ValueError(f"tool '{tool.name}' is already registered (pass replace=True)")
        _REGISTRY[tool.name] = tool
    declare_tool(tool.name)  # specs may now name it
    return tool


def get_tool(name: str) -> BaseTool:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown tool '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None


def tool_names() -> set[str]:
    _load_builtins()
    return set(_REGISTRY)
