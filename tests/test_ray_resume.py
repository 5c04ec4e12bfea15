"""``ann.train`` on the Ray executor survives a ``kill -9`` of its driver: ``resume=True``
finishes with the same result as an uninterrupted run and pays for no call twice.

The same scenario as ``test_train_resume`` (slow scripted models log every paid call; a "hold"
file lets calls in flight finish before the kill), with the executor model resolved on the
Ray workers by name (registered by the scenario module's setup hook). The reference run uses
the local executor: the Ray executor must give the same result.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from tests.test_train_resume import (
    SCENARIO,
    _comparable,
    _history_rows,
    _kill_when_quiet,
    _log,
    _paid,
    _same_work,
)

pytestmark = pytest.mark.ray_cluster
ROOT = Path(__file__).resolve().parents[1]

MODELS = (
    textwrap.dedent(
        """
        import hashlib
        import json
        import os
        import re
        import threading
        import time
        from pathlib import Path

        from ann_langgraph.cache import current_sample
        from ann_langgraph.models import register_model
        from ann_langgraph.testing import ScriptedChatModel

        LOG, HOLD = Path(os.environ["ANN_RESUME_LOG"]), Path(os.environ["ANN_RESUME_HOLD"])
        SLEEP = 0.05
        lock = threading.Lock()
        """
    )
    + SCENARIO
    + textwrap.dedent(
        """
        def setup():
            register_model(
                "resume-exec",
                lambda: ScriptedChatModel(respond=paid("exec", executor), model_name="executor"),
                replace=True,
            )
        """
    )
)

DRIVER = textwrap.dedent(
    r"""
    import json
    import os
    import sys
    from pathlib import Path

    run_dir, log_path, hold_path, out_path, resume, which = sys.argv[1:7]
    os.environ["ANN_RESUME_LOG"], os.environ["ANN_RESUME_HOLD"] = log_path, hold_path
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    here = str(Path(__file__).parent)
    sys.path.insert(0, here)

    import ann_langgraph as ann
    from ann_langgraph.testing import ScriptedChatModel

    import resume_models as m

    m.setup()
    if which == "ray":
        from ann_langgraph.executors.ray import RayExecutor

        executor = RayExecutor(
            setup="resume_models:setup",
            runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([here, sys.argv[7]])}},
            init_options={"num_cpus": 2},
        )
    else:
        executor = "local"
    spec = ann.GraphSpec.model_validate({**m.SPEC, "models": {"default": "resume-exec"}})


    result = ann.train(
        spec,
        train=m.data(12, "t"),
        val=m.data(8, "v"),
        metric="numeric_match",
        models="resume-exec",
        optimizer_model=ScriptedChatModel(respond=m.paid("opt", m.optimizer), model_name="optimizer"),
        epochs=2,
        batch_size=4,
        run_dir=run_dir,
        resume=resume == "1",
        config=ann.OptimizerConfig(
            seed=7, concurrency=4, bootstrap_demos=False, early_rejection=False,
            screening=False,
        ),
        progress=False,
        executor=executor,
    )
    Path(out_path).write_text(
        json.dumps(
            {
                "best_fingerprint": result.best_spec.fingerprint,
                "best_score": result.best_score,
                "history": result.history,
                "versions": result.versions,
                "usage": result.usage,
                "paid": result.paid,
                "stop_reason": result.stop_reason,
            },
            default=str,
        )
    )
    """
)


def _cmd(tmp: Path, run_dir: Path, log: Path, hold: Path, out: Path, resume: bool, which: str):
    return [
        sys.executable,
        str(tmp / "driver.py"),
        str(run_dir),
        str(log),
        str(hold),
        str(out),
        "01"[resume],
        which,
        str(ROOT),
    ]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_a_killed_driver_resumes_on_ray_to_the_same_result(tmp_path):
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    (tmp_path / "resume_models.py").write_text(MODELS, encoding="utf-8")
    hold = tmp_path / "hold"
    ref_out, ref_log = tmp_path / "ref.json", tmp_path / "ref.log"
    _run(_cmd(tmp_path, tmp_path / "ref", ref_log, tmp_path / "never", ref_out, False, "local"))

    run_dir, log, out, err = tmp_path / "run", tmp_path / "run.log", tmp_path / "run.json", None
    err = tmp_path / "run.err"
    with err.open("wb") as fh:
        proc = subprocess.Popen(
            _cmd(tmp_path, run_dir, log, hold, out, False, "ray"),
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    try:
        deadline = time.monotonic() + 180
        while _history_rows(run_dir) < 1:
            assert proc.poll() is None, err.read_text()[-4000:]
            assert time.monotonic() < deadline, "no history row within 180 s"
            time.sleep(0.02)
        at_row = len(_paid(log))
        while len(_paid(log)) < at_row + 5:
            assert proc.poll() is None, err.read_text()[-4000:]
            assert time.monotonic() < deadline, "the run stalled"
            time.sleep(0.005)
        _kill_when_quiet(proc, log, hold)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    pids = [line.split() for line in log.with_suffix(".pids").read_text().splitlines()]
    exec_pids = {int(pid) for role, pid in pids if role == "exec"}
    assert exec_pids and proc.pid not in exec_pids  # the examples ran on Ray's workers
    assert {int(pid) for role, pid in pids if role == "opt"} <= {proc.pid}  # optimizer: driver
    killed_paid = _paid(log)
    assert sum(1 for r in _log(log) if r[0] == "E") == len(killed_paid)

    _run(_cmd(tmp_path, run_dir, log, hold, out, True, "ray"))
    ref, got = json.loads(ref_out.read_text()), json.loads(out.read_text())
    total_paid = _paid(log)
    assert len(total_paid) > len(killed_paid)
    assert got["best_fingerprint"] == ref["best_fingerprint"]
    assert got["best_score"] == ref["best_score"]
    assert _comparable(got["history"]) == _comparable(ref["history"])
    assert _same_work(got["versions"]) == _same_work(ref["versions"])
    # killed + resumed on Ray paid for exactly the calls of the uninterrupted local run, once
    assert sorted(total_paid) == sorted(_paid(ref_log))
    assert got["paid"]["calls"] == len(total_paid)
