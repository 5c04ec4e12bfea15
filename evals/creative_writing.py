"""Trivia Creative Writing (Solo Performance Prompting, N=5): a story that weaves in trivia answers.

Data: ``<data dir>/creative-writing/trivia_creative_writing_100_n_5.jsonl`` (100 rows: ``topic``,
five ``questions``, ``answers`` = one list of accepted aliases per question). **The SPP
repository has no license: use these files for internal research only and do not
redistribute them.**

The main metric is the share of questions whose answer (any alias) appears in the story as
whole words, ignoring case, accents, punctuation and spacing. Some aliases in the data are
very short ("is", "x"); the whole-word rule keeps them from matching inside other words, but a
common word can still match by chance, as in the original (plain substring) metric.

An optional LLM judge (``judge``, in ``extra_metrics`` only when ``$ANN_JUDGE_MODEL`` is set,
or built with :func:`judge_metric`) rates coherence, topic relevance and fluency from 1 to 10
with a fixed rubric; the score is their mean mapped to 0-1 ((mean - 1) / 9).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field

from ann_langgraph.metrics import Metric, Score

from .base import Benchmark, Example, iter_jsonl, seeded_split

__all__ = [
    "BENCHMARK",
    "JUDGE_ENV",
    "JudgeVerdict",
    "answers_metric",
    "judge_metric",
    "normalize_text",
]

FOLDER = "creative-writing"
FILE = "trivia_creative_writing_100_n_5.jsonl"
SEED = 2026
SIZES: dict[str, int | None] = {"train": 30, "val": 20, "dev": None}
JUDGE_ENV = "ANN_JUDGE_MODEL"
_JUDGE_STORY_LIMIT = 8000


def _task_text(topic: str, questions: list[str]) -> str:
    listed = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, start=1))
    return (
        f"Write a short and coherent story about {topic} that incorporates the answers to the "
        f"following {len(questions)} questions:\n{listed}"
    )


def load_all(data_dir: Path) -> list[Example]:
    """All 100 rows in file order, ids ``trivia-000`` ... ``trivia-099``."""
    path = data_dir / FOLDER / FILE
    examples: list[Example] = []
    for lineno, row in iter_jsonl(path, what="Trivia Creative Writing"):
        questions, answers = row.get("questions"), row.get("answers")
        if not isinstance(questions, list) or not isinstance(answers, list):
            raise ValueError(f"{path}:{lineno}: 'questions' and 'answers' must be lists")
        if len(questions) != len(answers):
            raise ValueError(f"{path}:{lineno}: {len(questions)} questions, {len(answers)} answers")
        examples.append(
            {
                "id": f"trivia-{len(examples):03d}",
                "input": _task_text(str(row["topic"]), [str(q) for q in questions]),
                "target": [[str(a) for a in aliases] for aliases in answers],
                "topic": str(row["topic"]),
                "questions": [str(q) for q in questions],
                "question_ids": list(row.get("question_ids") or []),
            }
        )
    return examples


def load(split: str, data_dir: Path) -> list[Example]:
    return seeded_split(load_all(data_dir), SIZES, seed=SEED)[split]


# -- answer coverage -----------------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+")


def normalize_text(text: str) -> str:
    """Lower case, accents removed, punctuation and runs of spaces turned into one space."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", plain.casefold()).split())


def _found(aliases: list[str], story: str) -> bool:
    padded = f" {story} "
    for alias in aliases:
        norm = normalize_text(alias)
        if norm and f" {norm} " in padded:
            return True
    return False


def _example_alias(aliases: list[str]) -> str:
    """A readable alias for feedback: the shortest of at least 3 characters."""
    readable = [a for a in aliases if len(normalize_text(a)) >= 3]
    return min(readable or aliases or ["?"], key=len)


def answers_metric() -> Metric:
    """The share of questions whose answer (any alias) the story contains as whole words."""

    def metric(example: dict[str, Any], output: str) -> Score:
        target = example.get("target")
        if not isinstance(target, list) or not target:
            raise ValueError(
                f"example {example.get('id', '?')!r}: target must be a list of alias lists"
            )
        if not output or not output.strip():
            return Score(value=0.0, feedback="the output is empty (expected a story)")
        story = normalize_text(output)
        questions = example.get("questions") or [f"question {i + 1}" for i in range(len(target))]
        missing = [
            f"{q!s} (e.g. {_example_alias([str(a) for a in aliases])!r})"
            for q, aliases in zip(questions, target, strict=False)
            if not _found([str(a) for a in aliases], story)
        ]
        hits = len(target) - len(missing)
        feedback = f"{hits}/{len(target)} answers in the story"
        if missing:
            feedback += "; missing the answers to: " + "; ".join(missing)
        return Score(value=hits / len(target), feedback=feedback)

    metric.__name__ = "trivia_answer_coverage"
    return metric


