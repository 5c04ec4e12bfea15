"""Resume after a real ``kill -9``: nothing already paid for is paid again, and the result is the
same as an uninterrupted run's.

A driver script runs ``ann_langgraph.train`` in a subprocess with slow scripted models whose
``respond`` functions log every paid call (cache hits never reach a scripted model). The optimizer
alternates between a harmful patch (rolled back) and a helpful one (committed). One run goes
uninterrupted; another is killed with SIGKILL once ``history.jsonl`` has a row, then resumed.

Where the kill lands: the test first raises a "hold" flag that makes model calls not yet started
wait (unpaid), lets the calls already in flight finish (and reach the cache), then kills the
process in the middle of a node, with some of that node's calls paid and cached and others not
made. (A call in flight at the moment of a kill is lost money that no cache can save: a provider
bills it, but its answer never arrives; the hold keeps the paid-call count exact.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

# The scenario's models (needs LOG, HOLD, SLEEP and lock defined before it): shared with
# test_ray_resume, whose workers import it as a module.
SCENARIO = textwrap.dedent(
    r'''
    def log(line):
        with lock, LOG.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()


    def paid(role, answer):
        """Wrap a response function: wait while held (unpaid), then log the paid call."""

        def respond(messages, **kw):
            while HOLD.exists():
                time.sleep(0.01)
            # the request and its sample slot (a reflection's samples share a prompt)
            text = "\n".join(str(m.content) for m in messages) + json.dumps(
                kw.get("tools") or [], sort_keys=True
            ) + str(current_sample.get())
            key = hashlib.sha256(text.encode()).hexdigest()[:16]
            log(f"B {role} {key}")
            with lock, LOG.with_suffix(".pids").open("a", encoding="utf-8") as fh:
                fh.write(f"{role} {os.getpid()}\n")
            time.sleep(SLEEP)
            out = answer(messages)
            log(f"E {role} {key}")
            return out

        return respond


    def executor(messages):
        """Right on n % 4 <= LEVEL; never right with BAD in the prompt."""
        system, question = messages[0].content, messages[-1].content
        n = int(re.search(r"What is (\d+)", question).group(1))
        if "LEVEL" not in system:  # a checker (a growing operator): keeps the proposed answer
            proposed = re.findall(r"Answer: (\d+)", question)
            return f"Answer: {proposed[-1] if proposed else n}"
        level = int(re.search(r"LEVEL (\d+)", system).group(1))
        if "BAD" in system:
            return "Answer: 0"
        return f"Answer: {n + 1}" if n % 4 <= level else f"Answer: {n}"


    def optimizer(messages):
        text = "\n".join(str(m.content) for m in messages)
        if "global critic" in text:
            return {
                "summary": "Some numbers come out one too low.",
                "blame": [{"layer": "solve", "reason": "the solver forgets to add one"}],
            }
        level = int(re.search(r"LEVEL (\d+)", text).group(1))
        if "write a new instruction" in text:  # a reflective proposal: screened out
            return f"```\nAdd one to the number. LEVEL {level} BAD\n```"
        history = re.findall(r"(ACCEPTED|REJECTED)", text.split("HISTORY OF EARLIER EDITS", 1)[-1])
        helpful = bool(history) and history[-1] == "REJECTED"
        prompt = (
            f"Add one to the number. LEVEL {level + 1}"
            if helpful
            else f"Add one to the number. LEVEL {level} BAD"
        )
        return {
            "rationale": "helpful" if helpful else "harmful",
            "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": prompt}],
        }


    SPEC = {
        "name": "resume-test",
        "description": "add one",
        "answer_format": "last_number",
        "layers": [
            {
                "name": "solve",
                "agents": [
                    {"id": "solver", "role": "a solver", "prompt": "Add one to the number. LEVEL 0"}
                ],
            }
        ],
    }


    def data(n, prefix):
        return [
            {"id": f"{prefix}{i}", "input": f"What is {i} plus one?", "target": str(i + 1)}
            for i in range(n)
        ]
    '''
)

DRIVER = (
    textwrap.dedent(
        r'''
        """Train a small spec with slow scripted models; log every paid model call."""
        import hashlib
        import json
        import os
        import re
        import sys
        import threading
        import time
        from pathlib import Path

        import ann_langgraph as ann
        from ann_langgraph.cache import current_sample
        from ann_langgraph.testing import ScriptedChatModel

        run_dir, log_path, hold_path, out_path, resume = sys.argv[1:6]
        LOG, HOLD = Path(log_path), Path(hold_path)
        SLEEP = 0.05
        lock = threading.Lock()
        '''
    )
    + SCENARIO
    + textwrap.dedent(
        r"""
        spec = ann.GraphSpec.model_validate(SPEC)


        result = ann.train(
            spec,
            train=data(12, "t"),
            val=data(8, "v"),
            metric="numeric_match",
            models=ScriptedChatModel(respond=paid("exec", executor), model_name="executor"),
            optimizer_model=ScriptedChatModel(respond=paid("opt", optimizer), model_name="optimizer"),
            epochs=2,
            batch_size=4,
            run_dir=run_dir,
            resume=resume == "1",
            config=ann.OptimizerConfig(
                seed=7, concurrency=4, bootstrap_demos=False, early_rejection=False,
                screening=False, objective=os.environ.get("ANN_TEST_OBJECTIVE", "accuracy"),
                # under cost a vote of the current agent joins the pool; drawn as a parent, it
                # would outvote the scenario's one helpful edit (LEVEL n+1) every step
                pareto_parents=os.environ.get("ANN_TEST_OBJECTIVE") != "cost",
            ),
            progress=False,
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
)


