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

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

from .engine import EngineChoice, EngineUnavailable, engine_choice, resolve_llama_server
from .errors import LocalModelError, ModelLoadError
from .launch import (
    INSTALL_RUNTIME,
    NO_EXTRA_BUFFERS,
    SERVER_ENV_OVERRIDES,
    WATCHDOG,
    EngineFallbackWarning,
    PortTaken,
    check_server_runtime,
    cpu_has_amx,
    first_line,
    free_port,
    model_load_error,
    probe_models,
    warn_fallback,
)
from .prebuilt import PREBUILT_DIST, prebuilt_available, prebuilt_command
from .slots import DEFAULT_N_CTX, RequestGate, default_slots, engine_slots, env_threads
from .weights import cache_dir, find_gguf

__all__ = ["ALIAS", "DEFAULT_N_CTX", "EngineFallbackWarning", "LocalServer"]

Engine = Literal["llama-server", "prebuilt", "python"]
# the engines that run llama.cpp's own server (slots, JSON schema, the same flags)
LLAMA_CPP_SERVERS = ("llama-server", "prebuilt")

_log = logging.getLogger(__name__)

# Host-memory prompt cache of the engine (MiB): idle slots' prompts are kept there so a request
# can resume any earlier prefix, not only its own slot's.
_CACHE_RAM_MIB = 2048
ALIAS = "local"  # the model name both servers answer to

# Every started server until it is stopped (``registry.shutdown_local_server`` stops them all).
LIVE_SERVERS: set[LocalServer] = set()
LIVE_LOCK = threading.Lock()


