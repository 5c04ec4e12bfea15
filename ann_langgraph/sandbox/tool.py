"""The ``python`` tool agents call, and the report of a run it returns to the model."""

from __future__ import annotations

import os
from pathlib import Path

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

from .base import MIB, RunResult
from .isolation import run_python

__all__ = ["FILES_CONFIG_KEY", "files_from_config", "format_run_report", "python_tool"]


def format_run_report(result: RunResult, timeout_s: float | None = None) -> str:
    """Short text for a model: stdout, then stderr, then how it ended."""
    parts: list[str] = []
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if not parts:
        parts.append("(no output)")
    if result.timed_out:
        limit = timeout_s if timeout_s is not None else result.duration_s
        parts.append(f"timed out after {limit:g}s")
    elif result.killed_reason == "output":
        parts.append("killed: too much output")
    elif result.killed_reason and result.killed_reason != "memory":
        parts.append(f"exit code {result.returncode} ({result.killed_reason})")
    else:
        parts.append(f"exit code {result.returncode}")
    return "\n".join(parts)


_TOOL_TIMEOUT_S = 10.0

#: ``config["configurable"]`` key for the files a run hands to the ``python`` tool:
#: ``{name inside the sandbox: host path}``. ``ann_langgraph.evaluate`` sets it from an
#: example's ``files``, so a DABench question's CSV is readable as ``open("name.csv")``.
FILES_CONFIG_KEY = "ann_files"
_MAX_HANDED_FILES_BYTES = 256 * MIB


def files_from_config(config: RunnableConfig | None) -> dict[str, str | bytes]:
    """The files named under ``configurable[FILES_CONFIG_KEY]``, read from the host.

    Raises ``ValueError`` for a malformed mapping and ``OSError`` for an unreadable file;
    names are checked again by :func:`run_python` (relative, inside the working directory).
    """
    configurable = (config or {}).get("configurable") or {}
    spec = configurable.get(FILES_CONFIG_KEY)
    if not spec:
        return {}
    if not isinstance(spec, dict):
        raise ValueError(f"configurable[{FILES_CONFIG_KEY!r}] must map file names to host paths")
    files: dict[str, str | bytes] = {}
    total = 0
    for name, host_path in spec.items():
        if not isinstance(name, str) or not isinstance(host_path, str | os.PathLike):
            raise ValueError(f"bad file entry {name!r}: {host_path!r} (want name -> host path)")
        data = Path(host_path).read_bytes()
        total += len(data)
        if total > _MAX_HANDED_FILES_BYTES:
            raise ValueError(f"files handed to the sandbox exceed {_MAX_HANDED_FILES_BYTES} bytes")
        files[name] = data
    return files


@tool("python")
def python_tool(code: str, config: RunnableConfig) -> str:
    """Run a Python 3 script in an isolated sandbox and return what it prints.

    Use print() to show results. Standard library only, no network, no files kept, 10 s limit.
    Files that come with the task (e.g. a CSV) are in the working directory.
    Returns stdout, then stderr, then the exit code.
    """
    try:
        files = files_from_config(config)
        result = run_python(code, timeout_s=_TOOL_TIMEOUT_S, files=files or None)
    except Exception as exc:  # a tool must never raise into the agent loop
        return f"error: could not run the code: {type(exc).__name__}: {exc}"
    return format_run_report(result, _TOOL_TIMEOUT_S)
