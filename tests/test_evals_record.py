"""evals.record: a comparison's finished rows kept without benchmark text, and a later run that
carries on from the record (scripted model, toy benchmark)."""

from __future__ import annotations

import io
import json
import shutil

from rich.console import Console
from typer.testing import CliRunner

from evals.compare import run_compare
from evals.optimizer_stats import app as stats_app
from evals.record import app, record_compare
from evals.report import read_jsonl
from tests.test_evals_compare import _config, _toy, scripted  # noqa: F401 (fixture)


def test_a_record_drops_benchmark_text_and_a_later_run_carries_on_from_it(
    tmp_path,
    scripted,  # noqa: F811
):
    _toy(tmp_path)
    out = tmp_path / "out"
    config = _config(tmp_path, methods=["ann", "ann-trained"])
    run_compare(config, out_dir=out, progress=False)
    (out / "methods" / "io").mkdir()  # an unfinished method is not recorded
    (out / "methods" / "io" / "summary.json").write_text('{"method": "io", "status": "error"}')

    record = tmp_path / "record"
    assert record_compare(out, record) == ["ann", "ann-trained"]
    for method in ("ann", "ann-trained"):
        rows = read_jsonl(record / "methods" / method / "results.jsonl")
        assert len(rows) == 4
        assert all("input" not in r and "target" not in r for r in rows)
        assert all({"id", "score", "output"} <= set(r) for r in rows)
        assert all(len(r["output"]) <= 201 for r in rows)  # the end, where the answer is
    files = [p for p in record.rglob("*") if p.is_file()]
    assert [p.name for p in files if p.suffix == ".png"] == ["compare_front.png"]  # the plot
    text = "\n".join(p.read_text() for p in files if p.suffix != ".png")
    assert "What is" not in text  # no question of the benchmark anywhere in the record
    assert not (record / "methods" / "ann-trained" / "run").exists()
    assert (record / "methods" / "ann-trained" / "best.yaml").is_file()
    saved = json.loads((record / "methods" / "ann-trained" / "optimizer.json").read_text())
    assert saved["runs"][0]["structured_calls"] >= 2  # the critic and one repairer

    # a new machine: the record becomes the --out of a comparison that adds a method
    again = tmp_path / "again"
    shutil.copytree(record, again)
    calls = len(scripted.calls)
    log = Console(file=io.StringIO(), width=200)
    result = run_compare(
        config.model_copy(update={"methods": ["io", "ann", "ann-trained"]}),
        out_dir=again,
        progress=False,
        console=log,
    )
    assert log.file.getvalue().count("(reused from an earlier run)") == 2
    assert len(scripted.calls) == calls + 4  # only io ran
    tests = {
        (t["better"], t["than"]): t
        for t in json.loads((again / "compare.json").read_text())["paired_tests"]
    }
    assert tests[("ann-trained", "ann")]["wins"] == 4  # paired from the recorded rows
    assert [s.method for s in result.summaries] == ["io", "ann", "ann-trained"]

    # the recorded optimizer stats pool with other runs in evals.optimizer_stats
    pooled = tmp_path / "pooled.json"
    args = [str(record / "methods" / "ann-trained" / "optimizer.json"), "--json", str(pooled)]
    res = CliRunner().invoke(stats_app, args)
    assert res.exit_code == 0, res.output
    assert (
        json.loads(pooled.read_text())["pooled"]["structured_calls"]
        == saved["runs"][0]["structured_calls"]
    )


def test_not_a_comparison_folder_is_refused(tmp_path):
    result = CliRunner().invoke(app, [str(tmp_path), str(tmp_path / "rec")])
    assert result.exit_code == 2
    assert "no compare.json" in result.output
    assert not (tmp_path / "rec").exists()


def test_a_json_that_is_not_saved_stats_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": [{"run_dir": "x"}]}')
    result = CliRunner().invoke(stats_app, [str(bad)], env={"COLUMNS": "300"})
    assert result.exit_code != 0 and "lacks" in result.output


