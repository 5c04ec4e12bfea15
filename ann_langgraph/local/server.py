"""The embedded model's server process: ``python -m llama_cpp.server`` on 127.0.0.1.

Why a child process and not in-process ``llama_cpp.Llama``: the server is the same
OpenAI-compatible path users take for vLLM/Ollama (``langchain_openai.ChatOpenAI``), it keeps
llama.cpp's threads and memory out of the caller, and it can be killed cleanly.

Not done on purpose: sharing one server between processes through a recorded URL file. The
owner stops the server at exit, which would pull it from under every other process, and
llama-cpp-python has no reference counting or idle shutdown to build a safe hand-over on.
Each process starts its own server (about 2 s).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from .errors import LocalModelError
from .weights import find_gguf

__all__ = [
    "DEFAULT_N_CTX",
    "ENV_THREADS",
    "LocalServer",
    "get_local_server",
    "shutdown_local_server",
]

_log = logging.getLogger(__name__)

# llama.cpp's worker threads spin-wait on each other: on a busy machine, one thread per core is
# much slower than fewer threads (measured on 2 cores under load: 1-20 tokens/s with 2 threads,
# a steady 30-50 with 1). The default stays one per core; this overrides it.
ENV_THREADS = "ANN_LOCAL_THREADS"
# Context for a GGUF that is not in the catalogue (catalogue entries carry their own).
DEFAULT_N_CTX = 8192
_ALIAS = "local"
_INSTALL_RUNTIME = (
    'install it with `pip install "llama-cpp-python[server]"` (compiles from source, about '
    "4 minutes) or `make install`"
)
# Modules `python -m llama_cpp.server` imports; checked without importing them (llama_cpp
# loads its shared library on import).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")
# `llama_cpp.server.__main__` reads these and they override the config file.
_SERVER_ENV_OVERRIDES = ("HOST", "PORT", "CONFIG_FILE")


def _check_server_runtime() -> None:
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelError(
            f"the embedded model server needs llama-cpp-python with its server extra "
            f"(missing in {sys.executable}: {', '.join(missing)}); {_INSTALL_RUNTIME}"
        )


# --------------------------------------------------------------------------- the server

_WATCHDOG = """
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


