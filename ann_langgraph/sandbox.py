"""Run untrusted Python in an isolated child process.

Shared by the ``python`` tool and by benchmarks/metrics that execute model-written code
(HumanEval, DABench). Model output is hostile input, so every run gets:

* a wall-clock timeout that SIGKILLs the whole process group (and, with a PID namespace, every
  process the code started, even ones that called ``setsid``);
* rlimits: address space (memory), CPU seconds, file size, process count, no core dumps;
* a fresh temporary working directory holding ``files``, removed afterwards;
* an environment with only ``PATH``, ``LANG`` and ``HOME`` (= the working directory);
* stdout/stderr read in bounded chunks and capped (head + tail are kept);
* when available, new network/mount/PID/IPC/UTS namespaces (no network at all, not even
  loopback), a private size-limited tmpfs over ``/tmp`` and ``/dev/shm``, every other mount
  remounted read-only inside the namespace, ``/root``, ``/home`` and the caller's home covered
  by empty read-only mounts (only credential dot-files when the sandbox interpreter lives there),
  all capabilities dropped, ``no_new_privs`` and, as root, an unprivileged uid (65534).

How a run is set up: the host starts ``[unshare ...] <this interpreter> -I -S -c _INIT cfg`` in a
new session. ``_INIT`` (stdlib only) does the mounts, copies the working directory into the
private tmpfs, then forks the child, which sets rlimits, drops privileges and ``execve``s the
sandbox interpreter on ``main.py``. The init reports what it applied and the child's exit status
on a private pipe the child cannot write to after ``exec``.

What is probed once per process (``isolation_available()``), in order: namespaces + uid drop
(root), uid drop alone (root without working ``unshare``), an unprivileged user namespace
(``unshare --user --map-root-user``: everything but a separate uid), nothing but rlimits, a clean
environment and a temporary directory. Anything short of the first emits one loud
:class:`SandboxWarning` naming what is missing.

What remains (documented limits):

* Reads are otherwise not restricted: the child can read world-readable host files outside the
  hidden homes (e.g. the project directory and datasets).
* ``RLIMIT_NPROC`` counts all tasks of a uid: concurrent runs as uid 65534 share one budget (the
  limit is set to the tasks that uid already has plus ``max_processes``).
* RLIMIT_AS limits address space, not resident memory of tmpfs files; tmpfs mounts are sized.
* Without a PID namespace, a process that calls ``setsid`` escapes the group kill.
* Without a mount namespace, the child can write wherever its uid may (e.g. ``/tmp``).
* The sandbox interpreter (as uid 65534, one it can reach, e.g. ``/usr/bin/python3``) may lack
  third-party packages; pass ``interpreter=`` to use another one it can execute.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

__all__ = [
    "FILES_CONFIG_KEY",
    "RunResult",
    "SandboxWarning",
    "files_from_config",
    "format_run_report",
    "isolation_available",
    "python_tool",
    "run_python",
]

SANDBOX_UID = 65534
SANDBOX_GID = 65534
MAIN_FILE = "main.py"
#: The working directory's path inside the sandbox's mount namespace (a fresh tmpfs each run).
SANDBOX_WORKDIR = "/tmp/sandbox"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Everything a fully isolated run applies; anything missing from a run is warned about.
FULL_ISOLATION = ("netns", "pidns", "mountns", "tmpfs", "readonly-root", "uid", "rlimits")
_HARD_OUTPUT_BYTES = 16 * 1024 * 1024  # past this much output the child is killed
_CHUNK = 65536
_MIB = 1024 * 1024
_EXIT_GRACE_S = 0.25  # how long to drain pipes held open by leftovers after the init exits


class SandboxWarning(RuntimeWarning):
    """Code is being run with weaker isolation than the design asks for."""


class RunResult(BaseModel):
    """What happened when sandboxed code ran."""

    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None  # negative: killed by that signal; None: killed by us
    timed_out: bool = False
    killed_reason: str | None = None  # "timeout", "memory", "cpu", "output", "signal SIGSEGV"...
    duration_s: float = 0.0
    isolation: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


# --------------------------------------------------------------------------------------------
# The in-sandbox init (runs with -I -S: stdlib only, no site-packages).

_INIT = r"""
import ctypes, json, os, resource, shutil, sys

