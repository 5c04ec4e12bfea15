"""evals.baselines and evals.compare with scripted models and a toy benchmark (offline, fast).

A marked test at the end runs the real embedded model on 3 examples per method.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.cache import SQLiteLLMCache, current_sample
from ann_langgraph.testing import ScriptedChatModel, tool_call_message
from evals import Benchmark, get_benchmark, register_benchmark
from evals.base import code_version
from evals.baselines import (
    REASONED_CODE_MAX_TOKENS,
    TOOL_VOTE,
    baseline_spec,
    cot_sc_spec,
    cot_spec,
    io_spec,
)
from evals.compare import CompareConfig, app, config_command, run_compare
from evals.report import read_jsonl

TOY_SPEC = """\
name: toy-ann
description: Add two numbers.
answer_format: last_number
layers:
  - name: solve
    aggregator: sequential_cot
    agents:
      - {id: adder, role: Toy adder, prompt: Add the numbers.}
"""

CRITIC = {"summary": "wrong sums", "blame": [{"layer": "solve", "reason": "vague prompt"}]}
PATCH = {
    "rationale": "be explicit",
    "ops": [
        {
            "op": "set_prompt",
            "layer": "solve",
            "agent": "adder",
            "prompt": "Add the numbers. EXPLICIT",
        }
    ],
}


def _rows(split: str, count: int) -> list[dict[str, Any]]:
    base = {"dev": 0, "train": 100, "val": 200}[split]
    return [
        {
            "id": f"{split}-{i}",
            "input": f"What is {base + i}+{i + 1}?",
            "target": base + 2 * i + 1,
            "kind": "even" if i % 2 == 0 else "odd",
        }
        for i in range(count)
    ]


def _has_answer() -> Any:
    return lambda example, output: 1.0 if "Answer:" in output else 0.0


def _toy(tmp_path: Path, *, name: str = "toy-add", tools: tuple[str, ...] = ()) -> Benchmark:
    spec_path = tmp_path / f"{name}.yaml"
    spec_path.write_text(TOY_SPEC, encoding="utf-8")
    splits = {"dev": "4 dev sums", "train": "4 train sums", "val": "2 val sums"}
    if name.endswith("no-train"):
        splits = {"dev": "4 dev sums"}
    bench = Benchmark(
        name=name,
        description="Add two numbers.",
        spec=str(spec_path),  # absolute: REPO_ROOT / abs == abs
        answer_format="last_number",
        splits=splits,
        loader=lambda split, data_dir: _rows(split, {"dev": 4, "train": 4, "val": 2}[split]),
        metric_factory=lambda: ann.get_metric("numeric_match"),
        instruction="End with 'Answer: <number>'.",
        breakdown=("kind",),
        extra_metrics={"has_answer": _has_answer},
        tools=tools,
    )
    register_benchmark(bench, replace=True)
    return bench


def _sum(text: str) -> int | None:
    match = re.findall(r"What is (\d+)\+(\d+)\?", text)
    return int(match[-1][0]) + int(match[-1][1]) if match else None


def _respond(messages: list[Any], **kwargs: Any) -> Any:
    """IO and the untrained toy adder answer 0; CoT answers right; sampled voters 0 and 1
    (temperature set) answer 99, the other three right; the critic/repairer patch the adder."""
    system, text = str(messages[0].content), str(messages[-1].content)
    if "global critic" in system:
        return CRITIC
    if "repair one layer" in system:
        return PATCH
    right = _sum(text)
    if "Toy adder" in system:
        return f"Answer: {right}" if "EXPLICIT" in system else "I think Answer: 0"
    if "directly" in system:
        return "Answer: 0"
    if "step by step" in system:
        if kwargs.get("temperature") is not None and current_sample.get() < 2:
            return "Hmm. Answer: 99"
        return f"First add them. Answer: {right}"
    return "?"


@pytest.fixture
def scripted() -> ScriptedChatModel:
    model = ScriptedChatModel(respond=_respond, model_name="scripted-compare")
    ann.register_model("compare-scripted", lambda: model, replace=True)
    return model


# -- baselines -----------------------------------------------------------------------------


def test_baseline_specs_follow_the_benchmark(tmp_path):
    bench = _toy(tmp_path)
    io, cot, sc = io_spec(bench), cot_spec(bench), cot_sc_spec(bench, samples=5, temperature=0.7)
    for spec in (io, cot, sc):
        assert spec.answer_format == "last_number"
        assert spec.description == "Add two numbers."
        assert all("Answer: <number>" in a.prompt for a in spec.layers[0].agents)
        assert len(spec.layers) == 1
    assert io.layers[0].aggregator == cot.layers[0].aggregator == "sequential_cot"
    assert "step by step" in cot.layers[0].agents[0].prompt
    assert "step by step" not in io.layers[0].agents[0].prompt
    assert sc.layers[0].aggregator == "parallel_vote"
    assert [a.temperature for a in sc.layers[0].agents] == [0.7] * 5
    assert len({a.prompt for a in sc.layers[0].agents}) == 1
    with pytest.raises(KeyError, match="unknown baseline"):
        baseline_spec("tot", bench)
    # the model's own cap for number answers; room to reason before a whole function for code
    assert {a.max_tokens for s in (io, cot, sc) for a in s.layers[0].agents} == {None}
    code = get_benchmark("humaneval")
    assert io_spec(code).layers[0].agents[0].max_tokens is None  # no reasoning to fit
    assert cot_spec(code).layers[0].agents[0].max_tokens == REASONED_CODE_MAX_TOKENS == 1024
    assert {a.max_tokens for a in cot_sc_spec(code).layers[0].agents} == {1024}

    tooled = _toy(tmp_path, name="toy-tools", tools=("calculator",))
    assert io_spec(tooled).layers[0].aggregator == "tool_pipeline"
    assert io_spec(tooled).layers[0].tools == ["calculator"]
    assert "calculator" in cot_spec(tooled).layers[0].agents[0].prompt
    tool_sc = cot_sc_spec(tooled, samples=3)
    assert tool_sc.layers[0].aggregator == TOOL_VOTE and tool_sc.layers[0].tools == ["calculator"]
    # The saved spec reads back (the tool_vote aggregator is registered by evals.baselines).
    ann.save_spec(tool_sc, tmp_path / "sc.yaml")
    assert ann.load_spec(tmp_path / "sc.yaml") == tool_sc


def test_self_consistency_votes_over_distinct_cached_samples(tmp_path, scripted):
    bench = _toy(tmp_path)
    spec = cot_sc_spec(bench, samples=5)
    rows = bench.load("dev", data_dir=tmp_path)
    cache = SQLiteLLMCache(tmp_path / "c.sqlite")
    report = ann.evaluate(spec, rows, bench.metric(), models=scripted, cache=cache, progress=False)
    assert report.mean == 1.0  # 3 right samples outvote 2 wrong ones
    assert report.calls == 5 * len(rows) and report.cached_calls == 0
    votes = {r.output for r in report.results}
    assert all("Answer: 99" not in v for v in votes)
    first_calls = len(scripted.calls)
    again = ann.evaluate(spec, rows, bench.metric(), models=scripted, cache=cache, progress=False)
    cache.close()
    assert len(scripted.calls) == first_calls  # all five samples per example replayed
    assert again.cached_calls == again.calls == 5 * len(rows)
    assert [r.output for r in again.results] == [r.output for r in report.results]


def test_tool_vote_runs_a_tool_loop_per_voter(tmp_path):
    bench = _toy(tmp_path, name="toy-tools", tools=("calculator",))
    spec = cot_sc_spec(bench, samples=3)

    def respond(messages, **kwargs):
        last = messages[-1]
        if last.type == "tool":
            return f"The tool says {last.content}. Answer: {last.content}"
        a, b = re.findall(r"What is (\d+)\+(\d+)\?", str(messages[-1].content))[-1]
        if current_sample.get() == 0:
            return "Answer: 7"  # one voter skips the tool and is wrong
        return tool_call_message("calculator", {"expression": f"{a}+{b}"})

    model = ScriptedChatModel(respond=respond)
    rows = bench.load("dev", data_dir=tmp_path, limit=2)
    report = ann.evaluate(spec, rows, bench.metric(), models=model, progress=False)
    assert report.mean == 1.0, [r.output for r in report.results]
    tools = [r for r in report.records if r.kind == "tool"]
    assert len(tools) == 2 * len(rows)  # voters 1 and 2 each called the calculator once


# -- compare -------------------------------------------------------------------------------


def _config(tmp_path: Path, bench: str = "toy-add", **kw: Any) -> CompareConfig:
    base: dict[str, Any] = {
        "benchmark": bench,
        "model": "compare-scripted",
        "limit": 4,
        "data_dir": str(tmp_path),
        "train_limit": 4,
        "val_limit": 2,
        "epochs": 1,
        "batch_size": 4,
        "concurrency": 2,
    }
    return CompareConfig(**{**base, **kw})


def test_compare_runs_every_method_on_the_same_examples(tmp_path, scripted):
    _toy(tmp_path)
    out = tmp_path / "out"
    result = run_compare(_config(tmp_path), out_dir=out, progress=False, command="test")
    by = {s.method: s for s in result.summaries}
    assert list(by) == ["io", "cot", "cot-sc", "ann", "ann-trained"]
    assert all(s.status == "ok" and s.n == 4 for s in by.values()), by
    assert (by["io"].mean, by["cot"].mean, by["cot-sc"].mean) == (0.0, 1.0, 1.0)
    assert by["ann"].mean == 0.0 and by["ann-trained"].mean == 1.0
    assert by["cot-sc"].calls == 5 * by["cot"].calls == 20
    assert by["cot-sc"].tokens_per_example > by["cot"].tokens_per_example > 0
    assert by["io"].extra_metrics == {"has_answer": 1.0}
    assert set(by["cot"].breakdown["kind"]) == {"even", "odd"}
    assert by["cot"].breakdown["kind"]["even"].n == 2
    training = by["ann-trained"].details["training"]
    assert training["best_score"] == 1.0 and training["baseline_score"] == 0.0
    assert all(s.details["code"] == code_version() for s in by.values())  # which code ran
    assert training["train_n"] == 4 and training["val_n"] == 2 and training["calls"] > 0
    trained_spec = ann.load_spec(out / "methods" / "ann-trained" / "spec.yaml")
    assert "EXPLICIT" in trained_spec.layer("solve").agents[0].prompt
    assert (out / "methods" / "ann-trained" / "run" / "best.yaml").exists()
    ids = None
    for method in by:
        rows = read_jsonl(out / "methods" / method / "results.jsonl")
        assert ids is None or [r["id"] for r in rows] == ids  # same examples, same order
        ids = [r["id"] for r in rows]
        assert all(r["method"] == method and "has_answer" in r["extra"] for r in rows)
    data = json.loads((out / "compare.json").read_text())
    assert data["n"] == 4 and data["split"] == "dev"
    assert data["facts"]["model"] == "compare-scripted" and data["facts"]["command"] == "test"
    assert data["config"]["seed"] == 0 and [m["method"] for m in data["methods"]] == list(by)
    md = (out / "compare.md").read_text()
    assert "| method | accuracy | 95% CI |" in md
    assert "| cot-sc | 100.0% |" in md and "Accuracy by kind" in md
    assert "Training (one-time cost" in md
    # the trained spec against its starter, paired on the same 4 examples: 4 wins, p = 1/16
    tests = {(t["better"], t["than"]): t for t in data["paired_tests"]}
    trained_vs_start = tests[("ann-trained", "ann")]
    assert (trained_vs_start["wins"], trained_vs_start["losses"], trained_vs_start["n"]) == (
        4,
        0,
        4,
    )
    # two-sided by default (2 * 1/16), Holm across the table: the smallest p times the count
    assert trained_vs_start["p_value"] == pytest.approx(2 / 16)
    assert trained_vs_start["alternative"] == "two-sided"
    assert trained_vs_start["p_holm"] == pytest.approx(min(1.0, len(tests) * 2 / 16))
    assert tests[("ann-trained", "cot-sc")]["ties"] == 4  # both perfect
    assert tests[("ann-trained", "cot-sc")]["p_holm"] == 1.0
    assert "ann-trained vs ann: 4 better, 0 worse, 0 the same (n=4); p = 0.125; Holm p = " in md
    assert "(two-sided; Holm-adjusted across the table's" in md
    # the methods on the accuracy/cost plane (issue 28): a PNG the table links
    assert (out / "compare_front.png").read_bytes()[:4] == b"\x89PNG"
    assert "![accuracy and tokens per example](compare_front.png)" in md


def test_compare_reuses_finished_methods_and_records_failures(tmp_path, scripted):
    _toy(tmp_path, name="toy-no-train")
    out = tmp_path / "out"
    config = _config(tmp_path, bench="toy-no-train", methods=["io", "ann-trained", "cot"])
    first = run_compare(config, out_dir=out, progress=False)
    by = {s.method: s for s in first.summaries}
    assert by["ann-trained"].status == "error" and "no split 'train'" in by["ann-trained"].error
    assert by["io"].status == by["cot"].status == "ok"  # the failure lost nothing
    assert "| ann-trained | error |" in (out / "compare.md").read_text()
    command = json.loads((out / "compare.json").read_text())["facts"]["command"]
    assert command.startswith(
        "python -m evals.compare --benchmark toy-no-train --model compare-scripted --limit 4"
    )
    assert "--methods io,ann-trained,cot" in command and command.endswith(f"--out {out}")
    calls = len(scripted.calls)
    log = Console(file=io.StringIO(), width=200)
    again = run_compare(config, out_dir=out, progress=False, console=log)
    assert len(scripted.calls) == calls  # io and cot reused from their result files
    printed = log.file.getvalue()
    assert "io: 0.0%" in printed and printed.count("(reused from an earlier run)") == 2
    assert [s.model_dump() for s in again.summaries if s.status == "ok"] == [
        s.model_dump() for s in first.summaries if s.status == "ok"
    ]
    # Other options (more samples) change the key: that method runs again.
    more = run_compare(
        config.model_copy(update={"methods": ["cot-sc"], "samples": 3}),
        out_dir=out,
        progress=False,
    )
    assert more.summaries[-1].calls == 12 and len(scripted.calls) == calls + 12
    # The table keeps what earlier commands finished here (io, cot; not the failed
    # ann-trained), ahead of this command's row, and says where those rows came from.
    assert [(s.method, s.status) for s in more.summaries] == [
        ("io", "ok"),
        ("cot", "ok"),
        ("cot-sc", "ok"),
    ]
    assert more.summaries[0].model_dump() == by["io"].model_dump()
    md = (out / "compare.md").read_text()
    assert "| io | 0.0% |" in md and "| cot-sc |" in md and "| ann-trained |" not in md
    assert "**earlier rows**: io, cot: finished by earlier commands" in md
    facts = json.loads((out / "compare.json").read_text())["facts"]
    assert facts["earlier rows"].startswith("io, cot:")
    # ... but only for the same options: with 5 samples the 3-sample cot-sc row is not shown.
    io_only = run_compare(
        config.model_copy(update={"methods": ["io"]}), out_dir=out, progress=False
    )
    assert [s.method for s in io_only.summaries] == ["cot", "io"]
    assert len(scripted.calls) == calls + 12  # nothing ran again


def test_compare_records_a_missing_dspy_extra_as_an_error_row(tmp_path, scripted, monkeypatch):
    from evals import dspy_baseline

    def unavailable():
        raise dspy_baseline.DSPyUnavailable("the DSPy baseline needs the dspy extra")

    monkeypatch.setattr(dspy_baseline, "import_dspy", unavailable)
    _toy(tmp_path)
    result = run_compare(
        _config(tmp_path, methods=["dspy", "io"]), out_dir=tmp_path / "o", progress=False
    )
    dspy_row, io_row = result.summaries
    assert dspy_row.status == "error" and "needs the dspy extra" in (dspy_row.error or "")
    assert io_row.status == "ok" and io_row.n == 4


def test_compare_command_line(tmp_path, scripted):
    _toy(tmp_path)
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["--benchmark", "toy-add", "--model", "compare-scripted", "--limit", "2"]
    args += ["--data-dir", str(tmp_path), "--methods", "io,cot", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [m["method"] for m in data["methods"]] == ["io", "cot"] and data["n"] == 2
    bad = runner.invoke(app, ["--benchmark", "nope", "--model", "compare-scripted"])
    assert bad.exit_code == 2 and "unknown benchmark 'nope'" in bad.output
    bad = runner.invoke(app, ["--benchmark", "toy-add", "--methods", "io,tot"])
    assert bad.exit_code == 2 and "unknown method 'tot'" in bad.output
    bad = runner.invoke(
        app, ["--benchmark", "toy-add", "--data-dir", str(tmp_path), "--split", "test"]
    )
    assert bad.exit_code == 2 and "no split 'test'" in bad.output


# -- the embedded model ----------------------------------------------------------------------


def _sentiment_benchmark() -> Benchmark:
    """The shipped sentiment task as a benchmark: light enough for the embedded model in CI."""
    root = Path(__file__).resolve().parent.parent / "data" / "sentiment"

    def load(split: str, data_dir: Any) -> list[dict[str, Any]]:
        return ann.load_dataset(root / f"{split}.jsonl")

    return Benchmark(
        name="sentiment-ci",
        description="Decide whether a short review is positive or negative.",
        spec="graphs/sentiment.yaml",
        answer_format="last_line",
        splits={
            "train": "data/sentiment/train.jsonl",
            "val": "data/sentiment/val.jsonl",
            "test": "data/sentiment/test.jsonl",
        },
        loader=load,
        metric_factory=lambda: ann.get_metric("label_match"),
        instruction="End with one line: positive or negative.",
        default_eval_split="test",
        needs_data_dir=False,
    )


@pytest.mark.local_model
def test_compare_on_the_embedded_model_three_examples(tmp_path):
    """Every method runs on the real embedded model, on the same 3 examples (mechanics only)."""
    register_benchmark(_sentiment_benchmark(), replace=True)
    out = tmp_path / "cmp"
    config = CompareConfig(
        benchmark="sentiment-ci",
        model="local",
        limit=3,
        train_limit=2,
        val_limit=2,
        epochs=1,
        batch_size=2,
        samples=3,
        concurrency=1,
    )
    result = run_compare(config, out_dir=out, progress=False)
    by = {s.method: s for s in result.summaries}
    assert list(by) == ["io", "cot", "cot-sc", "ann", "ann-trained"]
    for method, s in by.items():
        assert s.status == "ok", (method, s.error)
        assert s.n == 3 and 0.0 <= s.mean <= 1.0
        assert s.calls >= 3 and s.tokens_per_example > 0 and s.cost_usd == 0.0
        assert len(read_jsonl(out / "methods" / method / "results.jsonl")) == 3
    assert by["cot-sc"].calls == 3 * by["cot"].calls
    assert (out / "compare.md").exists() and (out / "compare.json").exists()
    run_dir = out / "methods" / "ann-trained" / "run"
    history = read_jsonl(run_dir / "history.jsonl")
    assert len(history) == 1 and (run_dir / "best.yaml").exists()  # 2 train examples / batch 2


def test_the_dspy_optimizer_defaults_to_one_the_model_can_run():
    """MIPROv2's instruction proposer crashes on the embedded model's unparseable answers, so
    ``local`` defaults to bootstrap-rs; an explicit choice always wins."""
    local = CompareConfig(benchmark="gsm8k", model="local")
    hosted = CompareConfig(benchmark="gsm8k", model="openai:gpt-4o-mini")
    assert local.dspy_optimizer_for_model() == "bootstrap-rs"
    assert hosted.dspy_optimizer_for_model() == "miprov2"
    chosen = CompareConfig(benchmark="gsm8k", model="local", dspy_optimizer="copro")
    assert chosen.dspy_optimizer_for_model() == "copro"
    assert "--dspy-optimizer copro" in config_command(chosen, Path("out"))
    assert "--dspy-optimizer" not in config_command(local, Path("out"))


def test_dspy_gets_the_engines_slots_on_local_like_the_other_rows(monkeypatch):
    from ann_langgraph.local import registry
    from evals.compare_methods import dspy_concurrency

    monkeypatch.setattr(registry, "planned_slots", lambda: 3)
    assert dspy_concurrency(CompareConfig(benchmark="gsm8k", model="local")) == 3
    assert dspy_concurrency(CompareConfig(benchmark="gsm8k", model="openai:gpt-4o-mini")) == 4
    told = CompareConfig(benchmark="gsm8k", model="local", concurrency=2)
    assert dspy_concurrency(told) == 2


def test_the_embedded_model_is_keyed_by_its_file(tmp_path, monkeypatch):
    """'local' meant SmolLM2 until it meant the 1.5B model: a comparison folder must not reuse
    one's rows for the other, so runs on local strings are keyed and labelled by the GGUF."""
    from evals.compare_methods import MethodRunner

    bench = _toy(tmp_path)

    def name_for(env: str) -> str:
        monkeypatch.setenv("ANN_LOCAL_MODEL", env)
        cfg = CompareConfig(benchmark=bench.name, model="local", cache=False)
        runner = MethodRunner(cfg, bench, "dev", _rows("dev", 2), tmp_path, None, False, Console())
        return runner.model_name

    tiny, capable = name_for("smollm2"), name_for("qwen2.5-coder-1.5b")
    assert tiny.startswith("local (") and "SmolLM2" in tiny
    assert "qwen2.5-coder-1.5b" in capable and tiny != capable


