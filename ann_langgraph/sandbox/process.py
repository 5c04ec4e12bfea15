"""One sandboxed run as a process: files into a fresh directory, the init started in its own
session (and namespaces, per the plan), output drained with bounded memory, everything killed at
the deadline and the directory removed."""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .base import (
    CHUNK,
    EXIT_GRACE_S,
    HARD_OUTPUT_BYTES,
    MAIN_FILE,
    MIB,
    SAFE_PATH,
    SANDBOX_GID,
    SANDBOX_UID,
    SANDBOX_WORKDIR,
    Plan,
    RunResult,
)
from .init_script import INIT_SCRIPT

__all__ = ["execute", "paths_to_hide"]


def execute(
    plan: Plan,
    code: str,
    *,
    timeout_s: float,
    memory_mb: int,
    cpu_s: int | None,
    max_processes: int,
    max_file_mb: int,
    files: dict[str, str | bytes] | None,
    stdin: str | None,
    output_limit: int,
) -> RunResult:
    start = time.monotonic()
    output_limit = max(64, output_limit)
    host_dir = tempfile.mkdtemp(prefix="ann-sandbox-")
    try:
        files_bytes = _write_files(host_dir, code, files or {})
        # Inside its own namespace /tmp is a fresh tmpfs, so the directory can have a fixed
        # name: tracebacks and os.getcwd() then read the same on every run (reproducible tool
        # output, and so prompts that the response cache recognises on a re-run).
        workdir = SANDBOX_WORKDIR if plan.ns else host_dir
        uid = SANDBOX_UID if plan.drop_uid else None
        cpu = cpu_s if cpu_s is not None else math.ceil(timeout_s) + 1
        nproc = max_processes + _tasks_of_uid(SANDBOX_UID if plan.drop_uid else os.getuid())
        fsize = max_file_mb * MIB
        cfg = {
            "status_fd": -1,
            "host_workdir": host_dir,
            "workdir": workdir,
            "mounts": plan.ns is not None,
            "tmpfs_mb": max(64, 4 * max_file_mb) + 2 * math.ceil(files_bytes / MIB),
            "hide": paths_to_hide(plan.interpreter) if plan.ns else [],
            "uid": uid,
            "gid": SANDBOX_GID if uid is not None else None,
            "rlimits": {
                "RLIMIT_AS": [memory_mb * MIB] * 2,
                "RLIMIT_CPU": [cpu, cpu + 1],
                "RLIMIT_FSIZE": [fsize, fsize],
                "RLIMIT_NPROC": [nproc, nproc],
                "RLIMIT_CORE": [0, 0],
            },
            "argv": [plan.interpreter, "-E", "-s", "-u", MAIN_FILE],
            "env": {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": workdir},
        }
        status_r, status_w = os.pipe()
        cfg["status_fd"] = status_w
        cmd = [*plan.prefix(), sys.executable, "-I", "-S", "-c", INIT_SCRIPT, json.dumps(cfg)]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=host_dir,
                env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
                start_new_session=True,
                pass_fds=(status_w,),
            )
        except OSError:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        deadline = start + timeout_s
        io = _pump(proc, status_r, stdin, deadline, output_limit)
    finally:
        _remove_tree(host_dir)
    result = _result(plan, io, output_limit, timeout_s, time.monotonic() - start)
    if not plan.ns:  # no namespace: hide the host directory's random name
        result.stdout = result.stdout.replace(host_dir, ".")
        result.stderr = result.stderr.replace(host_dir, ".")
    return result