cfg = json.loads(sys.argv[1])
status = cfg["status_fd"]

def say(**obj):
    os.write(status, (json.dumps(obj) + "\n").encode())

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
OPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
             "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}

def mount(src, target, fstype, flags, data):
    enc = lambda s: None if s is None else s.encode()
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)

def unescape(path):
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)

def setup_mounts(work):
    applied = []
    # Pin the host working directory: it may be hidden once /tmp is covered.
    os.chdir(cfg["host_workdir"])
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    ours = {"/tmp"}
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          "mode=1777,size=%dm,nr_inodes=65536" % cfg["tmpfs_mb"])
    if os.path.isdir("/dev/shm") and not os.path.islink("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
        ours.add("/dev/shm")
    applied.append("tmpfs")
    os.makedirs(work, mode=0o700)
    shutil.copytree(".", work, dirs_exist_ok=True)  # "." is the pinned host directory
    # Cover home directories / credential files with empty read-only mounts. Nothing below
    # may import lazily: this interpreter's own stdlib may live under a hidden home.
    hidden = []
    for path in cfg["hide"]:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "size=4k,mode=755")
            elif os.path.isfile(path) and not os.path.islink(path):
                mount("/dev/null", path, None, MS_BIND, None)
                mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            else:
                continue
        except OSError:
            say(warning="could not hide " + path)
            continue
        ours.add(path)
        hidden.append(path)
    if hidden:
        applied.append("hidden-home")
    # Every other writable mount becomes read-only (in this namespace only).
    failed = []
    with open("/proc/self/mountinfo") as fh:
        entries = [line.split() for line in fh]
    for fields in entries:
        point, opts = unescape(fields[4]), fields[5].split(",")
        if point in ours or point == "/proc" or point.startswith("/proc/") or "ro" in opts:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt in opts:
            flags |= OPT_FLAGS.get(opt, 0)
        if not flags & (MS_NOATIME | MS_RELATIME):
            flags |= MS_STRICTATIME
        try:
            mount(None, point, None, flags, None)
        except OSError:
            if point == "/":
                raise
            failed.append(point)
    applied.append("readonly-root")
    if failed:
        say(warning="could not make read-only: " + ", ".join(failed))
    return applied

work = cfg["workdir"]
try:
    applied = setup_mounts(work) if cfg["mounts"] else []
    if cfg["uid"] is not None:
        for root, dirs, files in os.walk(work):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.lchown(name, cfg["uid"], cfg["gid"])
        os.chmod(work, 0o700)
except Exception as exc:
    say(error="sandbox setup failed: %s: %s" % (type(exc).__name__, exc))
    os._exit(125)
say(applied=applied)

