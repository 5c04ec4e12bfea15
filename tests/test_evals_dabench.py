"""DABench: loader (join, files), @name[value] scoring, and the CSV hand-over to the python tool."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, ToolMessage

import ann_langgraph as ann
from ann_langgraph.evaluate import evaluate
from ann_langgraph.sandbox import (
    FILES_CONFIG_KEY,
    files_from_config,
    isolation_available,
    python_tool,
)
from ann_langgraph.testing import ScriptedChatModel, tool_call_message
from evals import DataNotFoundError, get_benchmark
from evals.dabench import dabench_metric, load_all, parse_answers, sub_question_accuracy

from .conftest import benchmark_folder

BENCH = get_benchmark("dabench")
MEAN_FARE_CODE = (
    "import csv, statistics\n"
    "rows = list(csv.DictReader(open('test_ave.csv')))\n"
    "print(round(statistics.mean(float(r['Fare']) for r in rows), 2))\n"
)


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return benchmark_folder("dabench")


def ex(*pairs: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"id": "x", "input": "q", "target": [list(p) for p in pairs], **extra}


# -- loader --------------------------------------------------------------------------------


def test_loader_joins_questions_labels_and_tables(data_dir: Path) -> None:
    rows = load_all(data_dir)
    assert len(rows) == 200
    assert len({r["id"] for r in rows}) == 200
    first = rows[0]
    assert first["id"] == "0"
    assert first["target"] == [["mean_fare", "34.65"]]
    assert first["level"] == "easy"
    assert first["file_name"] == "test_ave.csv"
    assert "Calculate the mean fare" in first["input"]
    assert "@mean_fare[mean_fare_value]" in first["input"]  # the format is in the task
    assert "test_ave.csv" in first["input"]
    assert "Constraints:" in first["input"]
    for row in rows:
        (name, path), *rest = row["files"].items()
        assert not rest and name == row["file_name"]
        assert Path(path).is_absolute() and Path(path).is_file()
        assert row["level"] in ("easy", "medium", "hard")
        assert row["target"] and all(len(item) == 2 for item in row["target"])
    multi = next(r for r in rows if r["id"] == "6")  # 4 sub-questions in the labels file
    assert [n for n, _ in multi["target"]] == [
        "mean_fare_elderly",
        "mean_fare_teenager",
        "mean_fare_child",
        "mean_fare_adult",
    ]


def test_splits_are_seeded_disjoint_and_documented(data_dir: Path) -> None:
    parts = {s: BENCH.load(s, data_dir=data_dir) for s in ("train", "val", "dev")}
    assert {s: len(p) for s, p in parts.items()} == {"train": 40, "val": 30, "dev": 130}
    ids = {s: {r["id"] for r in p} for s, p in parts.items()}
    assert not ids["train"] & ids["dev"] and not ids["val"] & ids["dev"]
    assert not ids["train"] & ids["val"]
    assert len(ids["train"] | ids["val"] | ids["dev"]) == 200
    assert [r["id"] for r in BENCH.load("test", data_dir=data_dir)] == [
        r["id"] for r in parts["dev"]
    ]
    assert BENCH.load("dev", data_dir=data_dir)[0]["id"] == parts["dev"][0]["id"]  # stable
    assert set(BENCH.splits) == {"train", "val", "dev"}
    assert BENCH.breakdown == ("level",) and BENCH.tools == ("python",)
    splits_md = (Path(__file__).resolve().parent.parent / "evals" / "SPLITS.md").read_text()
    assert re.search(r"\|\s*dabench\s*\|\s*dev\s*\|\s*130\s*\|", splits_md)


def test_loader_reports_a_missing_table(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "dabench"
    folder.mkdir()
    src = data_dir / "dabench"
    for name in ("da-dev-questions-dev.jsonl", "da-dev-labels-dev.jsonl"):
        (folder / name).write_text((src / name).read_text())
    (folder / "da-dev-tables").mkdir()
    with pytest.raises(DataNotFoundError, match=r"test_ave\.csv"):
        load_all(tmp_path)


# -- scoring -------------------------------------------------------------------------------


def test_parse_answers_last_occurrence_wins_and_brackets_balance() -> None:
    text = "Format: @mean[value]\nI computed it.\n@Mean[3.5]\n@pair[[1, 2]]\n@s[ Yes ]"
    assert parse_answers(text) == {"mean": "3.5", "pair": "[1, 2]", "s": " Yes "}
    assert parse_answers("no items here") == {}
    assert parse_answers("@x[unclosed\nmore") == {"x": "unclosed"}


def test_all_sub_questions_right_scores_one() -> None:
    metric = dabench_metric()
    example = ex(("mean", "34.65"), ("label", "Yes"), ("cols", "author, urlToImage"))
    out = "Work...\n@mean[34.6523]\n@label['yes']\n@cols[Author,  urltoimage]"
    score = metric(example, out)
    assert score.value == 1.0 and score.feedback.startswith("3/3")
    assert sub_question_accuracy()(example, out).value == 1.0


def test_partial_answer_scores_zero_and_names_the_wrong_one() -> None:
    example = ex(("a", "1.50"), ("b", "2.00"), ("c", "normal"), ("d", "7"))
    out = "@a[1.5]\n@b[2.5]\n@c[not normal]"
    score = dabench_metric()(example, out)
    assert score.value == 0.0
    assert "1/4 sub-questions right" in score.feedback
    assert "@b (expected '2.00', got '2.5')" in score.feedback
    assert "@c (expected 'normal', got 'not normal')" in score.feedback
    assert "missing: @d" in score.feedback
    assert sub_question_accuracy()(example, out).value == pytest.approx(0.25)


def test_numeric_tolerance_is_about_one_percent_relative() -> None:
    metric = dabench_metric()
    assert metric(ex(("r", "0.21")), "@r[0.2101]").value == 1.0
    assert metric(ex(("r", "0.21")), "@r[0.2]").value == 0.0  # ~5% off
    assert metric(ex(("n", "1000")), "@n[1009]").value == 1.0
    assert metric(ex(("n", "1000")), "@n[1011]").value == 0.0
    assert metric(ex(("z", "0.0")), "@z[0]").value == 1.0
    assert metric(ex(("v", "9.03,9.0")), "@v[9.03, 9.00]").value == 1.0  # lists item by item
    assert metric(ex(("v", "9.03,9.0")), "@v[9.03]").value == 0.0
    strict = dabench_metric(rel_tol=1e-9)
    assert strict(ex(("r", "0.21")), "@r[0.2101]").value == 0.0


def test_wrong_names_are_reported_as_missing() -> None:
    score = dabench_metric()(ex(("mean_fare", "34.65")), "@average_fare[34.65]")
    assert score.value == 0.0
    assert "missing: @mean_fare (expected '34.65')" in score.feedback
    assert "the output named @average_fare instead" in score.feedback


def test_missing_output() -> None:
    metric = dabench_metric()
    empty = metric(ex(("a", "1")), "   ")
    assert empty.value == 0.0 and "empty" in empty.feedback
    none = metric(ex(("a", "1")), "The mean fare is 34.65.")
    assert none.value == 0.0 and "no @name[value] items" in none.feedback
    assert sub_question_accuracy()(ex(("a", "1"), ("b", "2")), "").value == 0.0
    with pytest.raises(ValueError, match="target"):
        metric({"id": "bad", "input": "q", "target": None}, "@a[1]")


def test_every_label_scores_one_when_echoed(data_dir: Path) -> None:
    """The scorer accepts every label in the data as its own answer (no unparseable labels)."""
    metric = dabench_metric()
    for row in load_all(data_dir):
        out = "\n".join(f"@{n}[{v}]" for n, v in row["target"])
        assert metric(row, out).value == 1.0, (row["id"], row["target"])


# -- the CSV hand-over ---------------------------------------------------------------------


def test_files_from_config(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    assert files_from_config(None) == {}
    assert files_from_config({"configurable": {}}) == {}
    got = files_from_config({"configurable": {FILES_CONFIG_KEY: {"data.csv": str(table)}}})
    assert got == {"data.csv": b"a,b\n1,2\n"}
    with pytest.raises(ValueError, match="map file names"):
        files_from_config({"configurable": {FILES_CONFIG_KEY: ["data.csv"]}})
    with pytest.raises(FileNotFoundError):
        files_from_config({"configurable": {FILES_CONFIG_KEY: {"x.csv": str(tmp_path / "no")}}})


def test_python_tool_reads_files_from_the_run_config(tmp_path: Path) -> None:
    table = tmp_path / "host-name.csv"
    table.write_text("x\n1\n2\n4\n")
    code = "import csv\nprint(sum(int(r['x']) for r in csv.DictReader(open('data.csv'))))"
    config = {"configurable": {FILES_CONFIG_KEY: {"data.csv": str(table)}}}
    assert python_tool.invoke({"code": code}, config).startswith("7\n")
    # Without the hand-over the file is not there; a bad name comes back as an error text.
    assert "FileNotFoundError" in python_tool.invoke({"code": code})
    bad = {"configurable": {FILES_CONFIG_KEY: {"../escape.csv": str(table)}}}
    assert python_tool.invoke({"code": "print(1)"}, bad).startswith("error: ")
    assert set(python_tool.args) == {"code"}  # config is injected, never shown to the model


def test_evaluate_rejects_malformed_files() -> None:
    spec = ann.load_spec(BENCH.spec_path)
    with pytest.raises(ValueError, match=r"dataset\[0\]: 'files' must map"):
        evaluate(
            spec,
            [{"id": "a", "input": "q", "files": ["a.csv"]}],
            dabench_metric(),
            models=ScriptedChatModel(default="x"),
            progress=False,
        )


def _analyst(messages: list[BaseMessage], **kwargs: Any) -> Any:
    """Plan -> call python on the CSV -> report the printed value -> write @mean_fare[...]."""
    text = "\n".join(str(m.content) for m in messages)
    results = [m for m in messages if isinstance(m, ToolMessage)]
    if kwargs.get("tools"):  # the analyse layer (tools bound)
        if not results:
            return tool_call_message("python", {"code": MEAN_FARE_CODE})
        return f"The script printed: {str(results[-1].content).splitlines()[0]}"
    printed = re.search(r"The script printed: ([\d.]+)", text)
    if printed:  # the answer layer sees the analyse layer's output
        return f"@mean_fare[{printed.group(1)}]"
    return "Plan: read the Fare column and average it."


def test_starter_spec_reads_the_csv_through_the_python_tool(data_dir: Path) -> None:
    example = next(r for r in load_all(data_dir) if r["id"] == "0")
    model = ScriptedChatModel(respond=_analyst)
    spec = ann.load_spec(BENCH.spec_path)
    assert spec.answer_format == BENCH.answer_format
    report = evaluate(spec, [example], BENCH.metric(), models=model, progress=False, concurrency=1)
    result = report.results[0]
    assert result.error is None, result.error
    assert result.output.strip() == "@mean_fare[34.65]"
    assert result.score == 1.0, result.feedback
    tool_results = [
        m.content for call in model.calls for m in call["messages"] if isinstance(m, ToolMessage)
    ]
    assert tool_results and str(tool_results[0]).startswith("34.65")


def test_single_agent_tool_layer_gets_the_files_too(data_dir: Path) -> None:
    """Any spec with the python tool (e.g. a baseline) gets the example's files."""
    example = next(r for r in load_all(data_dir) if r["id"] == "0")
    spec = ann.GraphSpec.model_validate(
        {
            "name": "one",
            "description": BENCH.description,
            "layers": [
                {
                    "name": "answer",
                    "aggregator": "tool_pipeline",
                    "tools": ["python"],
                    "agents": [{"id": "a", "role": "analyst", "prompt": BENCH.instruction}],
                }
            ],
        }
    )

    def respond(messages: list[BaseMessage], **kwargs: Any) -> Any:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            return tool_call_message("python", {"code": MEAN_FARE_CODE})
        return f"@mean_fare[{str(results[-1].content).splitlines()[0]}]"

    report = evaluate(
        spec, [example], BENCH.metric(), models=ScriptedChatModel(respond=respond), progress=False
    )
    assert report.results[0].score == 1.0, report.results[0].feedback


