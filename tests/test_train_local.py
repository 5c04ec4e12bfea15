"""One short training step with the real embedded model: the run directory's contents, not accuracy."""

from __future__ import annotations

import json

import pytest

import ann_langgraph as ann
from ann_langgraph.evaluate import load_dataset

pytestmark = pytest.mark.local_model


def test_train_one_step_on_the_embedded_model(tmp_path):
    spec = ann.load_spec("graphs/sentiment.yaml")
    rows = load_dataset("data/sentiment/train.jsonl")[:3]
    val = load_dataset("data/sentiment/val.jsonl")[:3]
    run_dir = tmp_path / "run"
    result = ann.train(
        spec,
        train=rows,
        val=val,
        metric="label_match",
        models="local",
        optimizer_model="local",
        epochs=1,
        batch_size=3,
        run_dir=run_dir,
        progress=False,
        config=ann.OptimizerConfig(structured_retries=0),
    )
    assert len(result.history) == 1
    row = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
    assert row["examples"] and set(row["examples"]) == {r["id"] for r in rows}
    assert 0.0 <= row["minibatch"] <= 1.0
    if not row["skipped"]:
        assert "blame" in row["gradient"]
        for cand in row["candidates"]:  # every proposal was judged, valid or with a reason
            assert cand["valid"] or cand["reason"]
    for name in (
        "run.json",
        "spec.v0.yaml",
        "best.yaml",
        "versions.jsonl",
        "report.md",
        "learning_curve.png",
        "checkpoints.sqlite",
        "cache.sqlite",
    ):
        assert (run_dir / name).exists(), name
    records = [
        json.loads(line)
        for line in (run_dir / "records" / "step-0000.jsonl").read_text().splitlines()
    ]
    assert {r["layer"] for r in records if r["kind"] == "llm"} == {"read", "label"}
    assert all(r["input_tokens"] > 0 for r in records if r["kind"] == "llm")
    assert result.usage["calls"] > 0 and result.usage["input_tokens"] > 0
    assert 0.0 <= result.best_score <= 1.0 and result.best_score >= result.baseline_score
