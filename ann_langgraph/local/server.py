"""The embedded model's server process on 127.0.0.1: llama.cpp's ``llama-server`` (the engine,
see ``engine``) with parallel slots, or llama-cpp-python's ``python -m llama_cpp.server`` as the
fallback that serves one request at a time.

Why a child process and not in-process ``llama_cpp.Llama``: the server is the same
OpenAI-compatible path users take for vLLM/Ollama (``langchain_openai.ChatOpenAI``), it keeps
llama.cpp's threads and memory out of the caller, and it can be killed cleanly.

Not done on purpose: sharing one server between processes through a recorded URL file. The
owner stops the server at exit, which would pull it from under every other process, and
neither server has reference counting or idle shutdown to build a safe hand-over on. Each
process starts its own server (a few seconds); the engine's threads sleep instead of spinning
while idle (``--poll 0``, ``OMP_WAIT_POLICY=PASSIVE``), so two processes share the cores.
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
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

from .engine import (
    EngineUnavailable,
    cpu_flags_line,
    engine_choice,
    find_llama_server,
    resolve_llama_server,
)
from .errors import LocalModelError, ModelLoadError
from .weights import cache_dir, find_gguf

__all__ = [
    "DEFAULT_N_CTX",
    "ENV_SLOTS",
    "ENV_THREADS",
    "EngineFallbackWarning",
    "LocalServer",
    "default_slots",
    "get_local_server",
    "planned_slots",
    "shutdown_local_server",
]

Engine = Literal["llama-server", "python"]

_log = logging.getLogger(__name__)

# llama.cpp's worker threads spin-wait on each other: on a busy machine, one thread per core is
# much slower than fewer threads (measured on 2 cores under load: 1-20 tokens/s with 2 threads,
# a steady 30-50 with 1). The default stays one per core; this overrides it.
ENV_THREADS = "ANN_LOCAL_THREADS"
# Parallel slots of the engine (requests it decodes together); default from cores and memory.
ENV_SLOTS = "ANN_LOCAL_SLOTS"
_MAX_SLOTS = 8
# Host-memory prompt cache of the engine (MiB): idle slots' prompts are kept there so a request
# can resume any earlier prefix, not only its own slot's.
_CACHE_RAM_MIB = 2048
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
    """At most ``slots`` requests in flight per server, for threads and event loops alike.

    The server queues requests itself, but a client-side queue keeps the request timeout about
    generation rather than waiting, and keeps a multi-step tool call on a warm prompt cache.
    """

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._lock = threading.BoundedSemaphore(slots)
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


class EngineFallbackWarning(RuntimeWarning):
    """llama-server could not be used; llama-cpp-python's slower server runs instead."""


_FALLBACK_LOSSES = (
    "one request at a time instead of parallel slots, no prompt reuse across requests, and "
    "tool calls and JSON schemas emulated by ann instead of done by the engine"
)
_WARNED_FALLBACK = threading.Event()


def _warn_fallback(reason: str) -> None:
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


