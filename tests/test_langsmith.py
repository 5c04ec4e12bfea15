"""LangSmith integration, offline: the real ``langsmith`` client talks to a loopback stand-in
(``tests/langsmith_standin.py``) through ``LANGSMITH_ENDPOINT``."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from langsmith import utils as ls_utils
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.cli import app
from ann_langgraph.langsmith_io import (
    LangSmithError,
    LangSmithTraceSource,
    langsmith_configured,
    load_langsmith_dataset,
)
from ann_langgraph.testing import ScriptedChatModel

from .conftest import REPAIRER_PATH, agent, make_spec
from .langsmith_standin import LangSmithStandIn
from .test_optimizer import data, executor, optimizer, solver_spec

ENV_KEYS = (
    "LANGSMITH_ENDPOINT",
    "LANGSMITH_API_KEY",
    "LANGSMITH_TRACING",
    "LANGSMITH_PROJECT",
    "LANGCHAIN_ENDPOINT",
    "LANGCHAIN_API_KEY",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_PROJECT",
)


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    # langsmith caches environment reads for the process: forget them both ways.
    ls_utils.get_env_var.cache_clear()
    ls_utils.get_tracer_project.cache_clear()


@pytest.fixture(autouse=True)
def _no_env_leak() -> Iterator[None]:
    before = {k: os.environ.get(k) for k in ENV_KEYS}
    yield
    after = {k: os.environ.get(k) for k in ENV_KEYS}
    assert after == before, "a test left LANGSMITH_* settings behind"


def _standin(env: dict[str, str | None]) -> Iterator[LangSmithStandIn]:
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    with LangSmithStandIn() as ls:
        _set_env({**dict.fromkeys(ENV_KEYS), "LANGSMITH_ENDPOINT": ls.url, **env})
        try:
            yield ls
        finally:
            _set_env(saved)


@pytest.fixture
def standin() -> Iterator[LangSmithStandIn]:
    """LangSmith configured and pointed at the stand-in; LANGSMITH_PROJECT must be ignored."""
    yield from _standin(
        {
            "LANGSMITH_API_KEY": "test-key",
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_PROJECT": "not-this-one",
        }
    )


@pytest.fixture
def standin_unconfigured() -> Iterator[LangSmithStandIn]:
    """The stand-in is reachable (LANGSMITH_ENDPOINT) but LangSmith is not configured."""
    yield from _standin({})


def three_layer() -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "understand", "agents": [agent("reader", "Reader")]},
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "agents": [agent("a", "Solver A"), agent("b", "Solver B")],
            },
            {"name": "answer", "agents": [agent("writer", "Writer")]},
        ],
        answer_format="last_number",
    )


def scripted() -> ScriptedChatModel:
    return ScriptedChatModel(
        rules=[
            (r"You are Reader", "two numbers"),
            (r"You are Solver A", "Answer: 3"),
            (r"You are Solver B", "Answer: 4"),
            (r"boom", ValueError("model exploded")),
        ],
        default="Answer: 3",
    )


EXAMPLES = [
    {"id": "e1", "input": "What is 1+2?", "target": "3"},
    {"id": "e2", "input": "What is 2+2?", "target": "4"},
    {"id": "e3", "input": "boom", "target": "0"},
]


def graded(example: dict, output: str) -> ann.Score:
    ok = output.strip().endswith(str(example["target"]))
    return ann.Score(
        value=1.0 if ok else 0.0, feedback="right" if ok else f"wanted {example['target']}"
    )


FREE = {name: (0.0, 0.0) for name in ("scripted", "executor", "optimizer")}


def _meta(run: dict) -> dict:
    return (run.get("extra") or {}).get("metadata") or {}


# -- tracing, metadata, feedback ---------------------------------------------------------------


def test_evaluate_traces_every_example_to_the_runs_project_with_metadata_and_feedback(standin):
    spec = three_layer()
    report = ann.evaluate(spec, EXAMPLES, graded, models=scripted(), progress=False)
    assert report.run_id and report.langsmith_project == f"ann-{report.run_id}"
    assert standin.session_named("not-this-one") is None
    runs = standin.runs_in(report.langsmith_project)
    roots = {r["id"]: r for r in runs if r.get("parent_run_id") is None}
    # one root run per example, whose id is the example's run_id (so feedback can find it)
    assert set(roots) == {r.run_id for r in report.results}
    for result in report.results:
        md = _meta(roots[result.run_id])
        assert md["ann_run_id"] == report.run_id and md["ann_example_id"] == result.id
        assert md["ann_spec"] == spec.fingerprint and md["ann_eval_id"]
    llm = [r for r in runs if r.get("run_type") in ("llm", "chat_model")]
    assert len(llm) == report.calls
    assert {(_meta(r)["ann_layer"], _meta(r)["ann_agent"]) for r in llm} == {
        ("understand", "reader"),
        ("solve", "a"),
        ("solve", "b"),
        ("answer", "writer"),
    }
    assert all(_meta(r)["ann_run_id"] == report.run_id for r in llm)
    # scores as feedback on the right root runs
    got = {f["run_id"]: f for f in standin.feedback}
    assert set(got) == set(roots)
    for result in report.results:
        fb = got[result.run_id]
        assert fb["key"] == "graded" and fb["score"] == result.score
        assert fb["comment"] == result.feedback
    assert [r.score for r in report.results] == [1.0, 0.0, 0.0]
    assert report.results[2].error and "model exploded" in report.results[2].error
    # what the real client sent: compressed multipart ingest, as against LangSmith itself
    assert ("POST", "/runs/multipart") in standin.requests
    assert "zstd" in standin.ingest_encodings


def test_records_read_back_from_langsmith_equal_the_local_recorders(standin):
    recorder = ann.TraceRecorder()
    report = ann.evaluate(
        three_layer(), EXAMPLES, graded, models=scripted(), progress=False, recorder=recorder
    )
    local = sorted(recorder.records, key=lambda r: (r.start_time or "", r.run_id))
    assert {r.kind for r in local} == {"llm", "decision"} and any(r.error for r in local)
    source = LangSmithTraceSource(
        project=report.langsmith_project,
        metadata={"ann_run_id": report.run_id},
        expected_roots=len(EXAMPLES),
    )
    assert source.records() == local
    assert source.records(example_ids=["e2"]) == [r for r in local if r.example_id == "e2"]
    assert ("POST", "/runs/query") in standin.requests


def test_train_reads_its_backward_records_back_from_langsmith(standin, tmp_path):
    def run(trace_source: str, name: str) -> ann.TrainResult:
        return ann.train(
            solver_spec(),
            train=data(4, "t"),
            val=data(4, "v"),
            metric="numeric_match",
            models=executor(),
            optimizer_model=optimizer("Add one. MAGIC"),
            epochs=1,
            batch_size=4,
            run_dir=tmp_path / name,
            progress=False,
            trace_source=trace_source,  # type: ignore[arg-type]
            config=ann.OptimizerConfig(
                bootstrap_demos=False, **REPAIRER_PATH, early_rejection=False
            ),
        )

    local = run("local", "run-local")
    queries = standin.requests.count(("POST", "/runs/query"))
    assert queries == 0
    remote = run("langsmith", "run-ls")
    assert standin.requests.count(("POST", "/runs/query")) > 0
    assert [h["trace_source"] for h in remote.history] == ["langsmith"]
    assert [h["trace_source"] for h in local.history] == ["local"]
    # the same evidence reached the critic either way
    assert remote.best_score == local.best_score == 1.0

    def step_records(name: str) -> list[str]:
        lines = (tmp_path / name / "records" / "step-0000.jsonl").read_text().splitlines()
        return sorted(lines)

    assert step_records("run-ls") == step_records("run-local") and step_records("run-ls")
    # project named after the run directory; every run tagged with the run id from run.json
    meta = json.loads((tmp_path / "run-ls" / "run.json").read_text())
    runs = standin.runs_in("run-ls")
    assert runs and all(_meta(r)["ann_run_id"] == meta["run_id"] for r in runs)
    phases = {_meta(r).get("ann_phase") for r in runs}
    assert {"baseline", "forward", "dry_run", "validate", "optimizer"} <= phases
    forward_roots = [
        r for r in runs if r.get("parent_run_id") is None and _meta(r)["ann_phase"] == "forward"
    ]
    assert len(forward_roots) == 4  # examples stay top-level runs, not the optimizer's children
    assert all(
        _meta(r)["ann_epoch"] == 0 and _meta(r)["ann_step"] == 0 and _meta(r)["ann_example_id"]
        for r in forward_roots
    )
    validate = [r for r in runs if _meta(r).get("ann_phase") == "validate"]
    assert validate and {_meta(r)["ann_candidate"] for r in validate} == {"0.0"}
    assert any(r.get("name") == "global_critic" for r in runs)  # the optimizer graph is traced


def test_trace_source_langsmith_without_langsmith_is_a_clear_error(standin_unconfigured, tmp_path):
    with pytest.raises(LangSmithError, match="LANGSMITH_API_KEY"):
        ann.train(
            solver_spec(),
            train=data(2, "t"),
            val=data(2, "v"),
            metric="numeric_match",
            models=executor(),
            optimizer_model=optimizer("x"),
            run_dir=tmp_path / "r",
            progress=False,
            trace_source="langsmith",
        )
    result = CliRunner().invoke(
        app,
        [
            *["train", "graphs/sentiment.yaml", "--train", "x.jsonl", "--val", "x.jsonl"],
            *["--trace-source", "langsmith"],
        ],
    )
    assert result.exit_code == 2 and "LANGSMITH_API_KEY" in result.output
    assert standin_unconfigured.requests == []


# -- datasets and experiments ------------------------------------------------------------------

QA = [
    {"inputs": {"question": "What is 1+2?", "lang": "en"}, "outputs": {"answer": "3"}},
    {"inputs": {"question": "What is 2+2?", "lang": "en"}, "outputs": {"answer": "4"}},
    {
        "inputs": {"question": "What is 3+3?", "lang": "en"},
        "outputs": {"answer": "6"},
        "split": "test",
    },
]


def test_langsmith_dataset_field_mapping(standin):
    ds_id = standin.add_dataset("qa", QA)
    rows = ann.load_dataset("langsmith:qa")
    assert [r["input"] for r in rows] == [e["inputs"]["question"] for e in QA]
    assert [r["target"] for r in rows] == ["3", "4", "6"]
    assert all(r["lang"] == "en" and r["langsmith_dataset_id"] == ds_id for r in rows)
    assert [r["id"] for r in rows] == [r["langsmith_example_id"] for r in rows]
    assert set(standin.examples) == {r["id"] for r in rows}
    assert [r["target"] for r in ann.load_dataset("langsmith:qa?split=test")] == ["6"]
    standin.add_dataset(
        "custom",
        [{"inputs": {"q": "hi", "n": 1}, "outputs": {"gold": "yo", "why": "greeting"}}],
    )
    (row,) = load_langsmith_dataset("custom", target_key="gold")
    assert (row["input"], row["target"]) == ("hi", "yo")  # first string field when no known key
    (row,) = ann.load_dataset("langsmith:custom")
    assert row["target"] == {"gold": "yo", "why": "greeting"}  # several outputs: all of them
    with pytest.raises(ValueError, match="no input field 'nope'"):
        ann.load_dataset("langsmith:custom?input=nope")
    with pytest.raises(ValueError, match="missing"):
        ann.load_dataset("langsmith:missing")
    with pytest.raises(ValueError, match="unknown option"):
        ann.load_dataset("langsmith:qa?colour=red")


def test_cli_train_accepts_langsmith_datasets(standin, tmp_path):
    standin.add_dataset("qa", QA)
    result = CliRunner().invoke(
        app,
        [
            *["train", "graphs/sentiment.yaml", "--train", "langsmith:qa", "--val", "langsmith:qa"],
            *["--epochs", "2", "--batch-size", "2", "--dry-run", "--json"],
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps"] == 4  # 3 examples -> 2 batches, 2 epochs
    bad = CliRunner().invoke(
        app, ["train", "graphs/sentiment.yaml", "--train", "langsmith:nope", "--val", "x.jsonl"]
    )
    assert bad.exit_code == 2 and "--train" in bad.output and "nope" in bad.output


def test_evaluate_records_a_langsmith_experiment(standin):
    ds_id = standin.add_dataset("qa", QA)
    report = ann.evaluate(
        three_layer(),
        "langsmith:qa",
        graded,
        models=scripted(),
        progress=False,
        experiment="ann-exp-1",
    )
    session = standin.session_named("ann-exp-1")
    assert session and session["reference_dataset_id"] == ds_id and session["end_time"]
    roots = [r for r in standin.runs_in("ann-exp-1") if r.get("parent_run_id") is None]
    assert {r["reference_example_id"] for r in roots} == set(standin.examples)
    by_example = {r["reference_example_id"]: r["id"] for r in roots}
    feedback = {f["run_id"]: f["score"] for f in standin.feedback}
    assert {by_example[r.id]: r.score for r in report.results} == feedback
    assert sorted(feedback.values()) == [0.0, 0.0, 1.0]  # the writer always answers 3
    with pytest.raises(LangSmithError, match="langsmith:<name>"):
        ann.evaluate(three_layer(), EXAMPLES, graded, models=scripted(), experiment="x")


# -- LangSmith not configured: nothing leaves the process -------------------------------------


@pytest.mark.parametrize("key", [None, "test-key"])  # a key alone does not turn tracing on
def test_without_langsmith_configured_nothing_is_sent_and_nothing_warns(
    standin_unconfigured, tmp_path, key
):
    if key:
        _set_env({"LANGSMITH_API_KEY": key})
    assert not langsmith_configured()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = ann.evaluate(
            three_layer(), EXAMPLES, graded, models=scripted(), progress=False, prices=FREE
        )
        result = ann.train(
            solver_spec(),
            train=data(2, "t"),
            val=data(2, "v"),
            metric="numeric_match",
            models=executor(),
            optimizer_model=optimizer("Add one. MAGIC"),
            epochs=1,
            batch_size=2,
            run_dir=tmp_path / "r",
            progress=False,
            prices=FREE,
        )
        model = ScriptedChatModel(default="Answer: 3")
        ann.register_model("test-langsmith-off", lambda: model, replace=True)
        cli = CliRunner().invoke(
            app, ["run", "graphs/sentiment.yaml", "-i", "hi", "-m", "test-langsmith-off", "--json"]
        )
    assert cli.exit_code == 0, cli.output
    assert report.run_id is None and report.langsmith_project is None
    assert [h["trace_source"] for h in result.history] == ["local"] * len(result.history)
    assert "langsmith_project" not in json.loads((tmp_path / "r" / "run.json").read_text())
    assert standin_unconfigured.requests == []


def test_ann_run_traces_to_its_own_project(standin):
    model = ScriptedChatModel(default="positive")
    ann.register_model("test-langsmith-run", lambda: model, replace=True)
    result = CliRunner().invoke(
        app, ["run", "graphs/sentiment.yaml", "-i", "I love it", "-m", "test-langsmith-run"]
    )
    assert result.exit_code == 0, result.output
    projects = [s for s in standin.sessions.values() if s["name"].startswith("ann-")]
    assert len(projects) == 1 and projects[0]["name"] in result.output.replace("\n", "")
    runs = standin.runs_in(projects[0]["name"])
    spec = ann.load_spec(Path("graphs/sentiment.yaml"))
    llm = [r for r in runs if r.get("run_type") in ("llm", "chat_model")]
    assert len(llm) == len(model.calls) > 0
    assert all(_meta(r)["ann_spec"] == spec.fingerprint for r in runs)
    assert len({_meta(r)["ann_run_id"] for r in runs}) == 1


def test_cli_eval_records_a_langsmith_experiment(standin, tmp_path):
    ds_id = standin.add_dataset("qa", QA)
    ann.register_model("test-langsmith-eval", lambda: ScriptedChatModel(default="3"), replace=True)
    result = CliRunner().invoke(
        app,
        [
            *["eval", "graphs/cities.yaml", "--dataset", "langsmith:qa", "--metric", "exact_match"],
            *["-m", "test-langsmith-eval", "--langsmith-experiment", "cli-exp", "--json"],
            *["--out", str(tmp_path / "out")],
        ],
    )
    assert result.exit_code == 0, result.output
    session = standin.session_named("cli-exp")
    assert session and session["reference_dataset_id"] == ds_id
    roots = [r for r in standin.runs_in("cli-exp") if r.get("parent_run_id") is None]
    assert {r["reference_example_id"] for r in roots} == set(standin.examples)
    assert sorted(f["score"] for f in standin.feedback) == [0.0, 0.0, 1.0]
    # an experiment needs a LangSmith dataset: a local file is a one-line error, exit 2
    local = tmp_path / "rows.jsonl"
    local.write_text('{"input": "What is 1+2?", "target": "3"}\n')
    bad = CliRunner().invoke(
        app,
        [
            *["eval", "graphs/cities.yaml", "--dataset", str(local), "-m", "test-langsmith-eval"],
            *["--langsmith-experiment", "x", "--out", str(tmp_path / "bad")],
        ],
    )
    assert bad.exit_code == 2 and "langsmith:<name>" in bad.output


class _Halt(BaseException):
    """Stands for an interrupt that ends an evaluation part-way (not caught per example)."""


def test_feedback_goes_out_as_each_example_finishes_so_an_interrupted_run_keeps_it(standin):
    model = ScriptedChatModel(rules=[(r"halt", _Halt())], default="Answer: 3")
    examples = [EXAMPLES[0], {"id": "e9", "input": "halt", "target": "3"}]
    with pytest.raises(_Halt):
        ann.evaluate(three_layer(), examples, graded, models=model, concurrency=1, progress=False)
    assert [(f["key"], f["score"], f["comment"]) for f in standin.feedback] == [
        ("graded", 1.0, "right")
    ]