pid = os.fork()
if pid == 0:
    try:
        done = []
        for name, (soft, hard) in cfg["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        done.append("rlimits")
        last_cap = 40
        try:
            with open("/proc/sys/kernel/cap_last_cap") as fh:
                last_cap = int(fh.read())
        except (OSError, ValueError):
            pass
        dropped = all(libc.prctl(24, cap, 0, 0, 0) == 0 for cap in range(last_cap + 1))
        libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
            os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
            done.append("uid")
        if dropped:
            done.append("caps-dropped")
        if libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS
            done.append("no-new-privs")
        os.chdir(work)
        say(child=done)
        os.close(status)
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as exc:
        try:
            os.write(2, ("sandbox: cannot start the child: %s: %s\n"
                         % (type(exc).__name__, exc)).encode())
        finally:
            os._exit(126)
while True:
    try:
        _, st = os.waitpid(pid, 0)
        break
    except ChildProcessError:
        st = None
        break
if st is None:
    say(error="lost the child")
elif os.WIFSIGNALED(st):
    say(signal=os.WTERMSIG(st))
else:
    say(exit=os.WEXITSTATUS(st))
os._exit(0)
"""


# --------------------------------------------------------------------------------------------
# Plans: how runs are isolated on this machine, probed once.


@dataclass(frozen=True)
class _Plan:
    ns: str | None  # "root": namespaces as real root; "user": unprivileged user namespace
    drop_uid: bool
    interpreter: str
    isolation: tuple[str, ...] = ()
    note: str = ""

    def prefix(self) -> list[str]:
        if self.ns is None:
            return []
        cmd = [shutil.which("unshare") or "unshare"]
        if self.ns == "user":
            cmd += ["--user", "--map-root-user"]
        return [
            *cmd,
            "--net",
            "--mount",
            "--pid",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
        ]

    def namespaces(self) -> list[str]:
        if self.ns is None:
            return []
        names = ["netns", "mountns", "pidns", "ipcns", "utsns"]
        return [*names, "userns"] if self.ns == "user" else names


_PLAN: _Plan | None = None
_PLAN_LOCK = threading.Lock()
_WARNED = False


def isolation_available() -> list[str]:
    """What a run on this machine applies, as measured by a probe run (cached per process)."""
    return list(_plan().isolation)


def _plan() -> _Plan:
    global _PLAN
    if _PLAN is not None:
        return _PLAN
    with _PLAN_LOCK:
        if _PLAN is None:
            _PLAN = _probe()
    return _PLAN


def _probe() -> _Plan:
    root = os.geteuid() == 0
    have_unshare = shutil.which("unshare") is not None
    reachable = _interpreters_for_uid(SANDBOX_UID) if root else []
    candidates: list[_Plan] = []
    if root and have_unshare:
        candidates += [_Plan("root", True, exe) for exe in reachable]
    # As root, a user namespace maps to uid 0 (root-owned files stay writable where mounted
    # read-write), so dropping to an unprivileged uid without namespaces is tried first.
    candidates += [_Plan(None, True, exe) for exe in reachable]
    if have_unshare:
        candidates.append(_Plan("user", False, sys.executable))
    candidates.append(_Plan(None, False, sys.executable))
    notes: list[str] = []
    for plan in candidates:
        try:
            result = _execute(
                plan,
                "print('ok')",
                timeout_s=20.0,
                memory_mb=1024,
                cpu_s=None,
                max_processes=64,
                max_file_mb=16,
                files=None,
                stdin=None,
                output_limit=4096,
            )
        except OSError as exc:
            notes.append(f"{plan.ns or 'no-ns'}/{'uid' if plan.drop_uid else 'same-uid'}: {exc}")
            continue
        if result.ok and result.stdout.strip() == "ok":
            return _Plan(
                plan.ns, plan.drop_uid, plan.interpreter, tuple(result.isolation), "; ".join(notes)
            )
        detail = (result.stderr.strip().splitlines() or [str(result.returncode)])[-1]
        notes.append(f"{plan.ns or 'no-ns'}/{'uid' if plan.drop_uid else 'same-uid'}: {detail}")
    # Nothing worked, not even a plain child: keep the weakest plan, runs will report errors.
    return _Plan(None, False, sys.executable, ("rlimits", "clean-env", "tmpdir"), "; ".join(notes))


def _interpreters_for_uid(uid: int) -> list[str]:
    """Python interpreters whose every path component another uid may traverse/execute."""
    seen: list[str] = []
    names = [
        getattr(sys, "_base_executable", None),
        sys.executable,
        shutil.which("python3", path=SAFE_PATH),
        "/usr/bin/python3",
    ]
    for name in names:
        if not name:
            continue
        real = os.path.realpath(name)
        if real not in seen and _reachable_by_other(real, uid):
            seen.append(real)
    return seen


def _reachable_by_other(path: str, uid: int) -> bool:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or not (
            info.st_mode & stat.S_IXOTH or info.st_uid == uid
        ):
            return False
        for parent in Path(path).parents:
            mode = os.stat(parent).st_mode
            if not mode & stat.S_IXOTH:
                return False
            if str(parent) in ("/tmp", "/dev/shm"):
                return False  # hidden by the private tmpfs
    except OSError:
        return False
    return True


def _warn_once(plan: _Plan) -> None:
    global _WARNED
    missing = [name for name in FULL_ISOLATION if name not in plan.isolation]
    if not missing or _WARNED:
        return
    _WARNED = True
    why = f" ({plan.note})" if plan.note else ""
    warnings.warn(
        "ann_langgraph.sandbox: untrusted code runs WITHOUT "
        + ", ".join(missing)
        + f" isolation on this machine{why}; applied: {', '.join(plan.isolation) or 'nothing'}.",
        SandboxWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------------------------
# Running.


def run_python(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    cpu_s: int | None = None,
    max_processes: int = 64,
    max_file_mb: int = 16,
    files: dict[str, str | bytes] | None = None,
    stdin: str | None = None,
    output_limit: int = 8192,
    interpreter: str | None = None,
) -> RunResult:
    """Run ``code`` as ``main.py`` in a fresh sandboxed directory and report what happened.

    ``files`` (relative path -> content) are placed next to it; ``cpu_s`` defaults to the
    timeout. Never raises for anything the code does; raises ``ValueError`` for bad arguments.
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    plan = _plan()
    _warn_once(plan)
    if interpreter is not None:
        plan = _Plan(plan.ns, plan.drop_uid, interpreter, plan.isolation, plan.note)
    return _execute(
        plan,
        code,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        cpu_s=cpu_s,
        max_processes=max_processes,
        max_file_mb=max_file_mb,
        files=files,
        stdin=stdin,
        output_limit=output_limit,
    )


def _execute(
    plan: _Plan,
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
        fsize = max_file_mb * _MIB
        cfg = {
            "status_fd": -1,
            "host_workdir": host_dir,
            "workdir": workdir,
            "mounts": plan.ns is not None,
            "tmpfs_mb": max(64, 4 * max_file_mb) + 2 * math.ceil(files_bytes / _MIB),
            "hide": _paths_to_hide(plan.interpreter) if plan.ns else [],
            "uid": uid,
            "gid": SANDBOX_GID if uid is not None else None,
            "rlimits": {
                "RLIMIT_AS": [memory_mb * _MIB] * 2,
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
        cmd = [*plan.prefix(), sys.executable, "-I", "-S", "-c", _INIT, json.dumps(cfg)]
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


def _paths_to_hide(interpreter: str) -> list[str]:
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
        if len(self.tail) > 2 * self.tail_len + _CHUNK:
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
            if not reading or (exited_at is not None and now - exited_at > _EXIT_GRACE_S):
                if exited_at is not None:
                    break
                time.sleep(min(0.01, max(0.0, deadline - now)))
                continue
            for key, _ in sel.select(timeout=min(deadline - now, 0.1)):
                fd = int(key.fd)
                if key.events & selectors.EVENT_WRITE:
                    assert proc.stdin is not None
                    try:
                        sent = os.write(fd, pending[:_CHUNK])
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
                    data = os.read(fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                sink = sinks[fd]
                if isinstance(sink, _Capped):
                    sink.add(data)
                elif len(sink) < _CHUNK:  # the status pipe: a few short JSON lines
                    sink += data
            if out.total + err.total > _HARD_OUTPUT_BYTES:
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


def _result(plan: _Plan, io: _IO, limit: int, timeout_s: float, duration: float) -> RunResult:
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
_MAX_HANDED_FILES_BYTES = 256 * _MIB


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
