"""GSM8K harness: splits on the real files, target extraction, metric, starter spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ann_langgraph as ann
from ann_langgraph.testing import ScriptedChatModel
from evals import get_benchmark
from evals.base import DataNotFoundError
from evals.gsm8k import final_number

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
needs_data = pytest.mark.skipif(
    not (DATA / "gsm8k" / "train.jsonl").is_file(),
    reason=f"GSM8K data not found at {DATA}/gsm8k (shared datasets folder absent)",
)
BENCH = get_benchmark("gsm8k")


def _ids(rows):
    return [r["id"] for r in rows]


@needs_data
def test_split_sizes_ids_and_determinism_on_the_real_files():
    train, val, dev = (BENCH.load(s, data_dir=DATA) for s in ("train", "val", "dev"))
    assert (len(train), len(val), len(dev)) == (7273, 200, 1000)
    assert _ids(BENCH.load("val", data_dir=DATA)) == _ids(val)  # same rows every time
    assert _ids(BENCH.load("test", data_dir=DATA)) == _ids(dev)
    t, v, d = set(_ids(train)), set(_ids(val)), set(_ids(dev))
    assert len(t) == 7273 and len(v) == 200 and len(d) == 1000  # unique
    assert not t & v and not d & (t | v)
    assert t | v == {f"gsm8k-train-{i}" for i in range(7473)}  # train.jsonl, nothing lost
    assert _ids(dev) == [f"gsm8k-test-{i}" for i in range(1000)]
    # the written-down val split: pinned so an accidental change is caught
    assert _ids(val)[:3] == ["gsm8k-train-24", "gsm8k-train-35", "gsm8k-train-39"]
    first = train[0]
    assert first["id"] == "gsm8k-train-0" and first["target"] == "72"
    assert first["input"].startswith("Natalia sold clips") and "#### 72" in first["solution"]


@needs_data
def test_every_reference_solution_scores_one_with_the_metric():
    metric = BENCH.metric()
    for ex in BENCH.load("dev", data_dir=DATA):
        assert "," not in ex["target"] and float(ex["target"]) == float(ex["target"])
        assert metric(ex, ex["solution"]).value == 1.0, ex["id"]


def test_final_number_takes_the_last_marker_and_drops_commas():
    assert final_number("step <<2*3=6>>6\n#### 1,234") == "1234"
    assert final_number("#### 5\nfix\n#### -7") == "-7"
    with pytest.raises(ValueError, match="no '#### <number>' line"):
        final_number("the answer is 5")


def _write(tmp_path, name, rows):
    folder = tmp_path / "gsm8k"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_loader_on_a_small_folder_and_clear_errors(tmp_path):
    rows = [{"question": f"q{i}?", "answer": f"work\n#### {i},000"} for i in range(210)]
    _write(tmp_path, "train.jsonl", rows)
    _write(tmp_path, "test-dev.jsonl", rows[:3])
    val, train = BENCH.load("val", data_dir=tmp_path), BENCH.load("train", data_dir=tmp_path)
    assert len(val) == 200 and len(train) == 10 and not set(_ids(val)) & set(_ids(train))
    assert _ids(train) == sorted(_ids(train), key=lambda i: int(i.rsplit("-", 1)[1]))
    dev = BENCH.load("dev", data_dir=tmp_path, limit=2)
    assert [(d["id"], d["input"], d["target"]) for d in dev] == [
        ("gsm8k-test-0", "q0?", "0000"),
        ("gsm8k-test-1", "q1?", "1000"),
    ]
    _write(tmp_path, "test-dev.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(ValueError, match=r"test-dev.jsonl: row 0: .*####"):
        BENCH.load("dev", data_dir=tmp_path)
    (tmp_path / "gsm8k" / "test-dev.jsonl").write_text('{"question": "q"\n')
    with pytest.raises(ValueError, match=r"test-dev.jsonl:1: invalid JSON"):
        BENCH.load("dev", data_dir=tmp_path)
    (tmp_path / "gsm8k" / "test-dev.jsonl").unlink()
    with pytest.raises(DataNotFoundError, match=r"test-dev.jsonl.* does not exist"):
        BENCH.load("dev", data_dir=tmp_path)


EXAMPLE = {"id": "g1", "input": "How many?", "target": "1234"}


@pytest.mark.parametrize(
    ("output", "value", "feedback"),
    [
        ("so 1,234 in all.\nAnswer: 1234", 1.0, "correct: 1234"),
        ("We get 1234 apples.", 1.0, "correct"),
        ("#### 1,234", 1.0, "correct"),
        ("Answer: 1243", 0.0, "expected 1234, got 1243"),
        ("I am not sure.", 0.0, "no number found in the output (expected 1234)"),
        ("", 0.0, "the output is empty"),
    ],
)
def test_metric_on_hand_made_outputs(output, value, feedback):
    score = BENCH.metric()(EXAMPLE, output)
    assert score.value == value and feedback in score.feedback


def _respond(answers: dict[str, str]):
    """Route calls: the router picks parallel_vote; agents answer per question."""

    def respond(messages, **kwargs):
        tools = kwargs.get("tools") or []
        if tools and tools[0]["function"]["name"] == "RouteChoice":
            return {"aggregator": "parallel_vote", "reason": "simple arithmetic"}
        text = "\n".join(str(m.content) for m in messages)
        for question, answer in answers.items():
            if question in text:
                return f"Working it out.\nAnswer: {answer}"
        return "Answer: 0"

    return respond


def test_starter_spec_validates_compiles_runs_and_scores_on_a_scripted_model():
    spec = ann.load_spec(BENCH.spec_path)
    assert spec.answer_format == "last_number" and len(spec.layers) == 3
    dataset = [
        {"id": "a", "input": "Tom has 3 bags of 4 apples. How many apples?", "target": "12"},
        {"id": "b", "input": "A pen costs 2 dollars. Cost of 5 pens?", "target": "10"},
    ]
    model = ScriptedChatModel(respond=_respond({"3 bags": "12", "5 pens": "11"}))
    out = ann.compile_graph(spec, models=model).invoke({"input": dataset[0]["input"]})
    assert set(out["layer_outputs"]) == {"understand", "solve", "answer"}
    assert out["routes"]["solve"]["choice"] == "parallel_vote"
    report = ann.evaluate(spec, dataset, BENCH.metric(), models=model, progress=False)
    scores = {r.id: (r.score, r.feedback) for r in report.results}
    assert scores["a"] == (1.0, "correct: 12")
    assert scores["b"][0] == 0.0 and "expected 10, got 11" in scores["b"][1]
