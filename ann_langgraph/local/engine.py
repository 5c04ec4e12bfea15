"""The embedded engine: llama.cpp's own ``llama-server``, found in the cache or built once.

Why llama.cpp's server and not llama-cpp-python's: it serves several requests at once (parallel
slots with continuous batching), reuses a shared prompt prefix from its KV cache and from a
host-memory prompt cache, constrains output to a JSON schema, and parses tool calls with the
model's own chat template (``--jinja``). The ``xllamacpp`` wheel carries it prebuilt for AVX2
(``prebuilt``: what ``auto`` runs before a build). For this CPU's whole ISA it is compiled once
from the llama.cpp sources that ship inside the llama-cpp-python sdist (the installed version's
when the fallback runtime is installed, so both serve the same llama.cpp; else
``ENGINE_SOURCE_VERSION``: the sdist is only downloaded, never built as a wheel) and kept under
the user's cache directory, keyed by that version and this CPU (the build is
``-march=native``). ``pip``'s wheel cache does not cover a cmake build; this cache does, so a
machine pays for the build once (about 6 minutes on 2 cores).

Engine choice, ``ANN_LOCAL_ENGINE``: ``auto`` (default: llama-server if it is built here, else
the prebuilt server of the ``xllamacpp`` wheel when installed (``prebuilt``: no compile, AVX2),
else llama-server built on first use; if none can be built or started, llama-cpp-python's server
with one warning naming what is lost), ``llama-server`` (no fallback: fail loudly, build if
need be), ``prebuilt``, ``python`` (llama-cpp-python's server), or a path to a ``llama-server``
binary. A failed build is remembered (its log kept) so later processes
fall back at once instead of compiling again; ``ann engine --build`` retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TextIO

from .errors import LocalModelError
from .prebuilt import PREBUILT_DIST, prebuilt_version
from .weights import cache_dir, exclusive_lock

__all__ = [
    "ENGINE_SOURCE_VERSION",
    "ENV_ENGINE",
    "ENV_SOURCE",
    "EngineChoice",
    "EngineUnavailable",
    "build_llama_server",
    "engine_choice",
    "engine_status",
    "find_llama_server",
    "llama_cpp_version",
    "resolve_llama_server",
    "source_version",
]

ENV_ENGINE = "ANN_LOCAL_ENGINE"
ENV_SOURCE = "ANN_LLAMA_CPP_SOURCE"
_DIST = "llama-cpp-python"
# The llama-cpp-python sdist whose llama.cpp the engine builds when the fallback runtime is not
# installed (the `local` extra no longer carries it: one compile instead of two).
ENGINE_SOURCE_VERSION = "0.3.36"
_BINARY = "llama-server"
# Only the server target; no network during the build (no curl, no prebuilt web UI download),
# a static binary so the cached file needs nothing from the build tree.
_CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DGGML_NATIVE=ON",
    "-DGGML_CCACHE=OFF",
)
# -march=native enables AMX where the CPU has it, and ggml's AMX matmul crashed llama-server at
# its first decode on such a machine (a VM; SIGSEGV in ggml_backend_amx_mul_mat). Explicit -mno-*
# flags win over -march=native in GCC and Clang, so the rest of the CPU's ISA is still used.
_X86_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"

EngineChoice = Literal["auto", "llama-server", "prebuilt", "python"]
Progress = Callable[[str], None]


class EngineUnavailable(LocalModelError):
    """llama-server cannot be found or built here; the message says why and where the log is."""


def engine_choice() -> tuple[EngineChoice, Path | None]:
    """(choice, explicit binary) from ``ANN_LOCAL_ENGINE``."""
    raw = os.environ.get(ENV_ENGINE, "").strip()
    if raw in ("", "auto"):
        return "auto", None
    if raw in ("llama-server", "prebuilt", "python"):
        return raw, None  # type: ignore[return-value]
    path = Path(raw).expanduser()
    if path.is_file() and os.access(path, os.X_OK):
        return "llama-server", path.resolve()
    raise LocalModelError(
        f"{ENV_ENGINE}={raw!r}: use 'auto', 'llama-server', 'prebuilt', 'python', or the path "
        "of an executable llama-server binary"
    )


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python version (the fallback server's runtime), or None."""
    try:
        return importlib.metadata.version(_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_version() -> str:
    """The llama-cpp-python sdist version whose llama.cpp the engine is built from: the
    installed one (so engine and fallback match), else ``ENGINE_SOURCE_VERSION``."""
    return llama_cpp_version() or ENGINE_SOURCE_VERSION


def cpu_flags_line() -> str:
    """This CPU's feature-flags line from /proc/cpuinfo ("" where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    return ""


def _cpu_key() -> str:
    """A short hash of this CPU's feature flags: a -march=native binary is not portable."""
    flags = cpu_flags_line()
    return hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:10]