def test_a_long_output_keeps_its_end_where_the_answer_is():
    from evals.record import OUTPUT_TAIL, _strip

    row = {"id": "a", "input": "q", "target": 3, "output": "x" * 500 + "Answer: 3", "score": 1.0}
    kept = _strip(row)
    assert set(kept) == {"id", "output", "score"}
    assert kept["output"].endswith("Answer: 3") and len(kept["output"]) == OUTPUT_TAIL + 1
    assert _strip({"id": "b", "output": "short"})["output"] == "short"


def test_a_recorded_spec_keeps_its_demos_sources_not_their_text(tmp_path):
    """A trained spec's demonstrations are training problems and worked answers: the record
    keeps where each came from and how long it was, and the spec still loads."""
    import ann_langgraph as ann

    src = tmp_path / "cmp"
    method = src / "methods" / "ann"
    method.mkdir(parents=True)
    (src / "compare.json").write_text("{}")
    (src / "compare.md").write_text("# t\n")
    (method / "summary.json").write_text('{"method": "ann", "status": "ok"}')
    (method / "results.jsonl").write_text('{"id": "a", "score": 1.0, "output": "4"}\n')
    spec = {
        "name": "s",
        "layers": [
            {
                "name": "solve",
                "agents": [
                    {
                        "id": "solver",
                        "role": "a solver",
                        "prompt": "Solve the problem.",
                        "demos": [
                            {
                                "input": "Tobias has 95 dollars.",
                                "output": "95 - 15 = 80. Answer: 80",
                                "source": "train:gsm8k-train-3",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    ann.save_spec(ann.GraphSpec.model_validate(spec), method / "spec.yaml")

    assert record_compare(src, tmp_path / "rec") == ["ann"]
    kept = tmp_path / "rec" / "methods" / "ann" / "spec.yaml"
    text = kept.read_text()
    assert "Tobias" not in text and "Answer: 80" not in text
    (demo,) = ann.load_spec(kept).layer("solve").agents[0].demos
    assert demo.source == "train:gsm8k-train-3"
    assert demo.input.startswith("[not recorded: 22 characters from train:gsm8k-train-3")
    assert ann.load_spec(kept).layer("solve").agents[0].prompt == "Solve the problem."


def test_a_method_being_run_again_keeps_its_spec_with_its_results(tmp_path, scripted):  # noqa: F811
    """A method's spec is written with its results: recorded while a new run of it (another
    spec) is under way, the record keeps the spec its results came from."""
    import dataclasses

    from evals import compare_methods, register_benchmark

    bench = _toy(tmp_path)
    out = tmp_path / "out"
    run_compare(_config(tmp_path, methods=["cot"]), out_dir=out, progress=False)
    spec_path = out / "methods" / "cot" / "spec.yaml"
    before = spec_path.read_text()
    # the baseline's spec changes (as a cap did), so cot runs again
    register_benchmark(
        dataclasses.replace(bench, instruction="End with 'Answer: <n>'."), replace=True
    )
    seen: list[str] = []
    evaluate_spec = compare_methods.MethodRunner.evaluate_spec

    def peek(self, spec, method, **kw):
        seen.append(spec_path.read_text())
        assert record_compare(out, tmp_path / "record") == ["cot"]  # a record taken meanwhile
        return evaluate_spec(self, spec, method, **kw)

    compare_methods.MethodRunner.evaluate_spec = peek  # type: ignore[method-assign]
    try:
        run_compare(_config(tmp_path, methods=["cot"]), out_dir=out, progress=False)
    finally:
        compare_methods.MethodRunner.evaluate_spec = evaluate_spec  # type: ignore[method-assign]
    assert seen == [before]  # while it ran, the old spec stayed with the old results
    assert (tmp_path / "record" / "methods" / "cot" / "spec.yaml").read_text() == before
    assert "<n>" in spec_path.read_text()  # the new one, with the new results
