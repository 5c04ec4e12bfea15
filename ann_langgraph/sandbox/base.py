"""What every part of the sandbox shares: limits, paths, the result of a run and the plan of
how runs are isolated on this machine."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from pydantic import BaseModel, Field

__all__ = [
    "CHUNK",
    "EXIT_GRACE_S",
    "FULL_ISOLATION",
    "HARD_OUTPUT_BYTES",
    "MAIN_FILE",
    "MIB",
    "SAFE_PATH",
    "SANDBOX_GID",
    "SANDBOX_UID",
    "SANDBOX_WORKDIR",
    "Plan",
    "RunResult",
    "SandboxWarning",
]

SANDBOX_UID = 65534
SANDBOX_GID = 65534
MAIN_FILE = "main.py"
#: The working directory's path inside the sandbox's mount namespace (a fresh tmpfs each run).
SANDBOX_WORKDIR = "/tmp/sandbox"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Everything a fully isolated run applies; anything missing from a run is warned about.
FULL_ISOLATION = ("netns", "pidns", "mountns", "tmpfs", "readonly-root", "uid", "rlimits")
HARD_OUTPUT_BYTES = 16 * 1024 * 1024  # past this much output the child is killed
CHUNK = 65536
MIB = 1024 * 1024
EXIT_GRACE_S = 0.25  # how long to drain pipes held open by leftovers after the init exits


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


@dataclass(frozen=True)
class Plan:
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