class LocalServer:
    """The embedded model's server on 127.0.0.1, a child process that cleans up after itself.

    ``engine``: ``"llama-server"`` (llama.cpp's server compiled here, with ``slots`` parallel
    slots), ``"prebuilt"`` (the same server from the ``xllamacpp`` wheel, no compile),
    ``"python"`` (llama-cpp-python's, one request at a time), or None: ``ANN_LOCAL_ENGINE``,
    whose default ``auto`` takes the compiled llama-server if it is built, else the prebuilt one
    if installed, else builds llama-server once, and falls back with a warning.

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
        self.n_threads = n_threads or env_threads() or os.cpu_count() or 1
        self.host = host
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._requested_engine = engine
        self.engine: Engine | None = engine  # decided at start() when None
        self.binary: Path | None = None
        self._may_fall_back = False
        self._chosen = False
        self.slots = 1 if engine == "python" else (slots or default_slots(n_ctx))
        self.gate = RequestGate(self.slots)
        self.engine_slots = engine_slots(self.slots, n_ctx)  # slots llama-server keeps
        self.start_seconds: float | None = None
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._workdir: Path | None = None
        self._owner_pid = os.getpid()
        # Set once the process answers: a thread that finds the process spawned but still
        # loading must wait for ``start`` (which holds the lock), not send requests that the
        # engine answers with 503 "Loading model" (two HumanEval rows were lost that way).
        self._ready = False

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
        return ALIAS

    def is_running(self) -> bool:
        """True once the server has started, answered and its process is alive."""
        proc = self._proc
        if proc is None or not self._ready:
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
            if self.engine in LLAMA_CPP_SERVERS and fallback:
                try:
                    self._start_process(model_path, began)
                except ModelLoadError:
                    raise
                except LocalModelError as exc:
                    reason = str(exc).split(". Log ")[0].strip()
                    reason = f"{reason} (log {self._keep_failed_log()})"
                    check_server_runtime(reason)
                    warn_fallback(reason)
                    self._use_python()
                else:
                    self._started(began)
                    return self
            if self.engine == "python":
                check_server_runtime()
            self._start_process(model_path, began)
            self._started(began)
            return self

    def _choose_engine(self) -> bool:
        """Set ``engine`` (and ``binary``); True when a failing llama-server may fall back."""
        if self.engine == "python":
            return False
        if self._chosen:
            return self._may_fall_back  # decided at an earlier start
        choice: EngineChoice
        if self._requested_engine == "llama-server" or self._requested_engine == "prebuilt":
            choice = self._requested_engine
        else:
            choice, _ = engine_choice()
        self._may_fall_back = choice == "auto"
        if choice == "python":
            self._use_python()
            return False
        if choice == "prebuilt" or (choice == "auto" and self._prebuilt_first()):
            if not prebuilt_available():
                raise LocalModelError(
                    f"the prebuilt engine needs the {PREBUILT_DIST} wheel (not installed in "
                    f'{sys.executable}): pip install "ann-langgraph[local]"'
                )
            self.engine = "prebuilt"
            self._chosen = True
            return self._may_fall_back
        try:
            self.binary = resolve_llama_server(build=True)
        except EngineUnavailable as exc:
            if choice != "auto":
                raise
            check_server_runtime(first_line(exc))  # no fallback installed: say both reasons
            warn_fallback(first_line(exc))
            self._use_python()
            return False
        self.engine = "llama-server"
        self._chosen = True
        return self._may_fall_back

    @staticmethod
    def _prebuilt_first() -> bool:
        """``auto``: the prebuilt server when no compiled one is at hand (the compile costs
        minutes; ``ann engine --build`` makes one, which ``auto`` then prefers)."""
        if not prebuilt_available():
            return False
        try:
            resolve_llama_server(build=False)
        except EngineUnavailable:
            return True
        return False

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
        self._chosen = True
        self.engine = "python"
        self.binary = None
        self.slots = self.engine_slots = 1
        self.gate = RequestGate(1)

    def _started(self, began: float) -> None:
        self._ready = True
        self.start_seconds = time.monotonic() - began
        with LIVE_LOCK:
            LIVE_SERVERS.add(self)

    def _start_process(self, model_path: Path, began: float) -> None:
        """Spawn and wait for readiness, retrying a taken port (``start`` holds the lock)."""
        for attempt in range(3):
            try:
                self._spawn(model_path)
                self._wait_ready(began + self.start_timeout)
            except PortTaken:
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
            with LIVE_LOCK:
                LIVE_SERVERS.discard(self)
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
        self._port = free_port(self.host)
        env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_OVERRIDES}
        # Idle OpenMP threads sleep instead of spinning: two processes on two cores share them
        # (measured: a second server's request took 40 s instead of 1 s beside a busy one).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if self.engine in LLAMA_CPP_SERVERS:
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
                    [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(self._workdir)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    process_group=self._proc.pid,
                )
            except (OSError, subprocess.SubprocessError):  # server gone? _wait_ready says why
                self._watchdog = None

    def _llama_server_command(self, model_path: Path) -> list[str]:
        assert self._port is not None
        if self.engine == "prebuilt":
            program = prebuilt_command()
        else:
            assert self.binary is not None
            program = [str(self.binary)]
        threads = str(self.n_threads)
        return [
            *program,
            "--model", str(model_path),
            "--host", self.host,
            "--port", str(self._port),
            "--alias", ALIAS,
            # every slot gets the full n_ctx (the KV cache is split evenly among slots); spare
            # idle slots keep earlier prompts for prefix reuse (the gate serves ``slots``)
            "--ctx-size", str(self.n_ctx * self.engine_slots),
            "--parallel", str(self.engine_slots),
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
                    "model_alias": ALIAS,
                    "n_ctx": self.n_ctx,
                    "n_threads": self.n_threads,
                    "n_threads_batch": self.n_threads,
                    "verbose": False,
                }
            ],
        }
        config_path = self._workdir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        if cpu_has_amx():
            return [sys.executable, "-c", NO_EXTRA_BUFFERS, "--config_file", str(config_path)]
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
                    raise PortTaken
                load_error = model_load_error(tail)
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
                    hint = f"; {INSTALL_RUNTIME}"
                raise LocalModelError(
                    f"the local model server exited with code {code} while starting{hint}. "
                    f"Log {self.log_path}:\n{tail}"
                )
            models = probe_models(self.host, self._port, timeout=2.0)
            if models is not None:
                if ALIAS in models:
                    return
                raise PortTaken  # someone else answered on our port
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
        self._ready = False
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