def default_slots(n_ctx: int = DEFAULT_N_CTX) -> int:
    """Parallel slots: ``ANN_LOCAL_SLOTS``, else twice the cores (at most 8), fewer when memory
    is short (each slot keeps ``n_ctx`` tokens of KV cache, budgeted at 64 KiB a token)."""
    chosen = _env_positive_int(ENV_SLOTS)
    if chosen is not None:
        return chosen
    slots = min(_MAX_SLOTS, 2 * (os.cpu_count() or 1))
    available = _available_memory()
    if available is not None:
        per_slot = n_ctx * 64 * 1024
        slots = min(slots, max(1, available // (4 * per_slot)))  # KV at most a quarter of it
    return max(1, slots)


def planned_slots(n_ctx: int = DEFAULT_N_CTX) -> int:
    """The slots a server started now would serve, decided without starting or building it.

    A running server answers for itself; otherwise llama-server's slots when its binary is
    ready (or given), else 1 (the fallback serves one request at a time; a first use that
    builds the engine starts from 1 and is right from then on).
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
    if explicit is not None or find_llama_server() is not None:
        return default_slots(n_ctx)
    return 1


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class LocalServer:
    """The embedded model's server on 127.0.0.1, a child process that cleans up after itself.

    ``engine``: ``"llama-server"`` (llama.cpp's server with ``slots`` parallel slots),
    ``"python"`` (llama-cpp-python's, one request at a time), or None: ``ANN_LOCAL_ENGINE``,
    whose default ``auto`` tries llama-server (building it once) and falls back with a warning.

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
        engine: Engine | None = None,
        slots: int | None = None,
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
        self._requested_engine = engine
        self.engine: Engine | None = engine  # decided at start() when None
        self.binary: Path | None = None
        self._may_fall_back = False
        self.slots = 1 if engine == "python" else (slots or default_slots(n_ctx))
        self.gate = _RequestGate(self.slots)
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
            began = time.monotonic()
            fallback = self._choose_engine()
            if self.engine == "llama-server" and fallback:
                try:
                    self._start_process(model_path, began)
                except ModelLoadError:
                    raise
                except LocalModelError as exc:
                    reason = str(exc).split(". Log ")[0].strip()
                    _warn_fallback(f"{reason} (log {self._keep_failed_log()})")
                    self._use_python()
                else:
                    self._started(began)
                    return self
            if self.engine == "python":
                _check_server_runtime()
            self._start_process(model_path, began)
            self._started(began)
            return self

    def _choose_engine(self) -> bool:
        """Set ``engine`` (and ``binary``); True when a failing llama-server may fall back."""
        if self.engine == "python":
            return False
        if self.binary is not None:  # decided at an earlier start
            return self._may_fall_back
        if self._requested_engine == "llama-server":
            choice = "llama-server"
        else:
            choice, _ = engine_choice()
        self._may_fall_back = choice == "auto"
        if choice == "python":
            self._use_python()
            return False
        try:
            self.binary = resolve_llama_server(build=True)
        except EngineUnavailable as exc:
            if choice != "auto":
                raise
            _warn_fallback(_first_line(exc))
            self._use_python()
            return False
        self.engine = "llama-server"
        return self._may_fall_back

    def _keep_failed_log(self) -> Path | None:
        """Move the failed engine's log into the cache (the warning cites it) and drop its
        temporary folder; where the cache is not writable the folder stays and is cited."""
        log = self.log_path
        if log is None or not log.exists():
            return log
        kept = cache_dir() / "engine" / "last-start-failure.log"
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, kept)
        except OSError:
            return log
        self._cleanup()
        return kept

    def _use_python(self) -> None:
        self.engine = "python"
        self.binary = None
        self.slots = 1
        self.gate = _RequestGate(1)

    def _started(self, began: float) -> None:
        self.start_seconds = time.monotonic() - began
        with _LIVE_LOCK:
            _LIVE_SERVERS.add(self)

    def _start_process(self, model_path: Path, began: float) -> None:
        """Spawn and wait for readiness, retrying a taken port (``start`` holds the lock)."""
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
        return f"LocalServer({state}, engine={self.engine}, slots={self.slots}, pid={self.pid})"

    # -- internals

    def _spawn(self, model_path: Path) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="ann-local-"))
        self._port = _free_port(self.host)
        env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_OVERRIDES}
        # Idle OpenMP threads sleep instead of spinning: two processes on two cores share them
        # (measured: a second server's request took 40 s instead of 1 s beside a busy one).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if self.engine == "llama-server":
            command = self._llama_server_command(model_path)
            env = {k: v for k, v in env.items() if not k.startswith("LLAMA_ARG_")}
        else:
            command = self._python_command(model_path)
        env["PYTHONUNBUFFERED"] = "1"
        log_path = self._workdir / "server.log"
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                command,
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

    def _llama_server_command(self, model_path: Path) -> list[str]:
        assert self.binary is not None and self._port is not None
        threads = str(self.n_threads)
        return [
            str(self.binary),
            "--model", str(model_path),
            "--host", self.host,
            "--port", str(self._port),
            "--alias", _ALIAS,
            # every slot gets the full n_ctx (the KV cache is split evenly among slots)
            "--ctx-size", str(self.n_ctx * self.slots),
            "--parallel", str(self.slots),
            "--no-kv-unified",
            "--threads", threads,
            "--threads-batch", threads,
            "--poll", "0",
            "--jinja",
            "--no-webui",
            "--metrics",
            "--cache-ram", str(_CACHE_RAM_MIB),
        ]  # fmt: skip

    def _python_command(self, model_path: Path) -> list[str]:
        assert self._workdir is not None and self._port is not None
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
        if _cpu_has_amx():
            return [sys.executable, "-c", _NO_EXTRA_BUFFERS, "--config_file", str(config_path)]
        return [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)]

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None and self._port is not None
        delay = 0.05
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self._log_tail()
                lowered = tail.lower()
                if "address already in use" in lowered or "couldn't bind" in lowered:
                    raise _PortTaken
                load_error = _model_load_error(tail)
                if load_error is not None:
                    raise ModelLoadError(
                        f"the model file {self.model_path} could not be loaded (the server exited"
                        f" with code {code}): {load_error} "
                        "(a broken, truncated or non-GGUF file, or an architecture this llama.cpp "
                        f"does not know; any other server would fail the same way). "
                        f"Log {self.log_path}:\n{tail}"
                    )
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


_LOAD_FAILED = ("exiting due to model loading error", "error loading model", "failed to load model")
_LOAD_CAUSES = ("invalid", "unknown", "unsupported", "not a gguf", "truncated", "corrupt")


def _model_load_error(log_tail: str) -> str | None:
    """The most telling line of a model-load failure in a server's log, else ``None``."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    failed = [line for line in lines if any(m in line.lower() for m in _LOAD_FAILED)]
    if not failed:
        return None
    cause = next((ln for ln in lines if any(c in ln.lower() for c in _LOAD_CAUSES)), failed[0])
    return re.sub(r"^[\d.]+ [A-Z] ", "", cause)  # llama.cpp's "0.00.004.972 E " prefix


def _env_threads() -> int | None:
    return _env_positive_int(ENV_THREADS)


def _env_positive_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise LocalModelError(f"{name}={raw!r} must be a positive integer")
    return value


# llama-cpp-python's server crashed (SIGSEGV in ggml's AMX matmul, llama-cpp-python 0.3.36) at
# its first request on a CPU with AMX; its settings cannot turn the extra (AMX/repack) weight
# buffers off, so the server is started with them off from the model's default parameters.
_NO_EXTRA_BUFFERS = """
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


def _cpu_has_amx() -> bool:
    return any(flag.startswith("amx_") for flag in cpu_flags_line().split())


class _PortTaken(Exception):
    pass


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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
