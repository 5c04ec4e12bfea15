"""How runs are isolated on this machine (probed once per process, warned about once when short
of the full design) and ``run_python``, which applies that plan."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import threading
import warnings
from pathlib import Path

from .base import FULL_ISOLATION, SAFE_PATH, SANDBOX_UID, Plan, RunResult, SandboxWarning
from .process import execute

__all__ = ["isolation_available", "run_python"]


_PLAN: Plan | None = None
_PLAN_LOCK = threading.Lock()
_WARNED = False


def isolation_available() -> list[str]:
    """What a run on this machine applies, as measured by a probe run (cached per process)."""
    return list(_plan().isolation)


def _plan() -> Plan:
    global _PLAN
    if _PLAN is not None:
        return _PLAN
    with _PLAN_LOCK:
        if _PLAN is None:
            _PLAN = _probe()
    return _PLAN


def _probe() -> Plan:
    root = os.geteuid() == 0
    have_unshare = shutil.which("unshare") is not None
    reachable = _interpreters_for_uid(SANDBOX_UID) if root else []
    candidates: list[Plan] = []
    if root and have_unshare:
        candidates += [Plan("root", True, exe) for exe in reachable]
    # As root, a user namespace maps to uid 0 (root-owned files stay writable where mounted
    # read-write), so dropping to an unprivileged uid without namespaces is tried first.
    candidates += [Plan(None, True, exe) for exe in reachable]
    if have_unshare:
        candidates.append(Plan("user", False, sys.executable))
    candidates.append(Plan(None, False, sys.executable))
    notes: list[str] = []
    for plan in candidates:
        try:
            result = execute(
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
            return Plan(
                plan.ns, plan.drop_uid, plan.interpreter, tuple(result.isolation), "; ".join(notes)
            )
        detail = (result.stderr.strip().splitlines() or [str(result.returncode)])[-1]
        notes.append(f"{plan.ns or 'no-ns'}/{'uid' if plan.drop_uid else 'same-uid'}: {detail}")
    # Nothing worked, not even a plain child: keep the weakest plan, runs will report errors.
    return Plan(None, False, sys.executable, ("rlimits", "clean-env", "tmpdir"), "; ".join(notes))


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


def _warn_once(plan: Plan) -> None:
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
        plan = Plan(plan.ns, plan.drop_uid, interpreter, plan.isolation, plan.note)
    return execute(
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
