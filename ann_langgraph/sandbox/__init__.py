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

How a run is set up (``process``): the host starts ``[unshare ...] <this interpreter> -I -S -c
INIT_SCRIPT cfg`` in a new session. ``INIT_SCRIPT`` (``init_script``, stdlib only) does the
mounts, copies the working directory into the private tmpfs, then forks the child, which sets
rlimits, drops privileges and ``execve``s the sandbox interpreter on ``main.py``. The init
reports what it applied and the child's exit status on a private pipe the child cannot write to
after ``exec``.

What is probed once per process (``isolation``; ``isolation_available()``), in order:
namespaces + uid drop (root), uid drop alone (root without working ``unshare``), an
unprivileged user namespace (``unshare --user --map-root-user``: everything but a separate
uid), nothing but rlimits, a clean environment and a temporary directory. Anything short of the
first emits one loud :class:`SandboxWarning` naming what is missing.

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

from .base import SANDBOX_WORKDIR, RunResult, SandboxWarning
from .isolation import isolation_available, run_python
from .tool import FILES_CONFIG_KEY, files_from_config, format_run_report, python_tool

__all__ = [
    "FILES_CONFIG_KEY",
    "SANDBOX_WORKDIR",
    "RunResult",
    "SandboxWarning",
    "files_from_config",
    "format_run_report",
    "isolation_available",
    "python_tool",
    "run_python",
]
