"""MMLU machine learning: four-option multiple choice, scored on the chosen letter."""

from __future__ import annotations

import csv
from pathlib import Path

from ann_langgraph.metrics import Metric, multiple_choice

from .base import Benchmark, DataNotFoundError, Example

LETTERS = "ABCD"
FILES = {
    "train": "machine_learning_dev.csv",
    "val": "machine_learning_val.csv",
    "dev": "machine_learning_test-dev.csv",
}
_ID_PART = {"train": "dev", "val": "val", "dev": "test"}  # named after the MMLU source split


def format_question(question: str, options: list[str]) -> str:
    """The question followed by its options as ``A) ...`` lines."""
    lines = [question.strip(), ""]
    lines += [
        f"{letter}) {option.strip()}" for letter, option in zip(LETTERS, options, strict=True)
    ]
    return "\n".join(lines)


def read_csv(path: Path) -> list[Example]:
    """One example per row of a header-less 6-column MMLU csv."""
    if not path.is_file():
        raise DataNotFoundError(f"benchmark file {str(path)!r} does not exist")
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if not row:
                continue
            if len(row) != 6:
                raise ValueError(f"{path}: row {i}: expected 6 columns, got {len(row)}")
            question, *options, answer = row
            letter = answer.strip().upper()
            if letter not in LETTERS:
                raise ValueError(f"{path}: row {i}: answer {answer!r} is not a letter A-D")
            out.append(
                {
                    "input": format_question(question, options),
                    "target": letter,
                    "question": question,
                    "choices": [o.strip() for o in options],
                }
            )
    return out


def load(split: str, data_dir: Path) -> list[Example]:
    rows = read_csv(data_dir / "mmlu-ml" / FILES[split])
    return [{"id": f"mmlu-ml-{_ID_PART[split]}-{i}", **row} for i, row in enumerate(rows)]


def metric() -> Metric:
    return multiple_choice()


INSTRUCTION = "End your reply with a final line 'Answer: <letter>' where <letter> is A, B, C or D."

BENCHMARK = Benchmark(
    name="mmlu-ml",
    description="MMLU machine learning: four-option multiple choice; scored on the letter.",
    spec="graphs/mmlu_ml.yaml",
    answer_format="choice_letter",
    splits={
        "train": "mmlu-ml/machine_learning_dev.csv: MMLU's 5 few-shot examples",
        "val": "mmlu-ml/machine_learning_val.csv: MMLU's 11 validation questions",
        "dev": "mmlu-ml/machine_learning_test-dev.csv: MMLU test rows 0-79 (80 rows); alias 'test'",
    },
    loader=load,
    metric_factory=metric,
    instruction=INSTRUCTION,
    aliases={"test": "dev"},
)
