"""evaluate(): scores and intervals, concurrency, timeouts, errors, records, tokens, cost, cache."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import warnings
from pathlib import Path

import pytest

import ann_langgraph as ann
from ann_langgraph.cache import SQLiteLLMCache
from ann_langgraph.evaluate import (
    EvalReport,
    aevaluate,
    confidence_interval,
    default_concurrency,
    evaluate,
    load_dataset,
)
from ann_langgraph.metrics import Score, numeric_match
from ann_langgraph.pricing import cost_usd, price_for
from ann_langgraph.testing import ScriptedChatModel

from .conftest import agent, make_spec


def one_layer_spec() -> ann.GraphSpec:
    return make_spec(
        [{"name": "solve", "agents": [agent("s", "Solver")]}], answer_format="last_number"
    )


def two_layer_spec() -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "think", "agents": [agent("t", "Thinker")]},
            {"name": "answer", "agents": [agent("w", "Writer")]},
        ],
        answer_format="last_number",
    )


DATA = [
    {"id": "q1", "input": "question one", "target": "1"},
    {"id": "q2", "input": "question two", "target": "#### 2"},
    {"id": "q3", "input": "question three", "target": 3},
    {"id": "q4", "input": "question four", "target": "4"},
]

# Right for q1-q3, wrong for q4.
RULES = [
    (r"question one", "Answer: 1"),
    (r"question two", "Answer: 2"),
    (r"question three", "so it is 3"),
    (r"question four", "Answer: 5"),
]


def scripted(**kw) -> ScriptedChatModel:
    return ScriptedChatModel(rules=list(RULES), **kw)


def max_overlap(model: ScriptedChatModel, duration: float) -> int:
    """Largest number of calls in flight at once, from the calls' start timestamps."""
    starts = sorted(c["time"] for c in model.calls)
    return max(sum(1 for s in starts if s <= t < s + duration) for t in starts)


# -- scores and intervals --------------------------------------------------------------------


def test_mean_and_wilson_interval_on_a_known_dataset():
    report = evaluate(one_layer_spec(), DATA, "numeric_match", models=scripted(), progress=False)
    assert isinstance(report, EvalReport)
    assert report.n == 4 and report.mean == 0.75
    assert [r.id for r in report.results] == ["q1", "q2", "q3", "q4"]  # dataset order
    assert [r.score for r in report.results] == [1.0, 1.0, 1.0, 0.0]
    # Wilson 95%, by hand: p=3/4, n=4, z=1.96: center 0.62753, half-width 0.32689.
    assert report.ci_low == pytest.approx(0.30064, abs=1e-4)
    assert report.ci_high == pytest.approx(0.95441, abs=1e-4)
    wrong = report.results[3]
    assert wrong.output == "Answer: 5" and wrong.target == "4"
    assert wrong.feedback.startswith("expected 4, got 5")
    assert report.errors == 0 and report.metric == "numeric_match"


def test_confidence_interval_edges_and_bootstrap():
    assert confidence_interval([]) == (0.0, 1.0)
    low, high = confidence_interval([0.0] * 10)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-4)
    scores = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8, 0.6]
    low, high = confidence_interval(scores)
    mean = sum(scores) / len(scores)
    assert 0.1 < low < mean < high < 0.9
    assert confidence_interval(scores) == (low, high)  # fixed seed: reproducible
    assert confidence_interval([0.5] * 6) == (0.5, 0.5)


def test_fractional_metric_uses_the_bootstrap_interval():
    def half_credit(example, output):
        return 0.5 if example["id"] in ("q1", "q2") else 1.0

    report = evaluate(one_layer_spec(), DATA, half_credit, models=scripted(), progress=False)
    assert report.mean == 0.75
    assert (report.ci_low, report.ci_high) == confidence_interval([0.5, 0.5, 1.0, 1.0])
    assert 0.5 <= report.ci_low < 0.75 < report.ci_high <= 1.0


