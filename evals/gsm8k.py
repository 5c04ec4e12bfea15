"""GSM8K: grade-school math word problems, scored on the final number (``#### 72``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ann_langgraph.metrics import Metric, numeric_match

from .base import Benchmark, Example, iter_jsonl, seeded_split

VAL_SIZE = 200
SEED = 0
_FINAL = re.compile(r"####\s*(.+?)\s*$")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a missing file or a bad line is a clear error."""
    return [row for _, row in iter_jsonl(path)]


def final_number(solution: str) -> str:
    """The number after the solution's last ``####`` line, commas removed."""
    hits = [m.group(1) for line in solution.splitlines() if (m := _FINAL.search(line))]
    if not hits:
        raise ValueError(f"solution has no '#### <number>' line: {solution[-80:]!r}")
    return hits[-1].replace(",", "").strip()


def _examples(path: Path, prefix: str) -> list[Example]:
    out = []
    for i, row in enumerate(read_jsonl(path)):
        try:
            question, solution = str(row["question"]), str(row["answer"])
            target = final_number(solution)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: row {i}: {exc}") from None
        out.append(
            {"id": f"{prefix}-{i}", "input": question, "target": target, "solution": solution}
        )
    return out


def load(split: str, data_dir: Path) -> list[Example]:
    folder = data_dir / "gsm8k"
    if split == "dev":
        return _examples(folder / "test-dev.jsonl", "gsm8k-test")
    rows = _examples(folder / "train.jsonl", "gsm8k-train")
    parts = seeded_split(rows, {"val": VAL_SIZE, "train": None}, seed=SEED)
    order = {row["id"]: i for i, row in enumerate(rows)}
    return sorted(parts[split], key=lambda r: order[r["id"]])  # file order within the split


def metric() -> Metric:
    """Numeric match on the output's final number ('Answer:'/'####' marker, else the last one)."""
    return numeric_match(answer_format="last_number")


INSTRUCTION = (
    "End your reply with a final line 'Answer: <number>' (just the number: no units, no commas)."
)

BENCHMARK = Benchmark(
    name="gsm8k",
    description="GSM8K grade-school math word problems; scored on the final number.",
    spec="graphs/gsm8k.yaml",
    answer_format="last_number",
    splits={
        "train": "gsm8k/train.jsonl minus the val rows (7,273 rows), file order",
        "val": f"{VAL_SIZE} rows of gsm8k/train.jsonl chosen by seeded_split(seed={SEED}), "
        "file order",
        "dev": "gsm8k/test-dev.jsonl: GSM8K test rows 0-999 (1,000 rows); alias 'test'",
    },
    loader=load,
    metric_factory=metric,
    instruction=INSTRUCTION,
    aliases={"test": "dev"},
)