class _RequestGate:
    """One request at a time per server, for threads and event loops alike.

    The server queues requests itself, but a client-side queue keeps the request timeout about
    generation rather than waiting, and keeps a multi-step tool call on a warm prompt cache.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._guard = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            # A blocking call on an event-loop thread could wait on a task of that same loop
            # forever; skip the gate there (the server still queues).
            yield
            return
        with self._lock:
            yield

    @contextlib.asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with self._guard:
            loop_lock = self._loop_locks.get(loop)
            if loop_lock is None:
                loop_lock = self._loop_locks[loop] = asyncio.Lock()
        async with loop_lock:  # FIFO among this loop's tasks; one of them polls below
            delay = 0.002
            while not self._lock.acquire(blocking=False):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                self._lock.release()


_LIVE_SERVERS: set[LocalServer] = set()
_LIVE_LOCK = threading.Lock()


class LocalServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 as a child process that cleans up after itself.

    The child gets its own process group (a terminal Ctrl-C reaches only the parent, which then
    stops it at exit; ``stop()`` signals the whole group), and a small watchdog in that group
    kills it if the parent dies without running ``atexit`` (SIGKILL, ``os._exit``).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = 120.0,
        stop_grace: float = 5.0,
    ) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _env_threads() or os.cpu_count() or 1
        self.host = host
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.gate = _RequestGate()
        self.start_seconds: float | None = None
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._workdir: Path | None = None
        self._owner_pid = os.getpid()

    # -- properties

    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = find_gguf()
        return self._model_path

    @property
    def url(self) -> str:
        """Base URL without ``/v1``; raises if the server is not running."""
        if self._port is None or not self.is_running():
            raise LocalModelError("the local model server is not running (call .start())")
        return f"http://{self.host}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._workdir / "server.log" if self._workdir is not None else None

    @property
    def model_alias(self) -> str:
        return _ALIAS

    def is_running(self) -> bool:
        proc = self._proc
        if proc is None:
            return False
        if os.getpid() != self._owner_pid:  # forked child: not our child process to poll
            try:
                os.kill(proc.pid, 0)
            except OSError:
                return False
            return True
        return proc.poll() is None

    # -- lifecycle

    def start(self) -> LocalServer:
        """Start the server and wait until it answers ``/v1/models``; no-op if running."""
        with self._lock:
            if self.is_running():
                return self
            if self._proc is not None and self._proc.returncode is not None:
                _log.warning(
                    "local model server (pid %s) exited with code %s; restarting. Log tail:\n%s",
                    self._proc.pid,
                    self._proc.returncode,
                    self._log_tail(),
                )
            self._cleanup()
            model_path = self.model_path
            _check_server_runtime()
            began = time.monotonic()
            for attempt in range(3):
                try:
                    self._spawn(model_path)
                    self._wait_ready(began + self.start_timeout)
                except _PortTaken:
                    self._cleanup()
                    if attempt == 2:
                        raise LocalModelError(
                            "could not bind a free port on 127.0.0.1 for the model server"
                        ) from None
                    continue
                except BaseException:
                    self._kill_group()
                    self._proc = self._watchdog = None  # keep the workdir: the error cites its log
                    self._port = None
                    raise
                break
            self.start_seconds = time.monotonic() - began
            with _LIVE_LOCK:
                _LIVE_SERVERS.add(self)
            return self

    def stop(self) -> None:
        """Terminate the server's process group, kill it after ``stop_grace`` seconds."""
        with self._lock:
            with _LIVE_LOCK:
                _LIVE_SERVERS.discard(self)
            if self._proc is None:
                self._cleanup()  # e.g. the workdir kept for a failed start's log
                return
            if os.getpid() != self._owner_pid:
                # A forked child inherited this object: the server belongs to the parent.
                self._proc = self._watchdog = None
                self._port = None
                return
            self._kill_group()
            self._cleanup()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"url={self.url}" if self.is_running() else "stopped"
        return f"LocalServer({state}, pid={self.pid})"

    # -- internals

    def _spawn(self, model_path: Path) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="ann-local-"))
        self._port = _free_port(self.host)
        config = {
            "host": self.host,
            "port": self._port,
            "models": [
                {
                    "model": str(model_path),
                    "model_alias": _ALIAS,
                    "n_ctx": self.n_ctx,
                    "n_threads": self.n_threads,
                    "n_threads_batch": self.n_threads,
                    "verbose": False,
                }
            ],
        }
        config_path = self._workdir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_OVERRIDES}
        env["PYTHONUNBUFFERED"] = "1"
        log_path = self._workdir / "server.log"
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._workdir,
                process_group=0,  # own group (not a new session, so the watchdog can join it)
            )
            try:
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self._workdir)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    process_group=self._proc.pid,
                )
            except (OSError, subprocess.SubprocessError):  # server gone? _wait_ready says why
                self._watchdog = None

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None and self._port is not None
        delay = 0.05
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    raise _PortTaken
                hint = ""
                if "No module named" in tail:
                    hint = f"; {_INSTALL_RUNTIME}"
                raise LocalModelError(
                    f"the local model server exited with code {code} while starting{hint}. "
                    f"Log {self.log_path}:\n{tail}"
                )
            models = _probe_models(self.host, self._port, timeout=2.0)
            if models is not None:
                if _ALIAS in models:
                    return
                raise _PortTaken  # someone else answered on our port
            if time.monotonic() > deadline:
                raise LocalModelError(
                    f"the local model server did not become ready within {self.start_timeout:.0f}"
                    f" s. Log {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _kill_group(self) -> None:
        proc, watchdog = self._proc, self._watchdog
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        # Sweep the group (the watchdog ignores SIGTERM) and reap the watchdog.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if watchdog is not None:
            with contextlib.suppress(ProcessLookupError):
                watchdog.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(5)

    def _cleanup(self) -> None:
        self._proc = self._watchdog = None
        self._port = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _log_tail(self, limit: int = 3000) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        data = path.read_bytes()[-limit:]
        return data.decode("utf-8", "replace").strip() or "(empty log)"


def _env_threads() -> int | None:
    raw = os.environ.get(ENV_THREADS, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise LocalModelError(f"{ENV_THREADS}={raw!r} must be a positive integer")
    return value


class _PortTaken(Exception):
    pass


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _probe_models(host: str, port: int, *, timeout: float) -> list[str] | None:
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


def shutdown_local_server() -> None:
    """Stop every server this process started (the singletons and any live ``LocalServer``)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    with _LIVE_LOCK:
        servers += [s for s in _LIVE_SERVERS if s not in servers]
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


# --------------------------------------------------------------------------- OpenAI client

_CLIENTS: dict[tuple[str, float, int], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(url: str, timeout: float, max_retries: int) -> Any:
    """A cached ``ChatOpenAI`` for the server (one per URL/timeout/retries)."""
    key = (url, timeout, max_retries)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            import httpx
            from langchain_openai import ChatOpenAI

            client = _CLIENTS[key] = ChatOpenAI(
                model=_ALIAS,
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