# -- concurrency and timeouts ----------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_concurrency_bounds_the_overlap(concurrency):
    model = scripted(sleep_s=0.25)
    report = evaluate(
        one_layer_spec(),
        DATA,
        "numeric_match",
        models=model,
        concurrency=concurrency,
        progress=False,
    )
    assert report.mean == 0.75 and len(model.calls) == 4
    assert max_overlap(model, 0.25) == concurrency


def test_default_concurrency_is_the_slots_only_when_every_model_is_the_embedded_one(
    monkeypatch,
):
    from ann_langgraph.local import LocalChatModel
    from ann_langgraph.local import registry as registry_module
    from ann_langgraph.spec import ModelConfig

    # the embedded server's slots (3 here), decided without starting or building anything
    monkeypatch.setattr(registry_module, "planned_slots", lambda n_ctx=0: 3)
    spec = one_layer_spec()  # its models table says default: local
    assert spec.models["default"] == "local"
    assert default_concurrency(spec) == 3
    assert default_concurrency(spec, "local") == 3
    assert default_concurrency(spec, ModelConfig(model="local")) == 3
    assert default_concurrency(spec, LocalChatModel()) == 3
    assert default_concurrency(spec, scripted()) == 8
    assert default_concurrency(spec, "openai:gpt-4o-mini", otherwise=4) == 4
    two = make_spec(
        [{"name": "solve", "agents": [agent("s", "Solver"), {**agent("t", "T"), "model": "big"}]}],
        models={"default": "local", "big": "openai:gpt-4o-mini"},
    )
    assert default_concurrency(two) == 8  # one provider model: examples may overlap
    assert default_concurrency(two, {"big": "local"}) == 3
    assert default_concurrency(scripted()) == 8  # a compiled graph / non-spec: cannot tell


def test_evaluate_without_concurrency_uses_the_default(monkeypatch):
    import ann_langgraph.executors.base as executors_base

    seen = []

    def fake_default(spec, models=None, *, otherwise=8):
        seen.append(models)
        return 2

    monkeypatch.setattr(executors_base, "default_concurrency", fake_default)
    model = scripted(sleep_s=0.25)
    report = evaluate(one_layer_spec(), DATA, "numeric_match", models=model, progress=False)
    assert report.mean == 0.75 and seen == [model]
    assert max_overlap(model, 0.25) == 2


def test_a_timed_out_example_is_a_failure_and_the_run_completes_without_waiting_for_it():
    release, finished = threading.Event(), threading.Event()

    def respond(messages, **kwargs):
        text = messages[-1].content
        if "slow" in text:
            release.wait(10)
            finished.set()
            return "Answer: 9"
        return "Answer: 1"

    data = [
        {"id": "fast1", "input": "fast one", "target": 1},
        {"id": "slow", "input": "slow one", "target": 9},
        {"id": "fast2", "input": "fast two", "target": 1},
    ]
    model = ScriptedChatModel(respond=respond)
    try:
        report = evaluate(
            one_layer_spec(), data, "numeric_match", models=model, timeout_s=0.5, progress=False
        )
        # evaluate returned while the timed-out call is still blocked in its thread
        assert not finished.is_set()
    finally:
        release.set()
    slow = report.results[1]
    assert slow.score == 0.0 and slow.error == "timeout: no answer within 0.5s"
    assert slow.feedback == "error: timeout: no answer within 0.5s"
    assert [r.score for r in report.results] == [1.0, 0.0, 1.0]
    assert report.errors == 1 and report.mean == pytest.approx(2 / 3)


def test_an_exception_in_one_example_is_recorded_and_the_others_still_score():
    model = ScriptedChatModel(rules=[(r"question two", RuntimeError("model exploded")), *RULES])
    report = evaluate(one_layer_spec(), DATA, "numeric_match", models=model, progress=False)
    failed = report.results[1]
    assert failed.score == 0.0
    assert failed.error is not None and "RuntimeError: model exploded" in failed.error
    assert [r.score for r in report.results] == [1.0, 0.0, 1.0, 0.0]
    assert [r.error is None for r in report.results] == [True, False, True, True]
    errored = [r for r in report.records if r.example_id == "q2"]
    assert len(errored) == 1 and "model exploded" in (errored[0].error or "")


