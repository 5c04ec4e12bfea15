"""Training against unreliable models: faults are retried or recorded, and nothing paid is lost.

The executor fails a fifth of its requests and the optimizer a quarter (it makes few calls),
deterministically: whether a request fails, and how, is drawn from a generator seeded by the
request's content (not by call order, so runs are reproducible and concurrency does not matter):

- transport faults (``TimeoutError``, an error with ``status_code = 429``, one with 500) fail
  only the first attempt of a request, so the graph's retry policy gets through;
- empty content, text instead of a function call, truncated JSON and wrongly shaped arguments
  are answers (the model was paid) that the optimizer must record as a critic error or an
  invalid candidate: they stay wrong when the optimizer asks again.

The empty answers of the executor are scored like any answer. Which requests fail depends on the
prompts: if a prompt change leaves a kind of fault out of the run, try another ``SALT``. Retries
wait 10 ms here (``ann_langgraph.models.RETRY_INITIAL_INTERVAL``), not 0.5-1.5 s.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage

import ann_langgraph as ann
from ann_langgraph import models as model_registry
from ann_langgraph.testing import ScriptedChatModel
from ann_langgraph.train import TrainResult

from .conftest import agent, make_spec

SALT = "salt-1"
TRANSPORT = ("timeout", "rate_limit", "server_error")
EXECUTOR_KINDS = (*TRANSPORT, "empty")
REFLECTION = "write a new instruction"  # GEPA's reflection prompt, as the optimizer sends it
OPTIMIZER_KINDS = (*TRANSPORT, "empty", "text", "truncated_json", "wrong_shape")


class RateLimitError(Exception):
    status_code = 429


class ServerError(Exception):
    status_code = 500


def _text(messages: list[BaseMessage]) -> str:
    return "\n".join(f"{m.type}: {m.content}" for m in messages)


class Faults:
    """Wraps a response function with content-seeded faults; remembers what it injected."""

    def __init__(self, role: str, kinds: tuple[str, ...], rate: float) -> None:
        self.role, self.kinds, self.rate = role, kinds, rate
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # full request -> times asked
        self.injected: list[tuple[str, str, str]] = []  # (kind, request as first asked, full)

    def wrap(self, respond: Callable[[list[BaseMessage]], Any]) -> Callable[..., Any]:
        def faulty(messages: list[BaseMessage], **kw: Any) -> Any:
            tools = json.dumps(kw.get("tools") or [], sort_keys=True)
            # the request as first asked (a structured-output retry appends a note to it)
            base = f"{_text(messages[:2])}|{tools}"
            rng = random.Random(f"{SALT}|{self.role}|{base}")
            fails, kind = rng.random() < self.rate, rng.choice(self.kinds)
            full = _text(messages) + tools
            with self.lock:
                attempt = self.requests[full]
                self.requests[full] += 1
                if fails and (kind not in TRANSPORT or attempt == 0):
                    self.injected.append((kind, base, full))
            if fails and kind in TRANSPORT and attempt == 0:
                raise {
                    "timeout": TimeoutError("the request timed out"),
                    "rate_limit": RateLimitError("429 Too Many Requests"),
                    "server_error": ServerError("500 Internal Server Error"),
                }[kind]
            if fails and kind == "empty":
                return AIMessage(content="")
            if fails and kind == "text":
                return "Sure! The solver is the problem, I think. Hope this helps."
            if fails and kind == "truncated_json" and not kw.get("tools"):  # plain text asked
                return AIMessage(
                    content="```\nAdd one. LE", response_metadata={"finish_reason": "length"}
                )
            if fails and kind == "truncated_json":
                return AIMessage(
                    content="",
                    invalid_tool_calls=[
                        {
                            "name": kw["tools"][0]["function"]["name"],
                            "args": '{"summary": "the solver", "blame": [{"layer": ',
                            "id": "call_truncated",
                            "error": "Malformed args.",
                            "type": "invalid_tool_call",
                        }
                    ],
                )
            if fails and kind == "wrong_shape":
                return {"summary": 42, "blame": "everything", "ops": "rewrite it all"}
            return respond(messages)

        return faulty

    def kinds_injected(self) -> set[str]:
        return {kind for kind, _, _ in self.injected}


# -- the task: two layers, the optimizer raises the solver's LEVEL ------------------------------


def spec() -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "read", "agents": [agent("reader", "a reader", "Restate the question.")]},
            {"name": "solve", "agents": [agent("solver", "a solver", "Add one. LEVEL 0")]},
        ],
        answer_format="last_number",
    )


def data(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "input": f"What is {i} plus one?", "target": str(i + 1)}
        for i in range(n)
    ]


def executor_answer(messages: list[BaseMessage]) -> str:
    system, question = str(messages[0].content), str(messages[-1].content)
    n = int(re.search(r"What is (\d+)", question).group(1))  # type: ignore[union-attr]
    if "a reader" in system:
        return f"The question asks for {n} plus one."
    found = re.search(r"LEVEL (\d+)", system)  # a garbled reflection may have dropped it
    level = int(found.group(1)) if found else -1
    if "BAD" in system:
        return "Answer: 0"
    return f"Answer: {n + 1}" if n % 12 <= level else f"Answer: {n}"


def optimizer_answer(messages: list[BaseMessage]) -> dict[str, Any]:
    text = _text(messages)
    if "global critic" in text:
        return {
            "summary": "Answers are one too low.",
            "blame": [
                {"layer": "solve", "reason": "the solver forgets to add one"},
                {"layer": "read", "reason": "the reader could be clearer"},
            ],
        }
    if "write a new instruction" in text:  # a reflective proposal (GEPA's prompt)
        found = re.search(r"LEVEL (\d+)", text)
        better = f"Add one. LEVEL {int(found.group(1)) + 1}" if found else "Restate it plainly."
        return f"```\n{better}\n```"  # type: ignore[return-value]
    layer = re.search(r"LAYER TO REPAIR: '(\w+)'", text).group(1)  # type: ignore[union-attr]
    level = int(re.search(r"LEVEL (\d+)", text).group(1))  # type: ignore[union-attr]
    if layer == "read":  # changes nothing that matters: rolled back
        prompt = f"Restate the question (try {text.count('REJECTED')})."
        return {
            "rationale": "clearer",
            "ops": [{"op": "set_prompt", "layer": "read", "agent": "reader", "prompt": prompt}],
        }
    # alternately helpful (committed) and harmful (rolled back)
    earlier = re.findall(r"(ACCEPTED|REJECTED) set_prompt solve", text)
    helpful = not earlier or earlier[-1] == "REJECTED"
    prompt = f"Add one. LEVEL {level + 1}" if helpful else f"Add one. LEVEL {level} BAD"
    return {
        "rationale": "helpful" if helpful else "harmful",
        "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": prompt}],
    }


def models() -> tuple[ScriptedChatModel, ScriptedChatModel, Faults, Faults]:
    # the optimizer makes few calls: a little more often, so each run has both kinds of fault
    ex, op = Faults("executor", EXECUTOR_KINDS, 0.2), Faults("optimizer", OPTIMIZER_KINDS, 0.25)
    return (
        ScriptedChatModel(respond=ex.wrap(executor_answer), model_name="executor"),
        ScriptedChatModel(respond=op.wrap(optimizer_answer), model_name="optimizer"),
        ex,
        op,
    )


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry after 10 ms instead of 0.5 s plus up to 1 s of jitter."""
    monkeypatch.setattr(model_registry, "RETRY_INITIAL_INTERVAL", 0.01)
    monkeypatch.setattr(model_registry, "RETRY_JITTER", False)


