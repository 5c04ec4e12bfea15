"""InfiAgent-DABench (dev part): answer data-analysis questions about a CSV with the python tool.

Data: ``<data dir>/dabench/da-dev-questions-dev.jsonl`` joined by ``id`` with
``da-dev-labels-dev.jsonl`` (200 questions) and the tables in ``da-dev-tables/``. Licence:
CC BY-NC 4.0 (non-commercial use only). Each example carries ``files: {"<table>.csv": "<host
path>"}``; ``ann_langgraph.evaluate`` hands them to the ``python`` tool, whose sandbox puts
them in its working directory, so ``open("<table>.csv")`` works there.

Answers are ``@name[value]`` items; every sub-question is scored on its own (numbers within a
relative tolerance, other values as normalised strings). The main score is 1 only when every
sub-question is right (InfiAgent's "accuracy by question"); ``sub_question_accuracy`` is the
fraction right.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ann_langgraph.metrics import Metric, Score

from .base import Benchmark, DataNotFoundError, Example, iter_jsonl, seeded_split

__all__ = [
    "BENCHMARK",
    "dabench_metric",
    "parse_answers",
    "sub_question_accuracy",
    "values_match",
]

FOLDER = "dabench"
QUESTIONS = "da-dev-questions-dev.jsonl"
LABELS = "da-dev-labels-dev.jsonl"
TABLES = "da-dev-tables"
SEED = 2026
SIZES: dict[str, int | None] = {"train": 40, "val": 30, "dev": None}
REL_TOL = 1e-2
ABS_TOL = 1e-6
#: What the default sandbox interpreter offers (checked: no pandas/numpy/scipy there).
LIBRARIES = "the Python standard library only (csv, statistics, math, collections, datetime, re)"
INSTRUCTION = (
    "Use the python tool to compute the answer from the CSV file named in the task; it is in "
    f"the tool's working directory (read it with csv.DictReader(open(name))). The tool has "
    f"{LIBRARIES}: pandas and numpy are not available. Print what you compute. End your answer "
    "with one @name[value] item per line, exactly as the answer format asks."
)


# -- data ----------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path, what="DABench")]


def _task_text(q: dict[str, Any]) -> str:
    return (
        f"{q['question'].strip()}\n\n"
        f"Constraints: {q.get('constraints', '').strip()}\n\n"
        f"Answer format: {q.get('format', '').strip()}\n\n"
        f"Data: the CSV file `{q['file_name']}` (in the python tool's working directory)."
    )


def load_all(data_dir: Path) -> list[Example]:
    """All 200 dev questions joined with their labels, in file order."""
    folder = data_dir / FOLDER
    questions = _read_jsonl(folder / QUESTIONS)
    labels = {row["id"]: row for row in _read_jsonl(folder / LABELS)}
    examples: list[Example] = []
    for q in questions:
        label = labels.get(q["id"])
        if label is None:
            raise ValueError(f"{folder / LABELS}: no label for question id {q['id']}")
        table = (folder / TABLES / q["file_name"]).resolve()
        if not table.is_file():
            raise DataNotFoundError(f"DABench table {str(table)!r} (question {q['id']}) is missing")
        examples.append(
            {
                "id": str(q["id"]),
                "input": _task_text(q),
                "target": [[str(n), str(v)] for n, v in label["common_answers"]],
                "question": q["question"],
                "constraints": q.get("constraints", ""),
                "format": q.get("format", ""),
                "concepts": list(q.get("concepts") or []),
                "level": q.get("level", ""),
                "file_name": q["file_name"],
                "files": {q["file_name"]: str(table)},
            }
        )
    if len(labels) != len(examples):
        extra = sorted(set(labels) - {q["id"] for q in questions})
        raise ValueError(f"{folder / LABELS}: labels without a question: {extra[:10]}")
    return examples


def load(split: str, data_dir: Path) -> list[Example]:
    return seeded_split(load_all(data_dir), SIZES, seed=SEED)[split]


# -- scoring -------------------------------------------------------------------------------

_NAME = re.compile(r"@(\w+)\[")


def parse_answers(text: str) -> dict[str, str]:
    """``@name[value]`` items in ``text`` (names lower-cased; the last occurrence of a name
    wins). Brackets inside a value are balanced, so ``@x[[1, 2]]`` gives ``[1, 2]``."""
    found: dict[str, str] = {}
    pos = 0
    while (hit := _NAME.search(text, pos)) is not None:
        depth, i = 1, hit.end()
        while i < len(text) and depth:
            depth += {"[": 1, "]": -1}.get(text[i], 0)
            i += 1
        if depth:  # unbalanced: take up to the first "]" (or the line end)
            end = text.find("]", hit.end())
            line_end = text.find("\n", hit.end())
            stop = end if end != -1 else (line_end if line_end != -1 else len(text))
            found[hit.group(1).lower()] = text[hit.end() : stop]
            pos = hit.end()
            continue
        found[hit.group(1).lower()] = text[hit.end() : i - 1]
        pos = i
    return found


def _norm(value: str) -> str:
    text = " ".join(str(value).split()).lower()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def _number(text: str) -> float | None:
    cleaned = text.strip().rstrip("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _items(text: str) -> list[str]:
    if len(text) >= 2 and text[0] + text[-1] in ("[]", "()", "{}"):
        text = text[1:-1]
    return [part.strip() for part in text.split(",")]


def values_match(
    got: str, want: str, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL
) -> bool:
    """Same value: equal after normalising case, spaces and quotes; or numbers within the
    tolerance; or comma-separated lists of the same length that match item by item."""
    a, b = _norm(got), _norm(want)
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)
    got_items, want_items = _items(a), _items(b)
    if len(want_items) > 1 and len(got_items) == len(want_items):
        return all(
            values_match(g, w, rel_tol=rel_tol, abs_tol=abs_tol)
            for g, w in zip(got_items, want_items, strict=True)
        )
    return False


def _labels(example: dict[str, Any]) -> list[tuple[str, str]]:
    target = example.get("target")
    if not isinstance(target, list) or not target:
        raise ValueError(f"example {example.get('id', '?')!r}: target must be [[name, value], ...]")
    return [(str(name), str(value)) for name, value in target]


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check(
    example: dict[str, Any], output: str, rel_tol: float, abs_tol: float
) -> tuple[int, int, str]:
    """(right, total, feedback) for one output."""
    labels = _labels(example)
    got = parse_answers(output or "")
    right: list[str] = []
    wrong: list[str] = []
    missing: list[str] = []
    for name, want in labels:
        value = got.get(name.lower())
        if value is None:
            missing.append(f"@{name} (expected {_short(want)!r})")
        elif values_match(value, want, rel_tol=rel_tol, abs_tol=abs_tol):
            right.append(f"@{name}")
        else:
            wrong.append(f"@{name} (expected {_short(want)!r}, got {_short(value)!r})")
    total = len(labels)
    if not output or not output.strip():
        return 0, total, "the output is empty (expected @name[value] items)"
    parts = [f"{len(right)}/{total} sub-questions right"]
    if wrong:
        parts.append("wrong: " + "; ".join(wrong))
    if missing:
        parts.append("missing: " + "; ".join(missing))
        expected = {n.lower() for n, _ in labels}
        others = [f"@{n}" for n in got if n not in expected]
        if others:
            parts.append("the output named " + ", ".join(others[:5]) + " instead")
        elif not got:
            parts.append(
                f"no @name[value] items in the output (it ends with {_short(output[-80:])!r})"
            )
    return len(right), total, "; ".join(parts)


def dabench_metric(rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> Metric:
    """1 when every ``@name[value]`` sub-answer is right, else 0; feedback names the wrong and
    missing ones."""

    def metric(example: dict[str, Any], output: str) -> Score:
        right, total, feedback = _check(example, output, rel_tol, abs_tol)
        return Score(value=1.0 if right == total else 0.0, feedback=feedback)

    metric.__name__ = "dabench_accuracy"
    return metric


def sub_question_accuracy(rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> Metric:
    """The fraction of an example's ``@name[value]`` sub-answers that are right."""

    def metric(example: dict[str, Any], output: str) -> Score:
        right, total, feedback = _check(example, output, rel_tol, abs_tol)
        return Score(value=right / total, feedback=feedback)

    metric.__name__ = "sub_question_accuracy"
    return metric


BENCHMARK = Benchmark(
    name="dabench",
    description=(
        "Answer a data-analysis question about a CSV file by computing with the python tool; "
        "give the result as the @name[value] items the answer format asks for."
    ),
    spec="graphs/dabench.yaml",
    answer_format="raw",
    splits={
        "train": f"40 of the 200 dev questions (seeded shuffle, seed {SEED}: positions 0-39)",
        "val": f"30 of the 200 dev questions (seeded shuffle, seed {SEED}: positions 40-69)",
        "dev": f"the other 130 dev questions (seeded shuffle, seed {SEED}: positions 70-199)",
    },
    loader=load,
    metric_factory=dabench_metric,
    instruction=INSTRUCTION,
    aliases={"test": "dev"},
    breakdown=("level",),
    extra_metrics={"sub_question_accuracy": sub_question_accuracy},
    tools=("python",),
)
