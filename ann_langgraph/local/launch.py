"""What starting a server process needs, apart from the process itself: the fallback's runtime
check and warning, the watchdog, the AMX work-around, ports, readiness probes, and reading a
failed start's log."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import socket
import sys
import threading
import warnings

from .engine import cpu_flags_line
from .errors import LocalModelError

__all__ = [
    "INSTALL_RUNTIME",
    "NO_EXTRA_BUFFERS",
    "SERVER_ENV_OVERRIDES",
    "WATCHDOG",
    "EngineFallbackWarning",
    "PortTaken",
    "check_server_runtime",
    "cpu_has_amx",
    "first_line",
    "free_port",
    "model_load_error",
    "probe_models",
    "warn_fallback",
]

INSTALL_RUNTIME = (
    'install it with `pip install "ann-langgraph[local-fallback]"` (compiles llama-cpp-python '
    "from source, about 4 minutes)"
)
# Modules `python -m llama_cpp.server` imports; checked without importing them (llama_cpp
# loads its shared library on import).
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")
# `llama_cpp.server.__main__` reads these and they override the config file.
SERVER_ENV_OVERRIDES = ("HOST", "PORT", "CONFIG_FILE")


def check_server_runtime(engine_failure: str | None = None) -> None:
    """Raise unless the fallback server's runtime is importable; ``engine_failure`` (why
    llama-server cannot serve) leads the message when the fallback was the way out."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        lead = (
            f"llama-server (the embedded engine) is unavailable: {engine_failure}; and the "
            if engine_failure
            else "the "
        )
        raise LocalModelError(
            f"{lead}fallback model server needs llama-cpp-python with its server extra "
            f"(missing in {sys.executable}: {', '.join(missing)}); {INSTALL_RUNTIME}"
        )


WATCHDOG = """
import os, shutil, signal, sys, time
parent, workdir = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while os.getppid() == parent:
    time.sleep(0.5)
group = os.getpgid(0)
os.killpg(group, signal.SIGTERM)
for _ in range(50):
    time.sleep(0.1)
    try:
        with open(f"/proc/{group}/stat") as fh:
            if fh.read().rpartition(")")[2].split()[0] in "ZX":
                break
        os.kill(group, 0)
    except (OSError, IndexError):
        break
shutil.rmtree(workdir, ignore_errors=True)
os.killpg(group, signal.SIGKILL)
"""


class EngineFallbackWarning(RuntimeWarning):
    """llama-server could not be used; llama-cpp-python's slower server runs instead."""


_FALLBACK_LOSSES = (
    "one request at a time instead of parallel slots, no prompt reuse across requests, and "
    "tool calls and JSON schemas emulated by ann instead of done by the engine"
)
_WARNED_FALLBACK = threading.Event()


def warn_fallback(reason: str) -> None:
    if _WARNED_FALLBACK.is_set():
        return
    _WARNED_FALLBACK.set()
    warnings.warn(
        f"ann: llama-server (the embedded engine) is unavailable: {reason}. Using "
        f"llama-cpp-python's server instead: {_FALLBACK_LOSSES}. Build the engine with "
        "`ann engine --build`, or set ANN_LOCAL_ENGINE=python to choose the fallback quietly.",
        EngineFallbackWarning,
        stacklevel=3,
    )


_LOAD_FAILED = ("exiting due to model loading error", "error loading model", "failed to load model")
_LOAD_CAUSES = ("invalid", "unknown", "unsupported", "not a gguf", "truncated", "corrupt", "bad ")
_LEVEL = re.compile(r"^[\d.]+ ([A-Z]) ")  # llama.cpp's "0.00.004.972 E " prefix


def model_load_error(log_tail: str) -> str | None:
    """The most telling line of a model-load failure in a server's log, else ``None``. Where
    lines carry llama.cpp's level, only error lines can name the cause (the prebuilt server
    logs "build_info: b0-unknown" at level I first)."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    failed = [line for line in lines if any(m in line.lower() for m in _LOAD_FAILED)]
    if not failed:
        return None
    levels = [m.group(1) if (m := _LEVEL.match(ln)) else None for ln in lines]
    if any(levels):
        candidates = [ln for ln, level in zip(lines, levels, strict=True) if level == "E"]
    else:
        candidates = lines
    cause = next((ln for ln in candidates if any(c in ln.lower() for c in _LOAD_CAUSES)), failed[0])
    return _LEVEL.sub("", cause)


# llama-cpp-python's server crashed (SIGSEGV in ggml's AMX matmul, llama-cpp-python 0.3.36) at
# its first request on a CPU with AMX; its settings cannot turn the extra (AMX/repack) weight
# buffers off, so the server is started with them off from the model's default parameters.
NO_EXTRA_BUFFERS = """
import runpy, sys
import llama_cpp.llama_cpp as lib
_default = lib.llama_model_default_params
def _params():
    params = _default()
    params.use_extra_bufts = False
    return params
lib.llama_model_default_params = _params
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def cpu_has_amx() -> bool:
    return any(flag.startswith("amx_") for flag in cpu_flags_line().split())


class PortTaken(Exception):
    pass


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def probe_models(host: str, port: int, *, timeout: float) -> list[str] | None:
    """Model ids served at host:port, or None if nothing answers (no proxies: plain http.client)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/v1/models")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return [str(item.get("id")) for item in json.loads(body).get("data", [])]
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
