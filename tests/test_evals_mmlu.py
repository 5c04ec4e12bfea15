"""MMLU-ML harness: the three csv files, question formatting, metric, starter spec."""

from __future__ import annotations

from pathlib import Path

import pytest

import ann_langgraph as ann
from ann_langgraph.testing import ScriptedChatModel
from evals import get_benchmark

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
needs_data = pytest.mark.skipif(
    not (DATA / "mmlu-ml" / "machine_learning_test-dev.csv").is_file(),
    reason=f"MMLU-ML data not found at {DATA}/mmlu-ml (shared datasets folder absent)",
)
BENCH = get_benchmark("mmlu-ml")


@needs_data
def test_split_sizes_fields_and_stable_ids_on_the_real_files():
    splits = {s: BENCH.load(s, data_dir=DATA) for s in ("train", "val", "dev")}
    assert {s: len(r) for s, r in splits.items()} == {"train": 5, "val": 11, "dev": 80}
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids)) == 96
    assert [r["id"] for r in splits["dev"]][:2] == ["mmlu-ml-test-0", "mmlu-ml-test-1"]
    assert [r["id"] for r in BENCH.load("test", data_dir=DATA)] == [r["id"] for r in splits["dev"]]
    for rows in splits.values():
        for ex in rows:
            assert ex["target"] in "ABCD" and len(ex["target"]) == 1
            assert len(ex["choices"]) == 4
            lines = ex["input"].splitlines()
            assert lines[-4:] == [f"{L}) {c}" for L, c in zip("ABCD", ex["choices"], strict=True)]
            assert ex["input"].startswith(ex["question"].strip())
            assert "\r" not in ex["input"]
    val2 = splits["val"][2]
    assert val2["target"] == "D" and val2["choices"][0] == "True, True"  # quoted commas kept


def _write(tmp_path, name, text):
    folder = tmp_path / "mmlu-ml"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(text.encode())


def test_loader_parses_quoted_crlf_csv_and_rejects_bad_rows(tmp_path):
    _write(
        tmp_path,
        "machine_learning_val.csv",
        'What is 2+2?,3,4,"five, maybe",22,B\r\nPick one,a,b,c,d,d\r\n',
    )
    rows = BENCH.load("val", data_dir=tmp_path)
    assert [r["id"] for r in rows] == ["mmlu-ml-val-0", "mmlu-ml-val-1"]
    assert rows[0]["input"] == "What is 2+2?\n\nA) 3\nB) 4\nC) five, maybe\nD) 22"
    assert rows[0]["target"] == "B" and rows[1]["target"] == "D"
    _write(tmp_path, "machine_learning_val.csv", "q,a,b,c,B\r\n")
    with pytest.raises(ValueError, match="row 0: expected 6 columns, got 5"):
        BENCH.load("val", data_dir=tmp_path)
    _write(tmp_path, "machine_learning_val.csv", "q,a,b,c,d,E\r\n")
    with pytest.raises(ValueError, match="answer 'E' is not a letter A-D"):
        BENCH.load("val", data_dir=tmp_path)


EXAMPLE = {"id": "m1", "input": "Q\n\nA) x\nB) y\nC) z\nD) w", "target": "C"}


@pytest.mark.parametrize(
    ("output", "value", "feedback"),
    [
        ("Option A is wrong, B too.\nAnswer: C", 1.0, "correct: C"),
        ("The answer is (c).", 1.0, "correct: C"),
        ("Answer: B", 0.0, "expected C, got B"),
        (
            "none of these look right",
            0.0,
            "no choice letter (A-D) found in the output (expected C)",
        ),
        ("", 0.0, "the output is empty"),
    ],
)
def test_metric_on_hand_made_outputs(output, value, feedback):
    score = BENCH.metric()(EXAMPLE, output)
    assert score.value == value and feedback in score.feedback


def test_starter_spec_validates_compiles_runs_and_scores_on_a_scripted_model():
    spec = ann.load_spec(BENCH.spec_path)
    assert spec.answer_format == "choice_letter"
    dataset = [
        {
            "id": "a",
            "input": "Which is a kernel?\n\nA) RBF\nB) ReLU\nC) SGD\nD) Adam",
            "target": "A",
        },
        {
            "id": "b",
            "input": "Which is an optimizer?\n\nA) RBF\nB) ReLU\nC) PCA\nD) Adam",
            "target": "D",
        },
    ]
    # two of three choosers say A on the first question; the vote must pick A
    model = ScriptedChatModel(
        rules=[
            (r"skeptic.*kernel", "Answer: B"),
            (r"kernel", "RBF is a kernel.\nAnswer: A"),
            (r"optimizer", "Answer: C"),
        ]
    )
    graph = ann.compile_graph(spec, models=model)
    out = graph.invoke({"input": dataset[0]["input"]})
    assert set(out["layer_outputs"]) == {"analyse", "choose"}
    assert out["output"].endswith("Answer: A")
    report = ann.evaluate(spec, dataset, BENCH.metric(), models=model, progress=False)
    assert [(r.id, r.score) for r in report.results] == [("a", 1.0), ("b", 0.0)]
    assert report.results[1].feedback == "expected D, got C"
