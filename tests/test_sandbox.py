"""The sandbox runner, attacked with hostile code; every test asserts containment on the host.

Tests that need a particular isolation layer skip (naming it) on machines that lack it; on such
machines ``test_degraded_mode_warns`` still checks that the gap is reported loudly.
"""

from __future__ import annotations

import ast
import os
import socket
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import pytest

from ann_langgraph import sandbox
from ann_langgraph.sandbox import (
    RunResult,
    SandboxWarning,
    isolation_available,
    python_tool,
    run_python,
)
from ann_langgraph.sandbox import base as sandbox_base
from ann_langgraph.sandbox import isolation as sandbox_isolation
from ann_langgraph.sandbox import process as sandbox_process
from ann_langgraph.sandbox import tool as sandbox_tool

PROJECT_DIR = Path(__file__).resolve().parents[1]
SLACK_S = 3.0


@pytest.fixture(scope="module")
def isolation() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        return isolation_available()


def _require(isolation: list[str], *names: str) -> None:
    missing = [name for name in names if name not in isolation]
    if missing:
        pytest.skip(f"sandbox isolation not available here: {', '.join(missing)}")


def _run(code: str, **kwargs: object) -> RunResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        return run_python(code, **kwargs)  # type: ignore[arg-type]


def _processes_with(token: str) -> list[int]:
    """Host pids whose command line contains ``token`` (also sees processes in namespaces)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(entry.name))
    return found


# --- ordinary use ---------------------------------------------------------------------------


def test_normal_code_returns_stdout_and_exit_zero(isolation: list[str]) -> None:
    result = _run("print('hello', 6 * 7)")
    assert result.stdout == "hello 42\n"
    assert result.stderr == ""
    assert result.returncode == 0
    assert result.ok and not result.timed_out and result.killed_reason is None
    assert result.isolation == isolation
    assert {"rlimits", "clean-env", "tmpdir"} <= set(result.isolation)


def test_traceback_is_reported_on_stderr() -> None:
    result = _run("print('before')\nraise ValueError('boom')")
    assert result.stdout == "before\n"
    assert "Traceback" in result.stderr and "ValueError: boom" in result.stderr
    assert result.returncode == 1
    assert not result.ok


def test_exit_code_is_passed_through() -> None:
    assert _run("import sys; sys.exit(3)").returncode == 3


def test_files_are_provided_and_workdir_removed() -> None:
    code = (
        "import os, helper\n"
        "print(helper.X, open('data/in.txt').read(), open('blob.bin', 'rb').read().hex())\n"
        "open('out.txt', 'w').write('mine')\n"
        "print(os.getcwd() == os.environ['HOME'], os.getcwd())\n"
    )
    files: dict[str, str | bytes] = {
        "helper.py": "X = 5",
        "data/in.txt": "abc",
        "blob.bin": b"\x00\xff",
    }
    result = _run(code, files=files)
    assert result.ok, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "5 abc 00ff"
    same, workdir = second.split()
    assert same == "True"
    if "mountns" in result.isolation:
        assert workdir == sandbox.SANDBOX_WORKDIR  # inside its own fresh /tmp
    else:
        assert workdir == "."  # the host directory's random name is not shown
    host_dirs = list(Path(tempfile.gettempdir()).glob("ann-sandbox-*"))
    assert not any((d / "out.txt").exists() for d in host_dirs)  # removed after the run


@pytest.mark.parametrize("mode", ["default", "degraded"])
def test_reports_read_the_same_on_every_run(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tool output goes into prompts: a random path in it would make every re-run a cache miss.
    if mode == "degraded":
        weak = sandbox_base.Plan(None, False, sys.executable, ("rlimits", "clean-env", "tmpdir"))
        monkeypatch.setattr(sandbox_isolation, "_PLAN", weak)
        monkeypatch.setattr(sandbox_isolation, "_WARNED", True)
    code = "import os\nprint(os.getcwd())\nopen('x.txt', 'w').write('1')\n1/0"
    first, second = _run(code), _run(code)
    assert (first.stdout, first.stderr) == (second.stdout, second.stderr)
    assert "ann-sandbox-" not in first.stdout + first.stderr
    assert "main.py" in first.stderr and "ZeroDivisionError" in first.stderr


def test_bad_file_names_are_rejected() -> None:
    for name in ("../escape.txt", "/etc/passwd", "main.py", ""):
        with pytest.raises(ValueError):
            _run("pass", files={name: "x"})


def test_stdin_is_fed() -> None:
    result = _run("print(input()[::-1])", stdin="olleh\n")
    assert result.stdout == "hello\n"


def test_output_is_capped() -> None:
    code = "print('A' * 50000)\nimport sys\nsys.stderr.write('E' * 50000 + 'END')"
    result = _run(code, output_limit=1000)
    assert result.ok
    for text, last in ((result.stdout, "A"), (result.stderr, "END")):
        assert "...[truncated" in text
        assert len(text) < 1000 + 100
        assert text.rstrip().endswith(last)


def test_endless_output_is_killed_not_buffered() -> None:
    start = time.monotonic()
    result = _run("import sys\nwhile True: sys.stdout.write('x' * 65536)", timeout_s=10)
    assert result.killed_reason in ("output", "timeout")
    assert len(result.stdout) < 9000
    assert time.monotonic() - start < 10 + SLACK_S


# --- hostile code ---------------------------------------------------------------------------


def test_infinite_loop_is_killed_with_its_process_group(isolation: list[str]) -> None:
    token = f"{uuid.uuid4().int % 10**6 + 1000}.{os.getpid()}"
    detach = "pidns" in isolation  # without a PID namespace, setsid() escapes a group kill
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['sleep', '{token}'], start_new_session={detach})\n"
        "while True:\n    pass\n"
    )
    start = time.monotonic()
    result = _run(code, timeout_s=1.5)
    elapsed = time.monotonic() - start
    assert result.timed_out
    assert result.killed_reason == "timeout"
    assert result.returncode is None and not result.ok
    assert elapsed < 1.5 + SLACK_S
    time.sleep(0.2)
    assert _processes_with(token) == []


def test_memory_bomb_fails_in_the_child_only() -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"
    start = time.monotonic()
    result = _run(code, memory_mb=256, timeout_s=10)
    assert not result.ok
    assert result.returncode not in (0, None)
    assert result.killed_reason == "memory"
    assert "MemoryError" in result.stderr
    assert time.monotonic() - start < 5


def test_fork_bomb_is_contained_and_killed(isolation: list[str]) -> None:
    if "uid" not in isolation and os.geteuid() == 0:
        pytest.skip("RLIMIT_NPROC does not bind root: needs the uid drop")
    token = f"forkbomb-{uuid.uuid4().hex}"
    code = (
        "import os, sys\n"
        "if len(sys.argv) == 1:\n"
        f"    os.execv(sys.executable, [sys.executable, '-u', 'main.py', '{token}'])\n"
        "told = False\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        if not told:\n"
        "            told = True\n"
        "            print('limit', flush=True)\n"
    )
    start = time.monotonic()
    result = _run(code, timeout_s=2.5, max_processes=32)
    assert time.monotonic() - start < 2.5 + SLACK_S
    assert "limit" in result.stdout  # the process limit stopped it
    assert not result.ok
    time.sleep(0.2)
    assert _processes_with(token) == []


def test_env_secrets_are_not_visible(isolation: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test")
    code = (
        "import os, glob\n"
        "print(sorted(os.environ))\n"
        "print(os.environ.get('OPENAI_API_KEY'))\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        print(open(path, 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = _run(code)
    assert result.ok, result.stderr
    lines = result.stdout.splitlines()
    assert set(ast.literal_eval(lines[0])) == {"PATH", "LANG", "HOME"}
    assert lines[1] == "None"
    if "pidns" in isolation or "uid" in isolation:  # else the host's /proc/<pid>/environ shows
        assert "sk-secret-test" not in result.stdout + result.stderr


def test_writes_outside_the_workdir_do_not_reach_the_host(isolation: list[str]) -> None:
    _require(isolation, "mountns", "tmpfs", "readonly-root")
    name = f"ann-sandbox-escape-{uuid.uuid4().hex}"
    targets = [
        Path("/tmp", name),
        Path(tempfile.gettempdir(), name),
        Path("/var/tmp", name),
        Path("/dev/shm", name),
        Path("/root", name),
        PROJECT_DIR / name,
        Path.home() / name,
    ]
    code = (
        "import os\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as fh:\n"
        "            fh.write('escaped')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('blocked', path, exc.strerror)\n"
        "open('own.txt', 'w').write('fine')\n"
        "print('own', open('own.txt').read())\n"
    )
    try:
        result = _run(code)
        assert result.ok, result.stderr
        assert "own fine" in result.stdout
        leaked = [str(t) for t in targets if t.exists()]
        assert leaked == []
    finally:
        for target in targets:
            if target.exists():
                target.unlink()


def test_loopback_connection_is_refused(isolation: list[str]) -> None:
    _require(isolation, "netns")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print('failed', exc)\n"
        )
        result = _run(code, timeout_s=5)
        assert result.ok, result.stderr
        assert result.stdout.startswith("failed")
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_cannot_regain_privileges(isolation: list[str]) -> None:
    _require(isolation, "no-new-privs")
    code = (
        "import os\n"
        "status = open('/proc/self/status').read()\n"
        "print([l for l in status.splitlines() if l.startswith(('CapEff', 'NoNewPrivs'))])\n"
        "try:\n"
        "    os.setuid(0)\n"
        "    print('root again')\n"
        "except OSError:\n"
        "    print('setuid denied')\n"
    )
    result = _run(code)
    assert "CapEff:\\t0000000000000000" in result.stdout
    assert "NoNewPrivs:\\t1" in result.stdout
    if "uid" in isolation:
        assert "setuid denied" in result.stdout


# --- degraded mode and the tool -------------------------------------------------------------


def test_degraded_mode_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    weak = sandbox_base.Plan(None, False, sys.executable, ("rlimits", "clean-env", "tmpdir"))
    monkeypatch.setattr(sandbox_isolation, "_PLAN", weak)
    monkeypatch.setattr(sandbox_isolation, "_WARNED", False)
    with pytest.warns(SandboxWarning, match="WITHOUT netns, pidns, mountns"):
        result = run_python("print('still runs')")
    assert result.stdout == "still runs\n"
    assert "netns" not in result.isolation
    assert "rlimits" in result.isolation
    with warnings.catch_warnings():
        warnings.simplefilter("error", SandboxWarning)
        run_python("pass")  # warned once per process, not on every run


def test_python_tool() -> None:
    assert python_tool.name == "python"
    assert set(python_tool.args) == {"code"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        out = python_tool.invoke({"code": "print(6*7)"})
        assert "42" in out and "exit code 0" in out
        out = python_tool.invoke({"code": "1/0"})
        assert "ZeroDivisionError" in out and "exit code 1" in out


def test_python_tool_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> RunResult:
        raise OSError("no processes left")

    monkeypatch.setattr(sandbox_tool, "run_python", broken)
    assert python_tool.invoke({"code": "print(1)"}).startswith("error: ")


def test_home_directories_are_hidden(isolation: list[str]) -> None:
    _require(isolation, "hidden-home")
    hidden = sandbox_process.paths_to_hide(sandbox_isolation._plan().interpreter)
    assert hidden
    code = (
        "import os\n"
        f"for path in {hidden!r}:\n"
        "    if os.path.isdir(path):\n"
        "        print(path, os.listdir(path))\n"
        "    elif os.path.isfile(path):\n"
        "        print(path, open(path, 'rb').read())\n"
    )
    result = _run(code)
    assert result.ok, result.stderr
    for line in result.stdout.splitlines():
        assert line.endswith((" []", " b''")), line