def run(run_dir: Path, executor: ScriptedChatModel, optimizer: ScriptedChatModel) -> TrainResult:
    return ann.train(
        spec(),
        train=data(16, "t"),
        val=data(6, "v"),
        metric="numeric_match",
        models=executor,
        optimizer_model=optimizer,
        epochs=2,
        batch_size=4,
        run_dir=run_dir,
        config=ann.OptimizerConfig(
            # no screening: the helpful patch fixes one residue class in twelve, which a
            # 4-example minibatch rarely holds (screening has its own tests)
            seed=3,
            concurrency=4,
            bootstrap_demos=False,
            early_rejection=False,
            screening=False,
        ),
        progress=False,
    )


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_usage(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows without what a replay legitimately changes: the money spent, and each
    candidate's measured cost (a timed-out attempt was paid; the replay's cache holds only
    the answer that a retry got)."""
    return [
        {
            **{k: v for k, v in row.items() if k != "usage"},
            "candidates": [
                {k: v for k, v in c.items() if k != "cost"} for c in row.get("candidates", [])
            ],
        }
        for row in history
    ]


_COST = ("wall_s_per_example", "input_tokens_per_example", "output_tokens_per_example",
         "tokens_per_example", "calls_per_example")  # fmt: skip


def _without_cost(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in _COST} for row in versions]


@pytest.fixture
def builtin_aggregators_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults are seeded by prompt content, and prompts list the registered aggregators: keep
    aggregators other tests register on import (``evals.baselines``' ``tool_vote``) out."""
    from ann_langgraph.aggregators import registry

    registry.aggregator_names()  # loads the built-ins
    builtins = {
        "sequential_cot",
        "parallel_vote",
        "tool_pipeline",
        "debate",
        "self_refine",
        "dynamic",
        "test_revise",
    }
    kept = {k: v for k, v in registry._REGISTRY.items() if k in builtins}
    monkeypatch.setattr(registry, "_REGISTRY", kept)


