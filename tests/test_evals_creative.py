"""Trivia Creative Writing: loader and splits, answer coverage, the optional LLM judge."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

import ann_langgraph as ann
from ann_langgraph.evaluate import evaluate
from ann_langgraph.testing import ScriptedChatModel
from evals import get_benchmark
from evals.creative_writing import (
    JUDGE_ENV,
    answers_metric,
    judge_metric,
    load_all,
    normalize_text,
)

from .conftest import benchmark_folder

BENCH = get_benchmark("creative-writing")
EXAMPLE = {
    "id": "t",
    "input": "Write a story about Wall-E ...",
    "topic": "Wall-E",
    "questions": ["Beatles drummer before Ringo?", "Who said Et tu Brute?", "Capital of Romania?"],
    "target": [["Pete Best", "pete best"], ["Julius Caesar", "Caesar"], ["Bucharest", "București"]],
}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return benchmark_folder("creative-writing")


def test_loader_and_splits(data_dir: Path) -> None:
    rows = load_all(data_dir)
    assert len(rows) == 100 and rows[0]["id"] == "trivia-000"
    for row in rows:
        assert len(row["questions"]) == len(row["target"]) == 5
        assert row["topic"] in row["input"]
        assert all(q in row["input"] for q in row["questions"])
        assert all(isinstance(a, list) and a for a in row["target"])
    parts = {s: BENCH.load(s, data_dir=data_dir) for s in ("train", "val", "dev")}
    assert {s: len(p) for s, p in parts.items()} == {"train": 30, "val": 20, "dev": 50}
    ids = {s: {r["id"] for r in p} for s, p in parts.items()}
    assert not ids["train"] & ids["dev"] and not ids["val"] & ids["dev"]
    assert not ids["train"] & ids["val"]
    assert len(ids["train"] | ids["val"] | ids["dev"]) == 100
    assert [r["id"] for r in BENCH.load("test", data_dir=data_dir)] == [
        r["id"] for r in parts["dev"]
    ]
    splits_md = (Path(__file__).resolve().parent.parent / "evals" / "SPLITS.md").read_text()
    assert re.search(r"\|\s*creative-writing\s*\|\s*dev\s*\|\s*50\s*\|", splits_md)


def test_module_docstring_states_the_licence_caveat() -> None:
    import evals.creative_writing as module

    assert module.__doc__ is not None and "no license" in module.__doc__
    assert "internal research" in module.__doc__


def test_normalize_text() -> None:
    assert normalize_text("  Bucureşti,  ROMÂNIA! ") == "bucuresti romania"
    assert normalize_text("Campbell-Bannerman") == "campbell bannerman"
    assert normalize_text("O₂") == "o2"


def test_coverage_counts_answers_and_lists_the_missing() -> None:
    metric = answers_metric()
    story = "Wall-E found a record by PETE   BEST; he named his robot friend Caesar."
    score = metric(EXAMPLE, story)
    assert score.value == pytest.approx(2 / 3)
    assert score.feedback.startswith("2/3 answers in the story")
    assert "Capital of Romania? (e.g. 'Bucharest')" in score.feedback
    assert "Beatles" not in score.feedback and "Brute" not in score.feedback
    full = metric(EXAMPLE, story + " Then he flew to bucurești.")
    assert full.value == 1.0 and "missing" not in full.feedback


def test_coverage_matches_whole_words_only() -> None:
    metric = answers_metric()
    example = {**EXAMPLE, "target": [["Hamlet"], ["is"], ["Best"]]}
    story = "Hamletian flourishes in this tale; Bestow the gift."
    assert metric(example, story).value == 0.0
    assert metric(example, "Hamlet, Best!").value == pytest.approx(2 / 3)


def test_coverage_on_empty_and_bad_targets() -> None:
    metric = answers_metric()
    empty = metric(EXAMPLE, " \n")
    assert empty.value == 0.0 and "empty" in empty.feedback
    with pytest.raises(ValueError, match="alias lists"):
        metric({"id": "x", "input": "q", "target": "Paris"}, "Paris")


def test_judge_scores_with_a_scripted_model() -> None:
    model = ScriptedChatModel(
        responses=[{"coherence": 8, "relevance": 10, "fluency": 9, "reason": "Reads well."}]
    )
    score = judge_metric(model)(EXAMPLE, "Wall-E met Pete Best.")
    assert score.value == pytest.approx((9 - 1) / 9)
    assert "coherence 8/10" in score.feedback and "Reads well." in score.feedback
    prompt = model.calls[0]["text"]
    assert "Topic: Wall-E" in prompt and "Wall-E met Pete Best." in prompt
    assert "coherence" in prompt and "fluency" in prompt  # the fixed rubric


def test_judge_retries_then_gives_zero_with_the_reason() -> None:
    good = {"coherence": 1, "relevance": 1, "fluency": 1, "reason": "Bad."}
    model = ScriptedChatModel(responses=[{"coherence": 11, "relevance": 3, "fluency": 3}, good])
    assert judge_metric(model)(EXAMPLE, "story").value == 0.0  # second try valid: all 1s
    assert len(model.calls) == 2
    broken = ScriptedChatModel(default={"coherence": "n/a"})
    score = judge_metric(broken)(EXAMPLE, "story")
    assert score.value == 0.0 and score.feedback.startswith("judge gave no valid verdict")
    assert judge_metric(broken)(EXAMPLE, "").feedback == "judge: the output is empty"


def test_judge_is_an_extra_metric_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JUDGE_ENV, raising=False)
    assert dict(BENCH.extra_metrics) == {}
    with pytest.raises(ValueError, match=JUDGE_ENV):
        judge_metric()
    scripted = ScriptedChatModel(default={"coherence": 5, "relevance": 5, "fluency": 5})
    ann.register_model("scripted-judge-test", lambda: scripted, replace=True)
    monkeypatch.setenv(JUDGE_ENV, "scripted-judge-test")
    assert list(BENCH.extra_metrics) == ["judge"]
    score = BENCH.extra_metrics["judge"]()(EXAMPLE, "A story.")
    assert score.value == pytest.approx(4 / 9)


def _storyteller(messages: list[BaseMessage], **kwargs: Any) -> Any:
    role = str(messages[0].content)
    if role.startswith("You are a trivia expert"):
        return "1. Pete Best\n2. Julius Caesar\n3. Bucharest"
    if role.startswith("You are a storyteller"):
        return "Wall-E hums a song by Pete Best."
    return "Wall-E hums a song by Pete Best, quotes Julius Caesar and dreams of Bucharest."


def test_starter_spec_runs_on_a_scripted_model() -> None:
    spec = ann.load_spec(BENCH.spec_path)
    assert spec.answer_format == BENCH.answer_format
    model = ScriptedChatModel(respond=_storyteller)
    report = evaluate(spec, [EXAMPLE], BENCH.metric(), models=model, progress=False)
    result = report.results[0]
    assert result.error is None and result.score == 1.0, result.feedback
    editor_prompt = model.calls[-1]["text"]
    assert "1. Pete Best" in editor_prompt and "Wall-E hums a song" in editor_prompt