def test_a_stale_training_run_of_other_options_is_kept_aside_and_training_restarts(
    tmp_path, scripted
):
    """A killed ann-trained run left its run directory; the next command changes the options
    (fewer validation rows), so the run cannot resume: it is moved aside, not an error row."""
    _toy(tmp_path)
    out = tmp_path / "out"
    config = _config(tmp_path, methods=["ann-trained"])
    first = run_compare(config, out_dir=out, progress=False)
    assert first.summaries[0].status == "ok"
    method = out / "methods" / "ann-trained"
    (method / "summary.json").unlink()  # as if killed after training, before its row
    log = Console(file=io.StringIO(), width=300)
    again = run_compare(
        config.model_copy(update={"val_limit": 1}), out_dir=out, progress=False, console=log
    )
    (row,) = again.summaries
    assert row.status == "ok", row.error
    assert row.details["training"]["val_n"] == 1
    (stale,) = method.glob("run.stale-*")
    assert (
        json.loads((stale / "run.json").read_text())["val"]
        != json.loads((method / "run" / "run.json").read_text())["val"]
    )
    assert "cannot resume" in log.file.getvalue() and "training afresh" in log.file.getvalue()


def test_code_version_names_the_checkout_commit_or_else_the_installed_version(monkeypatch):
    import subprocess

    import evals.base

    head = subprocess.run(
        ["git", "-C", str(evals.base.REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
    )
    if head.returncode == 0:  # a checkout (CI clones one)
        assert code_version().removesuffix("+dirty") == head.stdout.strip()

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(evals.base.subprocess, "run", no_git)
    assert code_version().startswith("ann-langgraph ")


def test_compare_takes_your_own_starting_spec(tmp_path, scripted):
    """--spec replaces the benchmark's starter for the ann and ann-trained rows only; the run is
    keyed by that spec, so switching specs in one folder never reuses the other's rows."""
    _toy(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text(TOY_SPEC.replace("Add the numbers.", "Add the numbers. EXPLICIT"))
    out = tmp_path / "out"
    own = run_compare(
        _config(tmp_path, methods=["ann", "io"], spec=str(mine)), out_dir=out, progress=False
    )
    by = {s.method: s for s in own.summaries}
    assert by["ann"].mean == 1.0 and by["io"].mean == 0.0  # the toy adder answers right now
    assert by["ann"].details["spec_path"] == str(mine)
    saved = ann.load_spec(out / "methods" / "ann" / "spec.yaml")
    assert saved.fingerprint == ann.load_spec(mine).fingerprint
    default = run_compare(_config(tmp_path, methods=["ann"]), out_dir=out, progress=False)
    assert default.summaries[-1].method == "ann" and default.summaries[-1].mean == 0.0
    command = json.loads((out / "compare.json").read_text())["facts"]["command"]
    assert "--spec" not in command
    assert f"--spec {mine}" in config_command(_config(tmp_path, spec=str(mine)), out)
    missing = CliRunner().invoke(
        app, ["--benchmark", "toy-add", "--spec", str(tmp_path / "nope.yaml")]
    )
    assert missing.exit_code == 2 and "nope.yaml" in missing.output


def test_validation_can_come_from_evaluation_rows_it_does_not_score(tmp_path, scripted):
    # evaluation scores dev rows 0-1; validation may use dev rows 2-3, never 0-1
    _toy(tmp_path)
    apart = run_compare(
        _config(tmp_path, limit=2, methods=["ann-trained"], val_split="dev[2:4]"),
        out_dir=tmp_path / "apart",
        progress=False,
    ).summaries[0]
    assert apart.status == "ok", apart.error
    assert apart.details["training"]["val_n"] == 2 and apart.mean == 1.0
    overlapping = run_compare(
        _config(tmp_path, limit=2, methods=["ann-trained"], val_split="dev[1:3]"),
        out_dir=tmp_path / "overlapping",
        progress=False,
    ).summaries[0]
    assert overlapping.status == "error"
    assert "shares 1 rows with the evaluation split 'dev'" in (overlapping.error or "")


def test_ablation_rows_train_with_only_their_levers(tmp_path, scripted):
    """ann-textual: the repairer's patch, no demos; ann-demos: no repairer call at all. Each
    row records its rollouts, and the rollout budget reaches the optimizer."""
    _toy(tmp_path)
    out = tmp_path / "out"
    config = _config(tmp_path, methods=["ann-textual", "ann-demos"], rollout_budget=500)
    result = run_compare(config, out_dir=out, progress=False)
    by = {s.method: s for s in result.summaries}
    textual, demos = by["ann-textual"], by["ann-demos"]
    assert textual.status == demos.status == "ok"
    # the textual gradient fixes the toy adder; demos alone cannot (its answers are all wrong)
    assert textual.mean == 1.0 and demos.mean == 0.0
    for s in (textual, demos):
        training = s.details["training"]
        assert training["rollouts"] > 0 and training["rollout_budget"] == 500
    run = json.loads((out / "methods" / "ann-demos" / "run" / "run.json").read_text())
    assert run["config"]["textual_patches"] is False and run["config"]["operators"] is False
    assert run["budget"]["max_rollouts"] == 500
    run = json.loads((out / "methods" / "ann-textual" / "run" / "run.json").read_text())
    assert run["config"]["bootstrap_demos"] is False and run["config"]["textual_patches"]
    repairs = [c for c in scripted.calls if "repair one layer" in str(c["messages"][0].content)]
    # one repairer call per step of the textual row only (none from ann-demos)
    assert 1 <= len(repairs) <= textual.details["training"]["steps"]
    # the two rows' keys differ: neither is reused for the other
    assert textual.details["key"] != demos.details["key"]


def test_a_rollout_budget_stops_training(tmp_path, scripted):
    _toy(tmp_path)
    out = tmp_path / "out"
    config = _config(tmp_path, methods=["ann-trained"], rollout_budget=2, epochs=3)
    (row,) = run_compare(config, out_dir=out, progress=False).summaries
    training = row.details["training"]
    assert "rollout budget reached" in training["stop_reason"]
    assert training["rollouts"] >= 2


def test_the_cost_objective_reaches_the_optimizer_and_keys_only_the_runs_that_ask(
    tmp_path, scripted
):
    from evals.compare_config import config_command
    from evals.compare_methods import train_options

    _toy(tmp_path)
    out = tmp_path / "out"
    config = _config(tmp_path, methods=["ann-trained"], objective="cost", margin=0.05)
    (row,) = run_compare(config, out_dir=out, progress=False).summaries
    assert row.status == "ok"
    run = json.loads((out / "methods" / "ann-trained" / "run" / "run.json").read_text())
    assert run["config"]["objective"] == "cost" and run["config"]["margin"] == 0.05
    command = config_command(config, out)
    assert "--objective cost --margin 0.05" in command and "--min-saving" not in command
    # an accuracy run's key is what it was before the option existed (records stay reusable)
    plain = train_options(_config(tmp_path, methods=["ann-trained"]))
    assert "objective" not in plain
    cost = train_options(config)
    assert cost["objective"] == ["cost", 0.05, 0.10]
