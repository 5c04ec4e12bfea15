"""The process-wide embedded servers: one per model file, started on demand, stopped at exit;
the slots a server started now would serve; and the OpenAI clients that talk to them."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from .engine import engine_choice, find_llama_server
from .errors import LocalModelError
from .prebuilt import prebuilt_available
from .server import ALIAS, LIVE_LOCK, LIVE_SERVERS, LocalServer
from .slots import DEFAULT_N_CTX, default_slots
from .weights import find_gguf

__all__ = [
    "client_for",
    "get_local_server",
    "live_engines",
    "planned_slots",
    "shutdown_local_server",
]

_SERVERS: dict[Path, LocalServer] = {}
_SERVERS_LOCK = threading.Lock()


def get_local_server(
    model_path: str | os.PathLike[str] | None = None, *, n_ctx: int | None = None
) -> LocalServer:
    """The process-wide server for ``model_path`` (default: ``find_gguf()``), started on demand.

    Thread-safe; a server whose process died is restarted. ``n_ctx`` applies when the server
    is first created (default: the catalogue entry's, else ``DEFAULT_N_CTX``).
    """
    if _EXITING.is_set():
        raise LocalModelError("the interpreter is exiting: not starting the local model server")
    path = Path(model_path).resolve() if model_path is not None else find_gguf()
    with _SERVERS_LOCK:
        server = _SERVERS.get(path)
        if server is None:
            server = _SERVERS[path] = LocalServer(path, n_ctx=n_ctx or _n_ctx_for(path))
    if not server.is_running():
        server.start()  # LocalServer serializes concurrent starts itself
    return server


def _n_ctx_for(path: Path) -> int:
    """The catalogue's context size for a served file, else the generic default."""
    from .catalogue import CATALOGUE

    for entry in CATALOGUE.values():
        if entry.file_name == path.name:
            return entry.n_ctx
    return DEFAULT_N_CTX


def live_engines() -> list[str]:
    """The engines of the servers running now (``llama-server``, ``prebuilt``, ``python``), so a
    measurement can say which one answered: their kernels differ, and so can their answers."""
    with LIVE_LOCK:
        return sorted({s.engine for s in LIVE_SERVERS if s.engine and s.is_running()})


def shutdown_local_server() -> None:
    """Stop every server this process started (the singletons and any live ``LocalServer``)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    with LIVE_LOCK:
        servers += [s for s in LIVE_SERVERS if s not in servers]
    for server in servers:
        server.stop()
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:  # drop kept-alive sockets to the stopped server
        with contextlib.suppress(Exception):
            client.http_client.close()


_EXITING = threading.Event()


def _shutdown_at_exit() -> None:
    _EXITING.set()  # a request failing on the stopped server must not start a new one
    shutdown_local_server()


atexit.register(_shutdown_at_exit)


def planned_slots(n_ctx: int = DEFAULT_N_CTX) -> int:
    """The slots a server started now would serve, decided without starting or building it.

    A running server answers for itself; otherwise llama-server's slots when its binary is
    ready (or given) or the prebuilt server is installed, else 1 (the fallback serves one
    request at a time; a first use that builds the engine starts from 1 and is right from then
    on).
    """
    with _SERVERS_LOCK:
        running = [s for s in _SERVERS.values() if s.is_running()]
    if running:
        return running[0].slots
    try:
        choice, explicit = engine_choice()
    except LocalModelError:
        return 1
    if choice == "python":
        return 1
    ready = explicit is not None or find_llama_server() is not None
    if ready or choice == "prebuilt" or (choice == "auto" and prebuilt_available()):
        return default_slots(n_ctx)
    return 1


# --------------------------------------------------------------------------- OpenAI client

_CLIENTS: dict[tuple[str, float, int], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def client_for(url: str, timeout: float, max_retries: int) -> Any:
    """A cached ``ChatOpenAI`` for the server (one per URL/timeout/retries)."""
    key = (url, timeout, max_retries)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            import httpx
            from langchain_openai import ChatOpenAI

            client = _CLIENTS[key] = ChatOpenAI(
                model=ALIAS,
                base_url=url + "/v1",
                api_key="not-needed",  # type: ignore[arg-type]
                timeout=timeout,
                max_retries=max_retries,
                # Loopback only: never route through an HTTP(S)_PROXY from the environment.
                # No pooled async connections: they would be tied to the first event loop.
                http_client=httpx.Client(trust_env=False, timeout=timeout),
                http_async_client=httpx.AsyncClient(
                    trust_env=False,
                    timeout=timeout,
                    limits=httpx.Limits(max_keepalive_connections=0),
                ),
            )
        return client
