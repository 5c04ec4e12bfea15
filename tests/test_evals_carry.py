"""evals.carry: a method cut off while scoring is recorded with the examples it had scored, and
a new machine scores only the rest (scripted model, toy benchmark)."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

import evals.compare_methods as compare_methods
from evals.carry import PARTIAL, PARTIAL_META, TRAINED
from evals.compare import run_compare
from evals.record import record_compare
from evals.report import read_jsonl
from tests.test_evals_compare import _config, _toy, scripted  # noqa: F401 (fixture)

real_evaluate = compare_methods.evaluate


def _dies_after(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The machine goes after ``n`` examples of the next scoring have finished."""

    def evaluate(spec: Any, examples: list[dict[str, Any]], *args: Any, **kw: Any) -> Any:
        real_evaluate(spec, examples[:n], *args, **kw)  # each one reaches on_result
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(compare_methods, "evaluate", evaluate)


def test_a_cut_off_method_is_recorded_and_a_new_machine_scores_only_the_rest(
    tmp_path,
    monkeypatch,
    scripted,  # noqa: F811
):
    _toy(tmp_path)
    config = _config(tmp_path, methods=["cot"], concurrency=1)
    whole = run_compare(config, out_dir=tmp_path / "whole", progress=False).summaries[0]
    out = tmp_path / "out"
    _dies_after(monkeypatch, 3)
    first = run_compare(config, out_dir=out, progress=False).summaries[0]
    assert first.status == "error" and "went away" in str(first.error)
    saved = read_jsonl(out / "methods" / "cot" / PARTIAL)
    assert len(saved) == 3  # each finished example was saved as it finished
    assert json.loads((out / "methods" / "cot" / PARTIAL_META).read_text())["sittings"] == 1

    record = tmp_path / "record"
    assert record_compare(out, record) == []  # no finished method ...
    rows = read_jsonl(record / "methods" / "cot" / PARTIAL)  # ... but its scored examples
    assert [r["id"] for r in rows] == [r["id"] for r in saved]
    assert all("input" not in r and "target" not in r for r in rows)
    text = "\n".join(p.read_text() for p in record.rglob("*") if p.is_file())
    assert "What is" not in text  # still no benchmark text in the record
    rows[0]["extra"]["has_answer"] = 0.25  # a carried row's extra is taken, not recomputed
    (record / "methods" / "cot" / PARTIAL).write_text("".join(json.dumps(r) + "\n" for r in rows))

    monkeypatch.setattr(compare_methods, "evaluate", real_evaluate)
    again = tmp_path / "again"
    shutil.copytree(record, again)
    calls = len(scripted.calls)
    done = run_compare(config, out_dir=again, progress=False).summaries[0]
    assert len(scripted.calls) == calls + 1  # only the fourth example ran
    assert done.status == "ok" and done.n == 4
    assert (done.mean, done.input_tokens, done.output_tokens, done.calls) == (
        whole.mean,
        whole.input_tokens,
        whole.output_tokens,
        whole.calls,
    )
    assert done.extra_metrics["has_answer"] == pytest.approx((0.25 + 3) / 4)
    assert done.details["sittings"] == 2 and len(done.details["codes"]) == 2
    results = read_jsonl(again / "methods" / "cot" / "results.jsonl")
    assert [r["id"] for r in results] == [
        r["id"] for r in read_jsonl(tmp_path / "whole" / "methods" / "cot" / "results.jsonl")
    ]  # the examples' order, whichever sitting scored them
    assert not (again / "methods" / "cot" / PARTIAL).exists()  # results.jsonl holds them

    record_compare(again, record)  # the finished row replaces the partial one in the record
    assert not (record / "methods" / "cot" / PARTIAL).exists()
    assert len(read_jsonl(record / "methods" / "cot" / "results.jsonl")) == 4


def test_rows_carried_for_other_options_are_scored_again(
    tmp_path,
    monkeypatch,
    scripted,  # noqa: F811
):
    _toy(tmp_path)
    out = tmp_path / "out"
    _dies_after(monkeypatch, 2)
    first = _config(tmp_path, methods=["cot-sc"], samples=3, cache=False)
    run_compare(first, out_dir=out, progress=False)
    assert len(read_jsonl(out / "methods" / "cot-sc" / PARTIAL)) == 2
    monkeypatch.setattr(compare_methods, "evaluate", real_evaluate)
    calls = len(scripted.calls)
    done = run_compare(first.model_copy(update={"samples": 5}), out_dir=out, progress=False)
    assert len(scripted.calls) == calls + 4 * 5  # every example, five voters each
    assert done.summaries[0].n == 4 and "sittings" not in done.summaries[0].details


def test_a_spec_trained_before_the_cut_is_scored_on_a_new_machine_without_training_again(
    tmp_path,
    monkeypatch,
    scripted,  # noqa: F811
):
    _toy(tmp_path)
    config = _config(tmp_path, methods=["ann-textual"], concurrency=1)
    out = tmp_path / "out"
    _dies_after(monkeypatch, 1)  # dies while scoring the trained spec
    run_compare(config, out_dir=out, progress=False)
    assert (out / "methods" / "ann-textual" / TRAINED).is_file()
    record = tmp_path / "record"
    record_compare(out, record)
    assert (record / "methods" / "ann-textual" / TRAINED).is_file()  # no demos: kept whole
    assert not (record / "methods" / "ann-textual" / "run").exists()

    monkeypatch.setattr(compare_methods, "evaluate", real_evaluate)
    again = tmp_path / "again"
    shutil.copytree(record, again)
    calls = len(scripted.calls)
    done = run_compare(config, out_dir=again, progress=False).summaries[0]
    assert len(scripted.calls) == calls + 3  # three examples scored; no critic, no repairer
    assert done.status == "ok" and done.n == 4 and done.mean == 1.0
    assert done.details["training"]["steps"] >= 1  # the first sitting's training numbers
    assert not (again / "methods" / "ann-textual" / "run").exists()


def test_a_trained_spec_with_demos_is_not_carried_whole(tmp_path):
    from ann_langgraph.spec import load_spec, save_spec
    from tests.test_evals_compare import TOY_SPEC

    folder = tmp_path / "src" / "methods" / "ann-trained"
    folder.mkdir(parents=True)
    (tmp_path / "toy.yaml").write_text(TOY_SPEC)
    spec = load_spec(tmp_path / "toy.yaml")
    data = spec.model_dump(mode="json", exclude_none=True)
    data["layers"][0]["agents"][0]["demos"] = [{"input": "What is 1+2?", "output": "3"}]
    save_spec(type(spec).model_validate(data), folder / TRAINED)
    (folder / PARTIAL_META).write_text(json.dumps({"key": "k", "spec_fingerprint": "f"}))
    (folder / PARTIAL).write_text("")
    record_compare(tmp_path / "src", tmp_path / "rec")
    assert (tmp_path / "rec" / "methods" / "ann-trained" / PARTIAL_META).is_file()
    assert not (tmp_path / "rec" / "methods" / "ann-trained" / TRAINED).exists()