def _engine_dir(version: str) -> Path:
    return cache_dir() / "engine" / f"llama-server-{version}-{platform.machine()}-{_cpu_key()}"


def find_llama_server() -> Path | None:
    """The cached build for :func:`source_version`, or None (nothing is built)."""
    binary = _engine_dir(source_version()) / "bin" / _BINARY
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def _failure_path(version: str) -> Path:
    return _engine_dir(version) / "build-failed.json"


def last_failure() -> dict[str, str] | None:
    """The remembered failed build for this version (reason and log), if any."""
    try:
        data = json.loads(_failure_path(source_version()).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resolve_llama_server(*, build: bool = True, progress: Progress | None = None) -> Path:
    """The llama-server binary to run, building it when allowed; raises ``EngineUnavailable``.

    With ``build`` false (or after a remembered failure), nothing is compiled.
    """
    _, explicit = engine_choice()
    if explicit is not None:
        return explicit
    found = find_llama_server()
    if found is not None:
        return found
    failure = last_failure()
    if failure is not None:
        raise EngineUnavailable(
            f"building llama-server failed earlier ({failure.get('reason', '?')}; log "
            f"{failure.get('log', '?')}); retry with `ann engine --build`"
        )
    if not build:
        raise EngineUnavailable("llama-server is not built yet (`ann engine --build` builds it)")
    return build_llama_server(progress=progress)


# --------------------------------------------------------------------------- building


def _cmake() -> str | None:
    """cmake beside this interpreter (the ``cmake`` wheel) first, then on PATH."""
    beside = Path(sys.executable).parent / "cmake"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("cmake")


def _stderr_progress() -> Progress:
    tty = sys.stderr.isatty()

    def show(line: str) -> None:
        sys.stderr.write(("\r\033[K" + line) if tty else line + "\n")
        sys.stderr.flush()

    return show


def build_llama_server(*, progress: Progress | None = None) -> Path:
    """Compile llama-server into the cache (once per llama.cpp source version and CPU).

    Serialized across processes by a lock; the binary is built in a temporary folder and
    renamed into place, so a half-built engine is never found. A failure is remembered with
    its log (see the module docstring) and raised as ``EngineUnavailable``.
    """
    show = progress or _stderr_progress()
    version = source_version()
    target_dir = _engine_dir(version)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineUnavailable(f"cannot create the engine cache {target_dir}: {exc}") from exc
    binary = target_dir / "bin" / _BINARY
    with exclusive_lock(target_dir / ".lock"):
        if binary.is_file():  # another process built it while we waited
            return binary
        _failure_path(version).unlink(missing_ok=True)
        log_path = target_dir / "build.log"
        began = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="ann-engine-", dir=target_dir))
        try:
            with log_path.open("w") as log:
                source = _source_tree(version, work, log, show)
                built = _compile(source, work / "build", log, show)
                staged = work / _BINARY
                shutil.copy2(built, staged)
                (target_dir / "bin").mkdir(exist_ok=True)
                os.replace(staged, binary)
        except EngineUnavailable as exc:
            _remember_failure(version, str(exc), log_path)
            raise
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            _remember_failure(version, reason, log_path)
            raise EngineUnavailable(
                f"building llama-server failed ({reason}); log {log_path}"
            ) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        show(
            f"ann: built llama-server (llama.cpp from llama-cpp-python {version}) in "
            f"{time.monotonic() - began:.0f} s: {binary}"
        )
        return binary


def _remember_failure(version: str, reason: str, log_path: Path) -> None:
    with contextlib.suppress(OSError):
        _failure_path(version).write_text(
            json.dumps({"reason": reason, "log": str(log_path), "when": time.ctime()})
        )


def _source_tree(version: str, work: Path, log: TextIO, show: Progress) -> Path:
    """The llama.cpp source folder: ``ANN_LLAMA_CPP_SOURCE`` (a folder or an sdist), else the
    llama-cpp-python sdist of :func:`source_version`, fetched (not built) with pip."""
    given = os.environ.get(ENV_SOURCE, "").strip()
    if given:
        path = Path(given).expanduser()
        if path.is_dir():
            return _llama_cpp_root(path)
        if path.is_file():
            return _llama_cpp_root(_unpack(path, work / "src"))
        raise EngineUnavailable(f"{ENV_SOURCE}={given!r} is neither a folder nor an sdist file")
    show(f"ann: fetching the llama.cpp sources (llama-cpp-python {version} sdist) with pip")
    download = work / "sdist"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{_DIST}=={version}",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--quiet",
        "-d",
        str(download),
    ]
    _run(command, log, what="downloading the llama-cpp-python sdist")
    archives = sorted(download.glob("*.tar.gz"))
    if not archives:
        raise EngineUnavailable(f"pip downloaded no sdist of {_DIST}=={version}")
    return _llama_cpp_root(_unpack(archives[0], work / "src"))