def test_sandbox_has_the_libraries_the_instruction_promises() -> None:
    if "rlimits" not in isolation_available():
        pytest.skip("no sandbox on this machine")
    out = python_tool.invoke(
        {"code": "import csv, statistics, math, collections, datetime\nprint('ok')"}
    )
    assert out.startswith("ok")
    assert "csv" in BENCH.instruction and "pandas" in BENCH.instruction


@pytest.mark.local_model
def test_starter_spec_on_the_embedded_model_shapes(data_dir: Path) -> None:
    """Mechanics only (the embedded model is far too weak to answer): every layer runs, the
    output is scored with feedback, and the run's records name the tool layer's agent."""
    example = next(r for r in load_all(data_dir) if r["id"] == "0")
    report = evaluate(
        ann.load_spec(BENCH.spec_path),
        [example],
        BENCH.metric(),
        models="local",
        progress=False,
        timeout_s=600,
    )
    result = report.results[0]
    assert result.error is None, result.error
    assert isinstance(result.output, str) and result.score in (0.0, 1.0)
    assert "sub-questions right" in result.feedback or "empty" in result.feedback
    agents = {(r.layer, r.agent_id) for r in report.records if r.kind == "llm"}
    assert {("plan", "planner"), ("analyse", "coder"), ("answer", "writer")} <= agents


def test_dataset_file_paths_are_relative_to_the_dataset(tmp_path: Path) -> None:
    from ann_langgraph.evaluate import load_dataset

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("x\n3\n")
    path = tmp_path / "ds.jsonl"
    path.write_text('{"input": "q", "target": [["s", "3"]], "files": {"t.csv": "data/t.csv"}}\n')
    (row,) = load_dataset(path)
    assert row["files"] == {"t.csv": str(tmp_path / "data" / "t.csv")}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "q", "files": {"t.csv": 3}}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: 'files' must map"):
        load_dataset(bad)