def test_a_failing_metric_is_recorded_per_example():
    def picky(example, output):
        if example["id"] == "q3":
            raise ValueError("bad target")
        return Score(value=1.0, feedback="fine")

    report = evaluate(one_layer_spec(), DATA, picky, models=scripted(), progress=False)
    assert [r.score for r in report.results] == [1.0, 1.0, 0.0, 1.0]
    assert report.results[2].error == "metric failed: ValueError: bad target"
    assert report.results[0].feedback == "fine"


# -- records, tokens, calls, cost ------------------------------------------------------------


def test_records_carry_example_ids_and_tokens_and_calls_add_up():
    model = scripted(default="Answer: 0")
    rec = ann.TraceRecorder()
    report = evaluate(
        two_layer_spec(),
        DATA,
        "numeric_match",
        models=model,
        progress=False,
        recorder=rec,
        metadata={"run": "t1"},
    )
    llm = [r for r in report.records if r.kind == "llm"]
    assert len(llm) == 8 == len(model.calls) == report.calls
    assert sorted(r.example_id for r in llm) == sorted(["q1", "q2", "q3", "q4"] * 2)
    for res in report.results:
        mine = [r for r in llm if r.example_id == res.id]
        assert [r.layer for r in sorted(mine, key=lambda r: r.start_time)] == ["think", "answer"]
        assert res.calls == 2
        assert res.input_tokens == sum(r.input_tokens for r in mine) > 0
        assert res.output_tokens == sum(r.output_tokens for r in mine) > 0
    assert (
        report.input_tokens
        == sum(r.input_tokens for r in llm)
        == sum(r.input_tokens for r in report.results)
    )
    assert report.output_tokens == sum(r.output_tokens for r in llm)
    assert report.cached_calls == 0 and report.cost_usd == 0.0
    # the caller's recorder got the same records
    assert {r.run_id for r in rec.records} == {r.run_id for r in report.records}


def test_a_reused_recorder_only_reports_this_runs_records():
    rec = ann.TraceRecorder()
    evaluate(
        one_layer_spec(), DATA, "numeric_match", models=scripted(), recorder=rec, progress=False
    )
    second = evaluate(
        one_layer_spec(), DATA, "numeric_match", models=scripted(), recorder=rec, progress=False
    )
    assert len(rec.records) == 8 and len(second.records) == 4 == second.calls


def test_cost_uses_the_price_table_and_overrides():
    model = scripted(model_name="gpt-4o-mini")
    report = evaluate(one_layer_spec(), DATA, "numeric_match", models=model, progress=False)
    assert {r.model for r in report.records} == {"gpt-4o-mini"}
    expected = (report.input_tokens * 0.15 + report.output_tokens * 0.60) / 1_000_000
    assert report.cost_usd == pytest.approx(expected) and expected > 0
    assert sum(r.cost_usd for r in report.results) == pytest.approx(expected)

    custom = evaluate(
        one_layer_spec(),
        DATA,
        "numeric_match",
        models=scripted(model_name="my-model"),
        progress=False,
        prices={"my-model": (1000.0, 2000.0)},
    )
    assert custom.cost_usd == pytest.approx(
        (custom.input_tokens * 1000 + custom.output_tokens * 2000) / 1e6
    )


