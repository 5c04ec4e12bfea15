"""The DSPy baselines (bootstrap-rs, MIPROv2, COPRO, GEPA); skipped where the dspy extra is not
installed (`make install` installs it)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import ann_langgraph as ann
from evals import Benchmark, register_benchmark
from evals.report import read_jsonl

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
dspy = pytest.importorskip("dspy", reason="the dspy extra is not installed")

from evals.dspy_baseline import _usage, run_dspy  # noqa: E402


def _rows(split: str, data_dir: Path) -> list[dict[str, Any]]:
    base = {"dev": 0, "train": 50, "val": 80}[split]
    n = {"dev": 3, "train": 4, "val": 3}[split]
    return [
        {"id": f"{split}-{i}", "input": f"What is {base + i}+{i}?", "target": base + 2 * i}
        for i in range(n)
    ]


def _bench(tmp_path: Path) -> Benchmark:
    bench = Benchmark(
        name="toy-dspy",
        description="Add two numbers.",
        spec=str(tmp_path / "unused.yaml"),
        answer_format="last_number",
        splits={"dev": "3 sums", "train": "4 sums", "val": "3 sums"},
        loader=_rows,
        metric_factory=lambda: ann.get_metric("numeric_match"),
        instruction="Give only the number.",
    )
    register_benchmark(bench, replace=True)
    return bench


class AdderLM(dspy.BaseLM):
    """Answers sums right in DSPy's chat format (and any other output field with filler);
    reports 10 prompt + 5 completion tokens per call."""

    def __init__(self) -> None:
        super().__init__(model="scripted-dspy", model_type="chat", temperature=0.0, max_tokens=100)
        self.kwargs = {"temperature": 0.0, "max_tokens": 100}
        self.cache = False

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt}]
        system = messages[0]["content"]
        last = messages[-1]["content"]
        fields = re.findall(r"\[\[ ## (\w+) ## \]\]", system)
        outputs = [f for f in fields if f not in ("completed",)]
        sums = re.findall(r"What is (\d+)\+(\d+)\?", last)
        text_parts = []
        for field in dict.fromkeys(outputs):
            if field in ("question",) or field.startswith("basic_") or field == "attempted":
                continue
            if field == "answer":
                value = str(int(sums[-1][0]) + int(sums[-1][1])) if sums else "0"
            else:
                value = "Add the two numbers and reply with the sum."
            text_parts.append(f"[[ ## {field} ## ]]\n{value}")
        text = "\n\n".join([*text_parts, "[[ ## completed ## ]]"])
        message = SimpleNamespace(content=text, reasoning_content=None, tool_calls=None)
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message, finish_reason="stop", logprobs=None)],
            usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            model="scripted-dspy",
        )


def test_usage_counts_tokens_and_treats_replays_as_free():
    paid = {"usage": {"prompt_tokens": 1000, "completion_tokens": 100}, "response": None}
    hit = {"usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    hit["response"] = SimpleNamespace(cache_hit=True)
    bare = {"usage": {}, "response": None}
    out = _usage([paid, hit, bare], "openai:gpt-4o-mini")
    assert out["calls"] == 3 and out["cached_calls"] == 2
    assert out["input_tokens"] == 2000 and out["output_tokens"] == 200
    assert out["cost_usd"] == pytest.approx((1000 * 0.15 + 100 * 0.60) / 1e6)


def _run(
    tmp_path: Path,
    optimizer: str,
    lm: Any,
    train: list[dict[str, Any]] | None = None,
    **options: Any,
):
    """run_dspy on the toy benchmark's splits (``train`` replaces its training rows;
    ``options`` go to run_dspy)."""
    bench = _bench(tmp_path)
    rows = {s: bench.load(s, data_dir=tmp_path) for s in ("dev", "train", "val")}
    return run_dspy(
        bench,
        model="scripted",
        train=rows["train"] if train is None else train,
        val=rows["val"],
        examples=rows["dev"],
        metric=bench.metric(),
        optimizer=optimizer,
        concurrency=1,
        out_dir=tmp_path / "dspy",
        lm=lm,
        **options,
    )


@pytest.mark.parametrize("optimizer", ["copro", "bootstrap-rs"])
def test_run_dspy_compiles_and_scores_the_same_examples(tmp_path, optimizer):
    outcome = _run(tmp_path, optimizer, AdderLM())
    report = outcome.report
    assert [r.id for r in report.results] == ["dev-0", "dev-1", "dev-2"]
    assert report.mean == 1.0 and report.errors == 0, [r.error for r in report.results]
    assert report.calls == 3 and report.input_tokens == 30 and report.output_tokens == 15
    assert all(r.calls == 1 and r.input_tokens == 10 for r in report.results)
    training = outcome.details["training"]
    assert training["calls"] > 0 and training["tokens"] == 15 * training["calls"]
    assert training["optimizer"] == optimizer and training["train_n"] == 4
    assert json.loads((tmp_path / "dspy" / "program.json").read_text())


def test_compare_runs_dspy_as_a_method(tmp_path, monkeypatch):
    from evals import compare, dspy_baseline

    _bench(tmp_path)
    real = dspy_baseline.run_dspy
    monkeypatch.setattr(
        dspy_baseline, "run_dspy", lambda *a, **kw: real(*a, **{**kw, "lm": AdderLM()})
    )
    config = compare.CompareConfig(
        benchmark="toy-dspy",
        model="scripted",
        data_dir=str(tmp_path),
        methods=["dspy"],
        dspy_optimizer="copro",
        concurrency=1,
    )
    result = compare.run_compare(config, out_dir=tmp_path / "out", progress=False)
    (row,) = result.summaries
    assert row.status == "ok" and row.method == "dspy" and row.mean == 1.0 and row.n == 3
    assert row.tokens_per_example == 15 and row.details["training"]["calls"] > 0
    assert len(read_jsonl(tmp_path / "out" / "methods" / "dspy" / "results.jsonl")) == 3
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "- dspy: dspy copro compiled" in md


class OddFailsLM(AdderLM):
    """Like AdderLM, but answers questions whose first operand is odd with text no DSPy adapter
    can parse (what the embedded 135M model often writes)."""

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt}]
        sums = re.findall(r"What is (\d+)\+(\d+)\?", messages[-1]["content"])
        if sums and int(sums[-1][0]) % 2 == 1:
            message = SimpleNamespace(
                content="Sure! ```python\nprint(42)\n```", reasoning_content=None, tool_calls=None
            )
            return SimpleNamespace(
                choices=[SimpleNamespace(message=message, finish_reason="stop", logprobs=None)],
                usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                model="scripted-dspy",
            )
        return super().forward(prompt=prompt, messages=messages, **kwargs)


@pytest.mark.parametrize("optimizer", ["copro", "miprov2", "bootstrap-rs"])
def test_unparseable_answers_score_zero_instead_of_aborting_the_run(tmp_path, optimizer):
    """DSPy stops an optimizer or evaluation after ``max_errors`` (10) failed examples; a small
    model fails to write DSPy's fields on most, so run_dspy lifts that limit: a failed example
    scores 0, as in the ANN methods."""
    train = [  # every one fails: more than DSPy's 10 errors in any optimizer phase
        {"id": f"train-{i}", "input": f"What is {51 + 2 * i}+{i}?", "target": 51 + 3 * i}
        for i in range(12)
    ]
    outcome = _run(tmp_path, optimizer, OddFailsLM(), train)
    report = outcome.report
    assert [r.score for r in report.results] == [1.0, 0.0, 1.0]
    assert report.errors == 1 and "AdapterParseError" in (report.results[1].error or "")
    assert outcome.details["training"]["calls"] > 12


def test_dspy_model_caps_answers_like_the_other_methods(monkeypatch):
    """On the embedded model DSPy gets the same answer cap as every other method (the catalogue
    entry's: 512 for the default 1.5B model, 256 for SmolLM2), so its row is not paid for with
    longer answers; provider models get 512."""
    from ann_langgraph import local
    from evals.dspy_baseline import DEFAULT_MAX_TOKENS, dspy_model

    fake = SimpleNamespace(model_alias="local", url="http://127.0.0.1:9")
    monkeypatch.setattr(local, "get_local_server", lambda *a, **kw: fake)
    monkeypatch.setattr(local, "find_gguf", lambda *a, **kw: Path("model.gguf"))
    monkeypatch.delenv("ANN_LOCAL_MODEL", raising=False)
    embedded = dspy_model("local")
    assert embedded.model == "openai/local" and embedded.kwargs["api_base"] == fake.url + "/v1"
    assert embedded.kwargs["max_tokens"] == local.entry_for("qwen2.5-coder-1.5b").max_tokens == 512
    assert dspy_model("local:smollm2").kwargs["max_tokens"] == 256
    provider = dspy_model("openai:gpt-4o-mini")
    assert provider.model == "openai/gpt-4o-mini"
    assert provider.kwargs["max_tokens"] == DEFAULT_MAX_TOKENS == 512
    assert dspy_model("local", max_tokens=64).kwargs["max_tokens"] == 64
    with pytest.raises(ValueError, match="provider:model"):
        dspy_model("gpt-4o-mini")


def test_the_embedded_server_receives_the_answer_cap(monkeypatch):
    """LiteLLM names the cap `max_completion_tokens`, which llama.cpp's server ignores; the
    request a loopback server receives must carry `max_tokens`."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from ann_langgraph import local
    from evals.dspy_baseline import dspy_model

    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            answer = "[[ ## answer ## ]]\n1\n\n[[ ## completed ## ]]"
            out = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "local",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fake = SimpleNamespace(model_alias="local", url=f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setattr(local, "get_local_server", lambda *a, **kw: fake)
        monkeypatch.setattr(local, "find_gguf", lambda *a, **kw: Path("model.gguf"))
        lm = dspy_model("local:smollm2", cache=False)
        assert lm("hi")
    finally:
        server.shutdown()
    (body,) = bodies
    assert body["max_tokens"] == 256 and "max_completion_tokens" not in body


class MagicLM(AdderLM):
    """Adds right only when its instructions say MAGIC; otherwise answers one too many (a
    wrong answer the metric's feedback explains)."""

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt}]
        out = super().forward(prompt=prompt, messages=messages, **kwargs)
        if "MAGIC" not in messages[0]["content"]:
            message = out.choices[0].message
            message.content = re.sub(
                r"(\[\[ ## answer ## \]\]\n)(\d+)",
                lambda m: m.group(1) + str(int(m.group(2)) + 1),
                message.content,
            )
        return out