# -- LLM judge -----------------------------------------------------------------------------

JUDGE_RUBRIC = """You judge short stories. Rate the story on three criteria, each an integer \
from 1 (very poor) to 10 (excellent):
- coherence: the story has a clear thread; events and sentences connect logically.
- relevance: the story is about the given topic throughout.
- fluency: grammatical, natural, readable prose.
Ignore whether trivia facts are included; judge only these three criteria. \
Give a one-sentence reason."""


class JudgeVerdict(BaseModel):
    """The judge's ratings (1-10 each) and its reason."""

    coherence: int = Field(ge=1, le=10, description="1-10: logical, connected storyline")
    relevance: int = Field(ge=1, le=10, description="1-10: about the given topic")
    fluency: int = Field(ge=1, le=10, description="1-10: grammatical, natural prose")
    reason: str = Field(default="", description="one sentence")


def _judge_model(model: Runnable[Any, Any] | str | None) -> Runnable[Any, Any]:
    if model is None:
        model = os.environ.get(JUDGE_ENV, "").strip() or None
        if model is None:
            raise ValueError(f"no judge model configured: pass model= or set {JUDGE_ENV}")
    if isinstance(model, str):
        from ann_langgraph.models import init_model

        return init_model(model)
    return model


def judge_metric(model: Runnable[Any, Any] | str | None = None) -> Metric:
    """LLM-judge score of the story (coherence, topic relevance, fluency; 0-1).

    ``model``: a chat model or model string; default ``$ANN_JUDGE_MODEL``. A judge that gives
    no valid verdict (after one retry) scores 0 with the reason in the feedback.
    """
    from ann_langgraph.structured import invoke_structured

    judge = _judge_model(model)

    def metric(example: dict[str, Any], output: str) -> Score:
        if not output or not output.strip():
            return Score(value=0.0, feedback="judge: the output is empty")
        topic = example.get("topic") or example.get("input", "")
        messages = [
            SystemMessage(JUDGE_RUBRIC),
            HumanMessage(f"Topic: {topic}\n\nStory:\n{output[:_JUDGE_STORY_LIMIT]}"),
        ]
        result = invoke_structured(judge, JudgeVerdict, messages)
        verdict = result.value
        if not isinstance(verdict, JudgeVerdict):
            return Score(value=0.0, feedback=f"judge gave no valid verdict: {result.error}")
        mean = (verdict.coherence + verdict.relevance + verdict.fluency) / 3
        return Score(
            value=(mean - 1) / 9,
            feedback=(
                f"judge: coherence {verdict.coherence}/10, relevance {verdict.relevance}/10, "
                f"fluency {verdict.fluency}/10. {verdict.reason}".strip()
            ),
        )

    metric.__name__ = "judge"
    return metric


class _ExtraMetrics(Mapping[str, Callable[[], Metric]]):
    """``{"judge": judge_metric}`` while ``$ANN_JUDGE_MODEL`` is set (checked on each use)."""

    def _current(self) -> dict[str, Callable[[], Metric]]:
        return {"judge": judge_metric} if os.environ.get(JUDGE_ENV, "").strip() else {}

    def __getitem__(self, key: str) -> Callable[[], Metric]:
        return self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"_ExtraMetrics({sorted(self._current())})"


BENCHMARK = Benchmark(
    name="creative-writing",
    description=(
        "Write a short, coherent story about the given topic that naturally includes the "
        "answer to every trivia question in the task."
    ),
    spec="graphs/creative_writing.yaml",
    answer_format="raw",
    splits={
        "train": f"30 of the 100 N=5 rows (seeded shuffle, seed {SEED}: positions 0-29)",
        "val": f"20 of the 100 N=5 rows (seeded shuffle, seed {SEED}: positions 30-49)",
        "dev": f"the other 50 N=5 rows (seeded shuffle, seed {SEED}: positions 50-99)",
    },
    loader=load,
    metric_factory=answers_metric,
    instruction=(
        "Write only the story. Include the answer to every question, word for word, in the "
        "story; do not list the answers separately."
    ),
    aliases={"test": "dev"},
    extra_metrics=_ExtraMetrics(),
)