def test_pricing_lookup_rules():
    assert price_for("gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # longest prefix, not gpt-4o
    assert price_for("openai:gpt-4o") == (2.50, 10.00)
    assert price_for("SmolLM2-135M-Instruct-Q8_0.gguf") == (0.0, 0.0)
    assert price_for("local") == (0.0, 0.0) and price_for("scripted") == (0.0, 0.0)
    assert price_for("gpt-4o", {"gpt-4o": (1.0, 1.0)}) == (1.0, 1.0)
    assert cost_usd("claude-3-5-sonnet-20241022", 1_000_000, 1_000_000) == pytest.approx(18.0)
    with pytest.warns(RuntimeWarning, match="no price known for model 'mystery-xyz'"):
        assert cost_usd("mystery-xyz", 1000, 1000) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cost_usd("mystery-xyz", 1000, 1000) == 0.0  # warned once only


def test_a_cached_second_run_is_free_and_makes_no_calls(tmp_path):
    spec = make_spec(
        [
            {"name": "think", "agents": [agent("t", "Thinker")]},
            {
                "name": "vote",
                "aggregator": "parallel_vote",
                "agents": [agent(f"v{i}", "Voter", temperature=0.8) for i in range(3)],
            },
        ],
        answer_format="last_number",
    )
    model = scripted(default="Answer: 0", model_name="gpt-4o-mini")
    cache = SQLiteLLMCache(tmp_path / "c.sqlite")
    first = evaluate(spec, DATA, "numeric_match", models=model, cache=cache, progress=False)
    calls_after_first = len(model.calls)
    assert first.calls == calls_after_first == 16 and first.cached_calls == 0
    assert first.cost_usd > 0
    second = evaluate(spec, DATA, "numeric_match", models=model, cache=cache, progress=False)
    assert len(model.calls) == calls_after_first  # zero model calls
    assert second.cached_calls == first.calls == second.calls == cache.hits
    assert second.cost_usd == 0.0
    assert second.input_tokens == first.input_tokens == second.cached_input_tokens
    assert second.output_tokens == second.cached_output_tokens
    assert [r.output for r in second.results] == [r.output for r in first.results]
    assert second.mean == first.mean
    assert all(r.cached_calls == r.calls == 4 for r in second.results)
    assert "(16 cached)" in second.summary()
    cache.close()


# -- API details -----------------------------------------------------------------------------


def test_summary_line():
    report = evaluate(one_layer_spec(), DATA, "numeric_match", models=scripted(), progress=False)
    line = report.summary()
    tokens = report.input_tokens + report.output_tokens
    assert re.fullmatch(
        rf"mean 0\.750 \(95% CI 0\.30-0\.95\), n=4, {tokens} tokens, 4 calls, \$0\.0000, "
        r"\d+\.\ds",
        line,
    ), line


def test_compiled_graph_missing_ids_and_metric_objects():
    graph = ann.compile_graph(one_layer_spec(), models=scripted())
    data = [{"input": d["input"], "target": d["target"]} for d in DATA]
    report = evaluate(graph, data, numeric_match(), progress=False)
    assert [r.id for r in report.results] == ["0", "1", "2", "3"]
    assert sorted({r.example_id for r in report.records}) == ["0", "1", "2", "3"]
    assert report.mean == 0.75
    with pytest.raises(ValueError, match="already compiled"):
        evaluate(graph, data, "numeric_match", models=scripted(), progress=False)
    with pytest.raises(ValueError, match="duplicate example id 'x'"):
        evaluate(graph, [{"id": "x", "input": "a"}, {"id": "x", "input": "b"}], "contains")
    with pytest.raises(ValueError, match=r"dataset\[1\]: 'input' must be a string"):
        evaluate(graph, [{"input": "a"}, {"question": "b"}], "contains")
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(graph, data, "f1")


def test_report_round_trips_through_json_with_records():
    report = evaluate(one_layer_spec(), DATA, "numeric_match", models=scripted(), progress=False)
    back = EvalReport.model_validate_json(report.model_dump_json())
    assert back == report and len(back.records) == 4
    light = report.model_dump(exclude={"records"})
    assert "records" not in light and light["n"] == 4


def test_evaluate_refuses_a_running_loop_and_aevaluate_works():
    async def inside():
        with pytest.raises(RuntimeError, match="aevaluate"):
            evaluate(one_layer_spec(), DATA, "numeric_match", models=scripted(), progress=False)
        return await aevaluate(
            one_layer_spec(), DATA, "numeric_match", models=scripted(), progress=False
        )

    report = asyncio.run(inside())
    assert report.mean == 0.75 and report.calls == 4


def test_progress_on_a_non_terminal_is_plain_lines_on_stderr(capsys, monkeypatch):
    from ann_langgraph import progress as progress_module

    report = evaluate(one_layer_spec(), DATA, "numeric_match", models=scripted(), progress=True)
    assert report.mean == 0.75
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout stays clean for the caller's output
    # a log gets a line at the end (and at most one a minute before it), never a redrawn bar
    assert re.fullmatch(r"eval 4/4  mean 0\.750  errors 0  elapsed 0m\d\ds\n", captured.err)
    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)
    evaluate(one_layer_spec(), DATA, "numeric_match", models=scripted(), concurrency=1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "eval 1/4",
        "eval 2/4",
        "eval 3/4",
        "eval 4/4",
    ]
    assert lines[-1].startswith("eval 4/4  mean 0.750  errors 0")
    evaluate(one_layer_spec(), DATA, "numeric_match", models=scripted(), progress=False)
    assert capsys.readouterr().err == ""