KILL_AFTER_CALLS = 5


def _driver(tmp_path: Path) -> Path:
    path = tmp_path / "driver.py"
    path.write_text(DRIVER, encoding="utf-8")
    return path


def _cmd(driver: Path, run_dir: Path, log: Path, hold: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, str(driver), str(run_dir), str(log), str(hold), str(out), "01"[resume]]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _start(cmd: list[str], err: Path) -> subprocess.Popen[bytes]:
    with err.open("wb") as fh:  # a file, not a pipe nobody reads while it runs
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh)


def _log(path: Path) -> list[tuple[str, str, str]]:
    """``(B|E, role, request hash)`` lines; a line being written (no newline yet) is left out."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [(kind, role, key) for kind, role, key in (line.split() for line in lines)]


def _paid(path: Path) -> list[tuple[str, str]]:
    """The calls that were paid for (began); a call that began also ended unless killed."""
    return [(role, key) for kind, role, key in _log(path) if kind == "B"]


def _history_rows(run_dir: Path) -> int:
    path = run_dir / "history.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _comparable(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A history row without what legitimately differs between runs: the money spent."""
    return [{k: v for k, v in row.items() if k != "usage"} for row in history]


def _same_work(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Versions without their measured wall time per example (the clock differs per run)."""
    return [{k: v for k, v in row.items() if k != "wall_s_per_example"} for row in versions]


def _kill_when_quiet(proc: subprocess.Popen[bytes], log: Path, hold: Path) -> None:
    """Hold new model calls, wait until the calls in flight have finished, then SIGKILL."""
    hold.touch()
    last, quiet_since = None, time.monotonic()
    while time.monotonic() - quiet_since < 0.3:
        rows = _log(log)
        begun = sum(1 for r in rows if r[0] == "B")
        ended = sum(1 for r in rows if r[0] == "E")
        state = (begun, ended)
        if state != last or begun != ended:
            last, quiet_since = state, time.monotonic()
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    hold.unlink()


def _checkpointed(run_dir: Path) -> dict[str, Any]:
    """The state in the run's latest checkpoint (what a resume starts from)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from ann_langgraph.train import THREAD_ID

    with SqliteSaver.from_conn_string(str(run_dir / "checkpoints.sqlite")) as saver:
        saved = saver.get_tuple({"configurable": {"thread_id": THREAD_ID}})
    assert saved is not None
    return saved.checkpoint["channel_values"]


@pytest.mark.parametrize("objective", ["accuracy", "cost"])
def test_resume_after_sigkill_matches_an_uninterrupted_run_and_pays_nothing_twice(
    tmp_path, monkeypatch, objective
):
    """Also in the middle of a cost run (issue 28): its decisions read each candidate's tokens
    and the current version's, which a resume must restore exactly."""
    monkeypatch.setenv("ANN_TEST_OBJECTIVE", objective)
    driver = _driver(tmp_path)
    hold = tmp_path / "hold"

    # 1. the reference, one uninterrupted run, goes on in the background meanwhile
    ref_dir, ref_log, ref_out = tmp_path / "ref", tmp_path / "ref.log", tmp_path / "ref.json"
    ref_err = tmp_path / "ref.err"
    ref_proc = _start(_cmd(driver, ref_dir, ref_log, tmp_path / "never", ref_out, False), ref_err)

    # 2. the same run, killed with SIGKILL once a history row is on disk
    run_dir, log, out = tmp_path / "run", tmp_path / "run.log", tmp_path / "run.json"
    err = tmp_path / "run.err"
    proc = _start(_cmd(driver, run_dir, log, hold, out, resume=False), err)
    try:
        deadline = time.monotonic() + 60
        while _history_rows(run_dir) < 1:
            assert proc.poll() is None, err.read_text()[-4000:]
            assert time.monotonic() < deadline, "no history row within 60 s"
            time.sleep(0.01)
        # a few calls into the next step, so that the kill lands inside a node with calls
        # paid (and cached) whose result never reached a checkpoint
        at_row = len(_paid(log))
        while len(_paid(log)) < at_row + KILL_AFTER_CALLS:
            assert proc.poll() is None, err.read_text()[-4000:]
            assert time.monotonic() < deadline, "the run stalled"
            time.sleep(0.005)
        _kill_when_quiet(proc, log, hold)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            ref_proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            ref_proc.kill()
            ref_proc.wait()
    assert ref_proc.returncode == 0, ref_err.read_text()[-4000:]
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # it really died before finishing
    killed_paid = _paid(log)
    killed_rows = _history_rows(run_dir)
    # every call of the killed run had finished: the hold kept new ones from starting
    assert sum(1 for r in _log(log) if r[0] == "E") == len(killed_paid)
    # the files in the run directory are not behind the checkpoint they were written from
    saved = _checkpointed(run_dir)
    assert killed_rows == len(saved["history"])
    lineage = [json.loads(x) for x in (run_dir / "versions.jsonl").read_text().splitlines()]
    assert [v["version"] for v in lineage] == [v["version"] for v in saved["versions"]]

    ref = json.loads(ref_out.read_text())
    ref_paid = _paid(ref_log)
    # the scenario has what it must: several steps, commits and rollbacks
    decisions = [row["decision"].get("accepted") for row in ref["history"] if row["decision"]]
    assert True in decisions and False in decisions, decisions
    assert len(ref["versions"]) >= 3 and len(ref["history"]) == 6  # 12 / 4 * 2 epochs
    decided = [row["decision"] for row in ref["history"] if row.get("decision")]
    assert decided and all(d["objective"] == objective for d in decided)
    if objective == "cost":  # rolled-back steps weighed tokens; topology grows (a vote)
        assert all("cost" in d for d in decided if not d["accepted"])
        sources = {c["source"] for row in ref["history"] for c in row["candidates"]}
        assert "operator:vote" in sources
    assert ref["stop_reason"] == "epochs done"
    assert len(ref_paid) == len(set(ref_paid))  # a fresh run never pays for one call twice
    assert 1 <= killed_rows < len(ref["history"])
    assert 0 < len(killed_paid) < len(ref_paid)

    # 3. resume to completion
    _run(_cmd(driver, run_dir, log, hold, out, resume=True))
    got = json.loads(out.read_text())
    total_paid = _paid(log)
    resumed_paid = total_paid[len(killed_paid) :]
    assert resumed_paid, "the resumed run had work left to do"

    assert got["best_fingerprint"] == ref["best_fingerprint"]
    assert got["best_score"] == ref["best_score"]
    assert len(got["history"]) == len(ref["history"])
    assert _comparable(got["history"]) == _comparable(ref["history"])
    assert _same_work(got["versions"]) == _same_work(ref["versions"])
    assert got["stop_reason"] == ref["stop_reason"]
    # the money: killed + resumed paid for exactly the calls of the uninterrupted run, each once
    assert len(total_paid) == len(ref_paid)
    assert sorted(total_paid) == sorted(ref_paid)
    assert not set(killed_paid) & set(resumed_paid)
    # the ledger (outside the checkpoint) counts every paid call, also those of the step the
    # kill cut short, which the checkpointed usage lost (they were replayed free on resume)
    assert ref["paid"]["calls"] == len(ref_paid)
    assert got["paid"]["calls"] == len(total_paid)
    assert got["usage"]["calls"] < got["paid"]["calls"]
    assert "cut short" in (run_dir / "report.md").read_text()
    # every model call the nodes made is accounted for, paid or replayed from the cache
    for key in ("calls", "input_tokens", "output_tokens"):
        assert got["usage"][key] <= ref["usage"][key]
    assert (
        got["usage"]["calls"] + got["usage"]["cached_calls"]
        == ref["usage"]["calls"] + ref["usage"]["cached_calls"]
    )
    # the run directory's files agree with the result
    rows = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    assert _comparable(rows) == _comparable(ref["history"])
    lineage = [json.loads(x) for x in (run_dir / "versions.jsonl").read_text().splitlines()]
    assert lineage == got["versions"]
    for v in got["versions"]:
        assert (run_dir / f"spec.v{v['version']}.yaml").read_text() == (
            ref_dir / f"spec.v{v['version']}.yaml"
        ).read_text()
    assert (run_dir / "best.yaml").read_text() == (ref_dir / "best.yaml").read_text()

    # 4. resuming a finished run does nothing new: no paid call, same answer
    _run(_cmd(driver, run_dir, log, hold, out, resume=True))
    again = json.loads(out.read_text())
    assert _paid(log) == total_paid
    assert again["best_fingerprint"] == ref["best_fingerprint"]
    assert again["history"] == got["history"] and again["versions"] == got["versions"]