def _write_files(host_dir: str, code: str, files: dict[str, str | bytes]) -> int:
    """Write ``files`` and the code; names must stay inside the directory. Returns bytes."""
    items: list[tuple[PurePosixPath, str | bytes]] = []
    for name, content in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts or name.startswith("~"):
            raise ValueError(f"file names must be relative paths inside the workdir: {name!r}")
        if rel == PurePosixPath(MAIN_FILE):
            raise ValueError(f"files may not contain '{MAIN_FILE}' (the code goes there)")
        items.append((rel, content))
    items.append((PurePosixPath(MAIN_FILE), code))
    total = 0
    for rel, content in items:
        data = content.encode() if isinstance(content, str) else bytes(content)
        target = Path(host_dir, *rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        total += len(data)
    return total


_CREDENTIAL_NAMES = (
    ".ssh", ".aws", ".azure", ".config", ".gnupg", ".docker", ".kube", ".netrc",
    ".git-credentials", ".pypirc", ".npmrc", ".env", ".cache", ".local/share/keyrings",
    ".langsmith", ".huggingface",
)  # fmt: skip


def paths_to_hide(interpreter: str) -> list[str]:
    """Home directories to cover inside the mount namespace (whole, unless the sandbox
    interpreter lives there, in which case only well-known credential files in them)."""
    keep = [os.path.realpath(interpreter), os.path.abspath(interpreter)]

    def holds_interpreter(path: str) -> bool:
        return any(k == path or k.startswith(path.rstrip("/") + "/") for k in keep)

    hide: list[str] = []
    homes = {"/root", "/home"}
    own = os.path.realpath(os.path.expanduser("~"))
    temp = os.path.realpath(tempfile.gettempdir())
    # A home such as /tmp or /work is a system location, not a private directory.
    if own.count("/") >= 2 and not (temp + "/").startswith(own.rstrip("/") + "/"):
        homes.add(own)
    for home in sorted(homes):
        if not os.path.isdir(home):
            continue
        if not holds_interpreter(home):
            hide.append(home)
            continue
        users = [home] if home != "/home" else [e.path for e in os.scandir(home) if e.is_dir()]
        for user_home in users:
            if not holds_interpreter(user_home):
                hide.append(user_home)
                continue
            hide += [os.path.join(user_home, name) for name in _CREDENTIAL_NAMES]
    return [path for path in hide if not holds_interpreter(path)]


def _tasks_of_uid(uid: int) -> int:
    """Tasks (threads count) a uid already has: RLIMIT_NPROC is checked against all of them."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                owner, threads = -1, 1
                for line in fh:
                    if line.startswith("Uid:"):
                        owner = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if owner == uid:
            count += threads
    return count


class _Capped:
    """Keeps the first and last bytes of a stream, counting what was dropped."""

    def __init__(self, limit: int) -> None:
        self.tail_len = limit // 2
        self.head_len = limit - self.tail_len
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.head) < self.limit:
            self.head += data[: self.limit - len(self.head)]
        self.tail += data
        if len(self.tail) > 2 * self.tail_len + CHUNK:
            del self.tail[: -self.tail_len]

    def text(self) -> str:
        if self.total <= self.limit:
            return self.head.decode("utf-8", "replace")
        dropped = self.total - self.head_len - self.tail_len
        head = self.head[: self.head_len].decode("utf-8", "replace")
        tail = self.tail[-self.tail_len :].decode("utf-8", "replace")
        return f"{head}\n...[truncated {dropped} bytes]...\n{tail}"


@dataclass
class _IO:
    stdout: _Capped
    stderr: _Capped
    status: list[dict[str, object]]
    killed: str | None  # "timeout" / "output" when we killed it
    host_returncode: int | None


def _pump(
    proc: subprocess.Popen[bytes],
    status_r: int,
    stdin: str | None,
    deadline: float,
    limit: int,
) -> _IO:
    """Feed stdin, drain stdout/stderr/status with bounded memory until exit or deadline."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Capped(limit), _Capped(limit)
    status_buf = bytearray()
    sinks: dict[int, _Capped | bytearray] = {
        proc.stdout.fileno(): out,
        proc.stderr.fileno(): err,
        status_r: status_buf,
    }
    pending = memoryview((stdin or "").encode())
    sel = selectors.DefaultSelector()
    for fd in sinks:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        if pending:
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
    killed: str | None = None
    exited_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                killed = "timeout"
                break
            if exited_at is None and _has_exited(proc.pid):
                exited_at = now
            reading = [key for key in sel.get_map().values() if key.events & selectors.EVENT_READ]
            if not reading or (exited_at is not None and now - exited_at > EXIT_GRACE_S):
                if exited_at is not None:
                    break
                time.sleep(min(0.01, max(0.0, deadline - now)))
                continue
            for key, _ in sel.select(timeout=min(deadline - now, 0.1)):
                fd = int(key.fd)
                if key.events & selectors.EVENT_WRITE:
                    assert proc.stdin is not None
                    try:
                        sent = os.write(fd, pending[:CHUNK])
                        pending = pending[sent:]
                    except (BrokenPipeError, BlockingIOError) as exc:
                        if isinstance(exc, BlockingIOError):
                            continue
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                sink = sinks[fd]
                if isinstance(sink, _Capped):
                    sink.add(data)
                elif len(sink) < CHUNK:  # the status pipe: a few short JSON lines
                    sink += data
            if out.total + err.total > HARD_OUTPUT_BYTES:
                killed = "output"
                break
    finally:
        _kill_group(proc)
        sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        os.close(status_r)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    status = []
    for line in status_buf.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            item = json.loads(line)
            if isinstance(item, dict):
                status.append(item)
    return _IO(out, err, status, killed, proc.returncode)


def _has_exited(pid: int) -> bool:
    """Exited but not reaped (WNOWAIT), so the process group id cannot be reused yet."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL everything left in the run's process group (the leader is not reaped yet)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _result(plan: Plan, io: _IO, limit: int, timeout_s: float, duration: float) -> RunResult:
    applied: list[str] = plan.namespaces()
    returncode: int | None = None
    signum: int | None = None
    errors: list[str] = []
    for item in io.status:
        if "applied" in item and isinstance(item["applied"], list):
            applied += [str(x) for x in item["applied"]]
        elif "child" in item and isinstance(item["child"], list):
            applied += [str(x) for x in item["child"]]
        elif "exit" in item:
            returncode = int(str(item["exit"]))
        elif "signal" in item:
            signum = int(str(item["signal"]))
            returncode = -signum
        elif "error" in item:
            errors.append(str(item["error"]))
    applied += ["clean-env", "tmpdir"]
    stderr = io.stderr.text()
    if errors:
        stderr = (stderr + "\n" if stderr else "") + "\n".join(errors)
    killed = io.killed
    if killed is not None:
        returncode = None
    elif returncode is None and io.host_returncode not in (None, 0):
        returncode = io.host_returncode  # the init itself failed
    if killed is None and returncode not in (None, 0):
        tail = io.stderr.text()[-2000:]
        if "MemoryError" in tail:
            killed = "memory"
        elif signum == signal.SIGXCPU:
            killed = "cpu"
        elif signum is not None:
            killed = f"signal {_signal_name(signum)}"
        elif errors:
            killed = "setup"
    return RunResult(
        stdout=io.stdout.text(),
        stderr=stderr,
        returncode=returncode,
        timed_out=io.killed == "timeout",
        killed_reason=killed,
        duration_s=round(duration, 4),
        isolation=list(dict.fromkeys(applied)),
    )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _remove_tree(path: str) -> None:
    """rmtree that also copes with directories the child made unreadable."""
    if not os.path.lexists(path):
        return

    def _fix(func: object, target: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.unlink(target)

    shutil.rmtree(path, onerror=_fix)
