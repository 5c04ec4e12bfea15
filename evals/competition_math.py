"""MATH (Hendrycks et al.): competition problems, scored on the last ``\\boxed{}`` answer.

Answers are compared with ``evals.math_equiv`` (normalisation, numbers, tuples, sets, and a
time-limited sympy fallback), so ``\\dfrac12``, ``0.5`` and ``\\frac{1}{2}`` all count.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ann_langgraph.metrics import Metric, Score

from .base import Benchmark, Example, seeded_split
from .gsm8k import read_jsonl
from .math_equiv import compare, last_boxed

VAL_SIZE = 200
SEED = 0
_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE)


def _examples(path: Path) -> list[Example]:
    """Rows with a gradable answer (2 train rows have an empty ``\\boxed{}`` and are dropped)."""
    out = []
    for i, row in enumerate(read_jsonl(path)):
        try:
            problem, solution = str(row["problem"]), str(row["solution"])
            uid = str(row["unique_id"])
        except KeyError as exc:
            raise ValueError(f"{path}: row {i}: missing field {exc}") from None
        answer = row.get("answer") or last_boxed(solution)
        if not answer:
            continue
        example: Example = {
            "id": uid,
            "input": problem,
            "target": str(answer),
            "subject": row.get("subject"),
            "level": row.get("level"),
            "solution": solution,
        }
        if "in_math500" in row:
            example["in_math500"] = bool(row["in_math500"])
        out.append(example)
    return out


def load(split: str, data_dir: Path) -> list[Example]:
    folder = data_dir / "math"
    if split == "dev":
        return _examples(folder / "test-dev.jsonl")
    if split == "dev500":
        return [row for row in _examples(folder / "test-dev.jsonl") if row.get("in_math500")]
    rows = _examples(folder / "train.jsonl")
    parts = seeded_split(rows, {"val": VAL_SIZE, "train": None}, seed=SEED)
    order = {row["id"]: i for i, row in enumerate(rows)}
    return sorted(parts[split], key=lambda r: order[r["id"]])


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fallback_answer(output: str) -> str | None:
    """Without a ``\\boxed{}``: the text after the last 'answer is' / 'Answer:'."""
    hits = _ANSWER_LINE.findall(output)
    if not hits:
        return None
    answer = hits[-1].strip().strip("$").strip()
    return answer.rstrip(".").strip() or None


def math_answer_match(*, symbolic: bool = True) -> Metric:
    """1 if the output's last ``\\boxed{}`` is equivalent to the target answer.

    If the output has no ``\\boxed{}``, its last 'Answer: ...' text is tried and the feedback
    says so.
    """

    def metric(example: dict[str, Any], output: str) -> Score:
        target = example.get("target")
        if target is None or not str(target).strip():
            raise ValueError(f"example {example.get('id', '?')!r} has no 'target'")
        want = str(target)
        got = last_boxed(output)
        where = "the last \\boxed{} of the output"
        if got is None:
            got = _fallback_answer(output)
            where = "the output's last 'Answer:' line (no \\boxed{} found; box the final answer)"
        if got is None:
            if not output.strip():
                return Score(value=0.0, feedback=f"the output is empty (expected '{want}')")
            return Score(
                value=0.0,
                feedback=f"no \\boxed{{}} answer in the output (expected '{want}'); "
                f"the output ends with: '...{_short(output[-80:])}'",
            )
        verdict = compare(got, want, symbolic=symbolic)
        if verdict.equal:
            return Score(
                value=1.0,
                feedback=f"correct: '{_short(got)}' matches '{want}' ({verdict.how})",
            )
        return Score(
            value=0.0,
            feedback=f"expected '{want}', got '{_short(got)}' from {where}; "
            f"normalised '{verdict.predicted}' vs '{verdict.expected}' are not equivalent",
        )

    metric.__name__ = "math_answer_match"
    return metric


INSTRUCTION = (
    "Put the final answer, in simplest exact form, inside "
    "\\boxed{} at the end of your reply, e.g. \\boxed{\\frac{9}{7}}."
)

BENCHMARK = Benchmark(
    name="math",
    description="MATH competition problems (7 subjects, levels 1-5); scored on the boxed answer.",
    spec="graphs/competition_math.yaml",
    answer_format="boxed",
    splits={
        "train": "math/train.jsonl minus the val rows and the 2 rows with an empty answer "
        "(7,298 rows), file order",
        "val": f"{VAL_SIZE} answered rows of math/train.jsonl chosen by "
        f"seeded_split(seed={SEED}), file order",
        "dev": "math/test-dev.jsonl: MATH test minus a stratified 500-row hold-out (4,500 rows); "
        "alias 'test'",
        "dev500": "the rows of dev that are in MATH-500 (in_math500: 442 rows)",
    },
    loader=load,
    metric_factory=math_answer_match,
    instruction=INSTRUCTION,
    aliases={"test": "dev"},
    breakdown=("subject", "level"),
)