# -- datasets --------------------------------------------------------------------------------


def test_load_dataset_jsonl_with_aliases(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    rows = [
        {"question": "How many?", "answer": "steps\n#### 72"},
        {"id": 7, "input": "Other", "target": 3, "extra": True},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    data = load_dataset(path)
    assert data[0]["id"] == "0" and data[0]["input"] == "How many?"
    assert data[0]["target"] == "steps\n#### 72"
    assert data[1] == {"id": "7", "input": "Other", "target": 3, "extra": True}
    report = evaluate(
        one_layer_spec(),
        path,
        "numeric_match",
        models=ScriptedChatModel(rules=[(r"How many", "72"), (r"Other", "4")]),
        progress=False,
    )
    assert [r.score for r in report.results] == [1.0, 0.0]


def test_load_dataset_json_and_errors(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"examples": [{"input": "a", "target": "b"}]}), encoding="utf-8")
    assert load_dataset(path) == [{"id": "0", "input": "a", "target": "b"}]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "ok"}\n{"target": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: no 'input' \(or 'question'\) field"):
        load_dataset(bad)
    bad.write_text('{"input": "ok"}\n\n{"input": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON"):
        load_dataset(bad)
    bad.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: expected a JSON object"):
        load_dataset(bad)
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps([{"input": "a"}, {"input": 5}]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"l\.json\[1\]: 'input' must be a string"):
        load_dataset(listed)
    with pytest.raises(ValueError, match="unsupported dataset file type"):
        load_dataset(tmp_path / "d.csv")


def test_load_dataset_reads_the_shared_gsm8k_format():
    path = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k" / "test-dev.jsonl"
    if not path.exists():
        pytest.skip("shared datasets not present")
    data = load_dataset(path)
    assert len(data) == 1000 and data[0]["id"] == "0"
    metric = numeric_match()
    final = data[0]["target"].rsplit("####", 1)[1].strip()
    assert metric(data[0], f"Answer: {final}").value == 1.0


def test_on_result_hears_each_example_as_it_finishes():
    seen: list[tuple[str, float]] = []
    report = evaluate(
        one_layer_spec(),
        DATA,
        "numeric_match",
        models=scripted(),
        concurrency=1,
        progress=False,
        on_result=lambda result: seen.append((result.id, result.score)),
    )
    assert seen == [(r.id, r.score) for r in report.results]  # one call each, finishing order
    assert sorted(score for _, score in seen) == [0.0, 1.0, 1.0, 1.0]


def test_on_result_gets_each_examples_usage_and_the_report_counts_it_once():
    heard = []
    report = evaluate(
        one_layer_spec(),
        DATA,
        "numeric_match",
        models=scripted(),
        concurrency=2,
        progress=False,
        on_result=heard.append,
    )
    by_id = {r.id: r for r in report.results}
    for result in heard:  # what a caller saves as it goes (evals.carry) is the whole row
        final = by_id[result.id]
        assert result.calls == final.calls == 1
        assert result.input_tokens == final.input_tokens > 0
        assert result.output_tokens == final.output_tokens > 0
    assert report.input_tokens == sum(r.input_tokens for r in report.results)
    assert report.calls == len(DATA)