class ReflectLM(AdderLM):
    """GEPA's reflection model: records each prompt and proposes the MAGIC instruction."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt}]
        self.prompts.append("\n".join(str(m["content"]) for m in messages))
        # in DSPy's chat format when its proposer asks for fields, else a bare ``` block
        field = re.search(r"Your output fields are:\s*1\. `(\w+)`", str(messages[0]["content"]))
        proposal = "```\nAdd the two numbers. MAGIC\n```"
        if field and "Outputs will be a JSON object" in str(messages[0]["content"]):
            proposal = json.dumps({field.group(1): proposal})
        elif field:
            proposal = f"[[ ## {field.group(1)} ## ]]\n{proposal}\n\n[[ ## completed ## ]]"
        message = SimpleNamespace(content=proposal, reasoning_content=None, tool_calls=None)
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message, finish_reason="stop", logprobs=None)],
            usage={"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
            model="scripted-reflect",
        )


def test_gepa_gets_the_budget_and_reflects_on_our_metrics_feedback(tmp_path, monkeypatch):
    from evals import dspy_baseline

    made: list[dict[str, Any]] = []
    real_gepa = dspy.GEPA

    def spy(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs)
        return real_gepa(*args, **kwargs)

    monkeypatch.setattr(dspy, "GEPA", spy)
    bench = _bench(tmp_path)
    rows = {s: bench.load(s, data_dir=tmp_path) for s in ("dev", "train", "val")}
    reflect = ReflectLM()
    outcome = dspy_baseline.run_dspy(
        bench,
        model="scripted",
        train=rows["train"],
        val=rows["val"],
        examples=rows["dev"],
        metric=bench.metric(),
        optimizer="gepa",
        concurrency=1,
        out_dir=tmp_path / "dspy",
        lm=MagicLM(),
        reflection_lm=reflect,
        rollouts=24,
    )
    (kwargs,) = made
    assert kwargs["max_metric_calls"] == 24 and kwargs["reflection_lm"] is reflect
    assert kwargs["log_dir"] == str(tmp_path / "dspy" / "gepa-log")  # resumable state
    # our metric's feedback text is what GEPA showed the reflection model
    assert reflect.prompts and "expected 52, got 53" in reflect.prompts[0]
    training = outcome.details["training"]
    assert training["optimizer"] == "gepa" and training["rollout_budget"] == 24
    assert 0 < training["rollouts"] <= 24 + len(rows["train"])  # GEPA may finish a minibatch
    # the reflection model's tokens are training cost too
    assert training["input_tokens"] >= 20 * len(reflect.prompts)
    # the proposed instruction was kept, and it answers the held-out sums right
    assert "MAGIC" in (tmp_path / "dspy" / "program.json").read_text()
    assert outcome.report.mean == 1.0


def test_gepa_without_a_budget_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rollout budget"):
        _run(tmp_path, "gepa", AdderLM())


def test_labeled_demos_show_the_reference_answer_not_the_tests():
    from evals.dspy_baseline import _examples

    rows = [
        {"id": "a", "input": "q", "target": "def check(c): ...", "reference_answer": "```x```"},
        {"id": "b", "input": "q2", "target": 7},
    ]
    first, second = _examples(dspy, rows)
    assert first.answer == "```x```" and second.answer == "7"


def test_compare_runs_a_gepa_row_on_the_table_budget(tmp_path, monkeypatch):
    from evals import compare, dspy_baseline

    _bench(tmp_path)
    seen: list[dict[str, Any]] = []
    real = dspy_baseline.run_dspy

    def fake(*a: Any, **kw: Any) -> Any:
        seen.append(kw)
        return real(*a, **{**kw, "lm": MagicLM(), "reflection_lm": ReflectLM()})

    monkeypatch.setattr(dspy_baseline, "run_dspy", fake)
    base = {
        "benchmark": "toy-dspy",
        "model": "scripted",
        "data_dir": str(tmp_path),
        "methods": ["dspy-gepa"],
        "concurrency": 1,
    }
    # no budget and no ann-trained row to take it from: the row fails with the reason
    out = tmp_path / "out"
    (row,) = compare.run_compare(
        compare.CompareConfig(**base), out_dir=out, progress=False
    ).summaries
    assert row.status == "error" and "rollout budget" in (row.error or "")
    config = compare.CompareConfig(**base, rollout_budget=20)
    (row,) = compare.run_compare(config, out_dir=out, progress=False).summaries
    assert row.status == "ok" and row.method == "dspy-gepa" and row.mean == 1.0
    assert seen[-1]["optimizer"] == "gepa" and seen[-1]["rollouts"] == 20
    assert row.details["training"]["rollout_budget"] == 20
    md = (out / "compare.md").read_text()
    assert "- dspy-gepa: dspy gepa compiled" in md and "rollouts (budget 20)" in md


def test_budgeted_dspy_optimizers_are_sized_to_the_rollouts(monkeypatch):
    from evals import dspy_baseline

    # 3 fixed programs x 40 val + 4 (a bootstrap) = 124; each candidate 40 + 4
    assert dspy_baseline.bootstrap_rs_candidates(480, n_train=24, n_val=40) == 8
    assert dspy_baseline.bootstrap_rs_candidates(None, n_train=24, n_val=40) == 2
    assert dspy_baseline.bootstrap_rs_candidates(10, n_train=24, n_val=40) == 1
    plan = dspy_baseline.miprov2_plan(480, n_train=24, n_val=40)
    # 6 demo sets x 4 + 40 (the default program) = 64; each trial 10 + 40/5
    assert plan == {
        "num_candidates": 6,
        "num_trials": 23,
        "minibatch_size": 10,
        "minibatch_full_eval_steps": 5,
    }
    assert dspy_baseline.miprov2_plan(None, n_train=24, n_val=40) is None
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(dspy, "MIPROv2", lambda **kw: made.append(kw))
    dspy_baseline._optimizer(
        dspy, "miprov2", None, seed=0, threads=1, rollouts=480, n_train=24, n_val=40
    )
    dspy_baseline._optimizer(dspy, "miprov2", None, seed=0, threads=1)
    assert made[0]["auto"] is None and made[0]["num_candidates"] == 6
    assert made[1]["auto"] == "light" and made[1]["num_candidates"] is None


def test_a_budgeted_bootstrap_rs_spends_no_more_than_its_budget(tmp_path):
    bench = _bench(tmp_path)
    n_train, n_val = (len(bench.load(s, data_dir=tmp_path)) for s in ("train", "val"))
    budget = 6 * n_val + 2 * n_train
    outcome = _run(tmp_path, "bootstrap-rs", AdderLM(), rollouts=budget)
    training = outcome.details["training"]
    assert training["rollout_budget"] == budget
    assert 0 < training["rollouts"] <= budget


def test_a_gepa_row_cut_off_while_scoring_goes_on_from_its_record_without_compiling(
    tmp_path, monkeypatch
):
    import shutil

    from evals import compare, dspy_baseline
    from evals.carry import PARTIAL, PARTIAL_META
    from evals.record import record_compare

    _bench(tmp_path)
    real_run, real_evaluate = dspy_baseline.run_dspy, dspy_baseline._evaluate
    compiled: list[int] = []
    real_gepa = dspy.GEPA

    def gepa(*a: Any, **kw: Any) -> Any:
        compiled.append(1)
        return real_gepa(*a, **kw)

    monkeypatch.setattr(dspy, "GEPA", gepa)
    monkeypatch.setattr(
        dspy_baseline,
        "run_dspy",
        lambda *a, **kw: real_run(*a, **{**kw, "lm": MagicLM(), "reflection_lm": ReflectLM()}),
    )

    def dies(dspy_, lm, program, examples, *a: Any, **kw: Any) -> Any:
        real_evaluate(dspy_, lm, program, examples[:1], *a, **kw)
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(dspy_baseline, "_evaluate", dies)
    config = compare.CompareConfig(
        benchmark="toy-dspy",
        model="scripted",
        data_dir=str(tmp_path),
        methods=["dspy-gepa"],
        concurrency=1,
        rollout_budget=20,
    )
    out = tmp_path / "out"
    (row,) = compare.run_compare(config, out_dir=out, progress=False).summaries
    assert row.status == "error" and compiled == [1]
    record = tmp_path / "record"
    record_compare(out, record)
    kept = record / "methods" / "dspy-gepa"
    assert len(read_jsonl(kept / PARTIAL)) == 1
    assert "MAGIC" in (kept / "program.json").read_text()  # instructions only: carried whole
    assert json.loads((kept / PARTIAL_META).read_text())["training"]["optimizer"] == "gepa"

    monkeypatch.setattr(dspy_baseline, "_evaluate", real_evaluate)
    again = tmp_path / "again"
    shutil.copytree(record, again)
    scored: list[str] = []
    monkeypatch.setattr(
        dspy_baseline,
        "_evaluate",
        lambda d, lm, p, examples, *a, **kw: (
            scored.extend(str(e["id"]) for e in examples),
            real_evaluate(d, lm, p, examples, *a, **kw),
        )[1],
    )
    (row,) = compare.run_compare(config, out_dir=again, progress=False).summaries
    assert compiled == [1]  # not compiled again
    assert row.status == "ok" and row.n == 3 and row.mean == 1.0 and len(scored) == 2
    assert row.details["sittings"] == 2
    assert row.details["training"]["rollout_budget"] == 20  # the first sitting's numbers
    assert not (again / "methods" / "dspy-gepa" / PARTIAL).exists()


def test_a_dspy_program_with_demos_is_not_carried_whole():
    from evals.carry import has_demos

    assert not has_demos({"predict": {"demos": [], "signature": {"instructions": "x"}}})
    assert has_demos({"predict": {"demos": [{"question": "What is 1+2?", "answer": "3"}]}})