@pytest.mark.usefixtures("builtin_aggregators_only")
def test_training_survives_faulty_models_retrying_or_recording_every_fault(tmp_path, fast_retries):
    executor, optimizer, ex_faults, op_faults = models()
    result = run(tmp_path / "run", executor, optimizer)

    # it completed, and it learned despite the faults
    assert result.stop_reason == "epochs done"
    assert len(result.history) == 8  # 16 / 4 * 2 epochs
    assert result.best_score > result.baseline_score
    assert any(r["decision"].get("accepted") for r in result.history)
    rolled_back = [c for r in result.history for c in r["candidates"] if c.get("valid")]
    assert any(not c["accepted"] for c in rolled_back)

    # the scenario has every kind of fault (else change SALT: the draw depends on the prompts)
    assert ex_faults.kinds_injected() == set(EXECUTOR_KINDS)
    assert set(TRANSPORT) & op_faults.kinds_injected()
    assert set(OPTIMIZER_KINDS[3:]) & op_faults.kinds_injected()
    n_calls = sum(ex_faults.requests.values()) + sum(op_faults.requests.values())
    n_faults = len(ex_faults.injected) + len(op_faults.injected)
    assert 0.1 < n_faults / n_calls < 0.3  # about a fifth

    # 1. every transport fault was retried: the same request was asked again, and answered
    for faults in (ex_faults, op_faults):
        transport = [full for kind, _, full in faults.injected if kind in TRANSPORT]
        assert transport
        for full in transport:
            assert faults.requests[full] >= 2, "a failed request was never retried"

    # 2. every structured-output fault of the optimizer was asked again with the error shown,
    # then recorded in the history once, with its reason: a critic error or an invalid candidate
    # (a reflective proposal is plain text, not structured: its garbage is sampled again, below)
    garbage: Counter[str] = Counter(
        base
        for kind, base, _ in op_faults.injected
        if kind not in TRANSPORT and REFLECTION not in base
    )
    assert garbage and all(n == 2 for n in garbage.values()), garbage
    retries = [c["text"] for c in optimizer.calls if "previous answer was not valid" in c["text"]]
    assert len(retries) == len(garbage)
    critic_errors = [r["gradient"]["error"] for r in result.history if r["gradient"].get("error")]
    invalid = [
        c["reason"]
        for r in result.history
        for c in r["candidates"]
        if not c["valid"] and c["source"] != "reflection"
    ]
    # the scripted optimizer may propose a harmful prompt it proposed before: refused as a repeat
    invalid = [reason for reason in invalid if "this same prompt was proposed" not in reason]
    assert len(critic_errors) + len(invalid) == len(garbage)
    for reason in [*critic_errors, *invalid]:
        assert "no structured answer" in reason or "validation error" in reason, reason
    for row in result.history:
        if row["gradient"].get("error"):  # a failed critic falls back to the output layer
            assert row["gradient"]["attempts"] == 2 and row["gradient"]["fallback"] is True
            assert [b["layer"] for b in row["gradient"]["blame"]] == ["solve"]
    # a garbled reflective answer (empty, chatter, cut off) is drawn again or recorded, never run
    reflected = [c for r in result.history for c in r["candidates"] if c["source"] == "reflection"]
    assert any(kind not in TRANSPORT and REFLECTION in base for kind, base, _ in op_faults.injected)
    assert any(c.get("resampled") for c in reflected)
    for c in reflected:
        assert c["valid"] or c["reason"], c
    # executor faults that are answers (empty content) are scored, not retried
    empty = [full for kind, _, full in ex_faults.injected if kind == "empty"]
    assert empty and all(ex_faults.requests[full] == 1 for full in empty)

    # 3. nothing already paid for is lost: the run directory holds it all, consistently
    run_dir = tmp_path / "run"
    assert _jsonl(run_dir / "history.jsonl") == json.loads(json.dumps(result.history, default=str))
    lineage = _jsonl(run_dir / "versions.jsonl")
    assert lineage == json.loads(json.dumps(result.versions, default=str))
    assert [v["version"] for v in lineage] == list(range(len(lineage)))
    assert len(lineage) == 1 + sum(1 for r in result.history if r["decision"].get("accepted"))
    for v in lineage[1:]:
        parent = ann.load_spec(run_dir / f"spec.v{v['parent']}.yaml")
        assert ann.apply_patch(parent, v["patch"]) == ann.load_spec(
            run_dir / f"spec.v{v['version']}.yaml"
        )
    last = ann.load_spec(run_dir / f"spec.v{lineage[-1]['version']}.yaml")
    assert last.fingerprint == result.best_spec.fingerprint
    assert ann.load_spec(run_dir / "best.yaml").fingerprint == result.best_spec.fingerprint
    record_files = sorted((run_dir / "records").glob("step-*.jsonl"))
    assert len(record_files) == 8
    # the failed attempts stay in the records (the critic is not shown those that a retry fixed)
    records = [r for path in record_files for r in _jsonl(path)]
    assert any("TimeoutError" in (r["error"] or "") for r in records)

    # every answer paid for (garbage included) is in the response cache: the same training
    # replayed from it, in a new run directory, asks the models nothing and ends the same
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    shutil.copy(run_dir / "cache.sqlite", replay_dir / "cache.sqlite")
    executor2, optimizer2, _, _ = models()
    again = run(replay_dir, executor2, optimizer2)
    assert executor2.calls == [] and optimizer2.calls == []
    assert again.usage["calls"] == 0
    assert _without_usage(again.history) == _without_usage(result.history)
    assert _without_cost(again.versions) == _without_cost(result.versions)
    assert again.best_spec == result.best_spec
