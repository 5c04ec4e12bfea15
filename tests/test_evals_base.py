"""evals.base: data-dir resolution, seeded splits, the benchmark registry, split names."""

from __future__ import annotations

from pathlib import Path

import pytest

import ann_langgraph as ann
from ann_langgraph.metrics import numeric_match
from evals import base
from evals.base import (
    Benchmark,
    DataNotFoundError,
    UnknownSplitError,
    benchmark_names,
    get_benchmark,
    register_benchmark,
    resolve_data_dir,
    seeded_split,
)

OURS = ("gsm8k", "math", "mmlu-ml")


# -- data directory ------------------------------------------------------------------------


def test_explicit_data_dir_wins_over_the_environment(tmp_path, monkeypatch):
    other = tmp_path / "env"
    other.mkdir()
    monkeypatch.setenv("ANN_DATA_DIR", str(other))
    assert resolve_data_dir(tmp_path) == tmp_path
    assert resolve_data_dir(str(tmp_path)) == tmp_path


def test_ann_data_dir_is_used_when_no_path_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("ANN_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path


def test_missing_data_dirs_are_clear_errors(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(DataNotFoundError, match=r"data directory .*nope.* does not exist"):
        resolve_data_dir(missing)
    monkeypatch.setenv("ANN_DATA_DIR", str(missing))
    with pytest.raises(DataNotFoundError, match=r"ANN_DATA_DIR=.*nope.* is not a directory"):
        resolve_data_dir()


def test_fallback_to_shared_datasets_beside_the_checkout_and_error_when_absent(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("ANN_DATA_DIR", raising=False)
    checkout = tmp_path / "repo"
    checkout.mkdir()
    monkeypatch.setattr(base, "REPO_ROOT", checkout)
    monkeypatch.chdir(checkout)
    with pytest.raises(DataNotFoundError) as err:
        resolve_data_dir()
    message = str(err.value)
    assert "ANN_DATA_DIR" in message and "--data-dir" in message
    assert str(tmp_path / "shared" / "datasets") in message
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    assert resolve_data_dir() == (tmp_path / "shared" / "datasets").resolve()


# -- seeded_split --------------------------------------------------------------------------


ROWS = [{"id": f"r{i}"} for i in range(50)]


def _ids(rows):
    return [r["id"] for r in rows]


def test_seeded_split_is_deterministic_disjoint_and_complete():
    a = seeded_split(ROWS, {"val": 10, "test": 5, "train": None}, seed=0)
    b = seeded_split(list(ROWS), {"val": 10, "test": 5, "train": None}, seed=0)
    assert {k: _ids(v) for k, v in a.items()} == {k: _ids(v) for k, v in b.items()}
    assert [len(a[k]) for k in ("val", "test", "train")] == [10, 5, 35]
    seen = [i for part in a.values() for i in _ids(part)]
    assert len(seen) == len(set(seen)) == 50  # no overlap, nothing lost


def test_seeded_split_depends_on_the_seed_and_shuffles():
    val0 = _ids(seeded_split(ROWS, {"val": 10}, seed=0)["val"])
    val1 = _ids(seeded_split(ROWS, {"val": 10}, seed=1)["val"])
    assert val0 != val1
    assert val0 != _ids(ROWS[:10])


def test_seeded_split_clips_sizes_larger_than_the_rows():
    parts = seeded_split(ROWS[:3], {"val": 5, "train": None}, seed=0)
    assert len(parts["val"]) == 3 and parts["train"] == []


# -- registry and splits ---------------------------------------------------------------------


def test_builtin_benchmarks_are_registered_by_name():
    names = benchmark_names()
    for name in OURS:
        assert name in names
        bench = get_benchmark(name)
        assert isinstance(bench, Benchmark) and bench.name == name
        assert get_benchmark(name) is bench  # imported once


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown benchmark 'nope'.*gsm8k"):
        get_benchmark("nope")


def test_register_benchmark_refuses_duplicates_unless_replacing():
    bench = Benchmark(
        name="tiny-test-bench",
        description="d",
        spec="graphs/gsm8k.yaml",
        answer_format="last_number",
        splits={"dev": "two rows"},
        loader=lambda split, data_dir: [{"id": "a", "input": "1+1", "target": "2"}],
        metric_factory=numeric_match,
    )
    try:
        register_benchmark(bench)
        assert get_benchmark("tiny-test-bench") is bench
        with pytest.raises(ValueError, match="already registered"):
            register_benchmark(bench)
        register_benchmark(bench, replace=True)
    finally:
        base._REGISTRY.pop("tiny-test-bench", None)


@pytest.mark.parametrize("name", OURS)
def test_unknown_split_is_a_clear_error_before_any_data_is_read(name, tmp_path):
    bench = get_benchmark(name)
    with pytest.raises(UnknownSplitError, match=r"has no split 'nope' \(known: .*dev.*test.*\)"):
        bench.load("nope", data_dir=tmp_path)  # empty dir: the split is checked first


@pytest.mark.parametrize("name", OURS)
def test_written_down_splits_alias_and_spec(name):
    bench = get_benchmark(name)
    assert {"train", "val", "dev"} <= set(bench.splits)
    assert all(desc.strip() for desc in bench.splits.values())
    assert bench.split_name("test") == "dev" and bench.default_eval_split == "dev"
    spec = ann.load_spec(bench.spec_path)
    assert spec.answer_format == bench.answer_format
    assert bench.instruction.strip()
    splits_md = (Path(__file__).resolve().parent.parent / "evals" / "SPLITS.md").read_text()
    for split in bench.splits:
        assert f"| {name} | {split} |" in splits_md


@pytest.mark.parametrize("name", OURS)
def test_missing_files_are_clear_errors(name, tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        get_benchmark(name).load("dev", data_dir=tmp_path)


def test_limit_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        get_benchmark("gsm8k").load("dev", data_dir=tmp_path, limit=0)


def _ten_row_bench() -> Benchmark:
    return Benchmark(
        name="ten-rows",
        description="d",
        spec="graphs/gsm8k.yaml",
        answer_format="last_number",
        splits={"dev": "ten rows"},
        aliases={"test": "dev"},
        loader=lambda split, data_dir: [
            {"id": f"r{i}", "input": f"{i}+0", "target": str(i)} for i in range(10)
        ],
        metric_factory=numeric_match,
        needs_data_dir=False,
    )


def test_a_split_row_range_keeps_those_positions_then_the_limit():
    bench = _ten_row_bench()
    assert [r["id"] for r in bench.load("dev[4:7]")] == ["r4", "r5", "r6"]
    assert [r["id"] for r in bench.load("test[8:]")] == ["r8", "r9"]  # alias, open end
    assert [r["id"] for r in bench.load("dev[:2]")] == ["r0", "r1"]
    assert [r["id"] for r in bench.load("dev[3:9]", limit=2)] == ["r3", "r4"]
    assert bench.split_name("test[4:7]") == "dev[4:7]"
    assert bench.split_name("dev[8:]") == "dev[8:]" and bench.split_name("dev[:3]") == "dev[0:3]"
    assert bench.split_range("dev") == ("dev", None)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("dev[5:5]", "the range is empty"),
        ("dev[0:0]", "the range is empty"),
        ("dev[7:3]", "the range is empty"),
        ("dev[10:12]", "has only 10 rows"),
        ("nope[0:3]", r"has no split 'nope\[0:3\]'.*dev\[40:80\]"),
    ],
)
def test_a_bad_split_row_range_is_a_clear_error(split, message):
    with pytest.raises(UnknownSplitError, match=message):
        _ten_row_bench().load(split)