def _unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
            else:  # Python < 3.11.4: no extraction filters; the archive comes from pip
                tar.extractall(into)
    except (tarfile.TarError, OSError) as exc:
        raise EngineUnavailable(f"cannot unpack {archive}: {exc}") from exc
    return into


def _llama_cpp_root(path: Path) -> Path:
    """The folder holding llama.cpp's top CMakeLists (the tree itself, or vendor/llama.cpp)."""
    candidates = [path, path / "vendor" / "llama.cpp"]
    candidates += [p / "vendor" / "llama.cpp" for p in sorted(path.iterdir()) if p.is_dir()]
    for candidate in candidates:
        if (candidate / "tools" / "server").is_dir() and (candidate / "CMakeLists.txt").is_file():
            return candidate
    raise EngineUnavailable(f"no llama.cpp source tree (with tools/server) under {path}")


_PERCENT = re.compile(r"^\[\s*(\d+)%\]")


def _compile(source: Path, build: Path, log: TextIO, show: Progress) -> Path:
    cmake = _cmake()
    if cmake is None:
        raise EngineUnavailable(
            "cmake is not installed (`pip install cmake` or your system's package)"
        )
    jobs = str(os.cpu_count() or 1)
    flags = list(_CMAKE_FLAGS)
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags += [f"-DCMAKE_C_FLAGS={_X86_FLAGS}", f"-DCMAKE_CXX_FLAGS={_X86_FLAGS}"]
    _run([cmake, "-S", str(source), "-B", str(build), *flags], log, what="cmake configure")
    show(f"ann: compiling llama-server once (about 6 minutes on 2 cores; {jobs} jobs)")
    began = time.monotonic()
    shown = -1

    def on_line(line: str) -> None:
        nonlocal shown
        match = _PERCENT.match(line)
        if match is None:
            return
        pct = int(match.group(1))
        step = 1 if sys.stderr.isatty() else 20
        if pct // step != shown // step:
            shown = pct
            show(f"ann: compiling llama-server: {pct}% ({time.monotonic() - began:.0f} s)")

    _run(
        [cmake, "--build", str(build), "--target", _BINARY, "-j", jobs],
        log,
        what="compiling llama-server",
        on_line=on_line,
    )
    binary = build / "bin" / _BINARY
    if not binary.is_file():
        raise EngineUnavailable(f"the build finished but {binary} is missing")
    return binary


def _run(
    command: list[str],
    log: TextIO,
    *,
    what: str,
    on_line: Callable[[str], None] | None = None,
) -> None:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise EngineUnavailable(f"{what}: cannot run {command[0]}: {exc}") from exc
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        log.write(line)
        tail = [*tail[-11:], line.rstrip()]
        if on_line is not None:
            on_line(line)
    code = proc.wait()
    log.flush()
    if code != 0:
        raise EngineUnavailable(
            f"{what} failed (exit code {code}); log {log.name}; last lines:\n" + "\n".join(tail)
        )


# --------------------------------------------------------------------------- status


def engine_status() -> dict[str, object]:
    """What ``ann engine`` shows: the choice, the binary, the build state."""
    try:
        choice, explicit = engine_choice()
    except LocalModelError as exc:
        return {"engine": "invalid", "status": str(exc)}
    version = source_version()
    row: dict[str, object] = {
        "engine": choice,
        "llama_cpp_source": version,
        "llama_cpp_python": llama_cpp_version(),
        "binary": None,
        "status": "",
    }
    if choice == "python":
        row["status"] = f"llama-cpp-python's server (one request at a time), set by {ENV_ENGINE}"
        return row
    prebuilt = prebuilt_version()
    row["prebuilt"] = f"{PREBUILT_DIST} {prebuilt}" if prebuilt else None
    if choice == "prebuilt":
        row["status"] = (
            f"the prebuilt server ({PREBUILT_DIST} {prebuilt}), set by {ENV_ENGINE}"
            if prebuilt
            else f"{ENV_ENGINE}=prebuilt but {PREBUILT_DIST} is not installed"
        )
        return row
    if explicit is not None:
        row.update(binary=str(explicit), status="ready (from ANN_LOCAL_ENGINE)")
        return row
    found = find_llama_server()
    if found is not None:
        row.update(binary=str(found), status="ready")
    elif (failure := last_failure()) is not None:
        row["status"] = f"build failed: {failure.get('reason')} (log {failure.get('log')})"
    elif prebuilt:
        row["status"] = (
            f"not built: the prebuilt server ({PREBUILT_DIST} {prebuilt}, AVX2, no compile) "
            "serves until `ann engine --build` compiles one for this CPU"
        )
    else:
        row["status"] = "not built (built on first use, or now with `ann engine --build`)"
    row["cache"] = str(_engine_dir(version))
    return row
