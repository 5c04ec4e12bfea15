"""Scoring carried over sittings: each example a method finishes is appended to its
``partial.jsonl`` at once, so scoring cut off when the machine goes continues on another machine
from the recorded rows and scores only the examples still missing.

Machines here are not kept between sittings and only committed records carry over, while some
rows take longer than a sitting (CoT-SC, five samples on 200 GSM8K problems, is about four hours
on 2 cores). ``evals.record`` copies a method's partial rows (stripped of benchmark text, like
its results) beside its ``partial.json``; an ``evals.compare`` seeded from that record scores the
rest and joins the two. The partial rows name the method's key and the scored spec's
fingerprint, so a changed option or spec starts afresh. A row's extra metrics are computed when it
finishes (a recorded output keeps only its end), and the summary says how many sittings scored it
and at which commits.

A trained spec carries over the same way when it holds nothing a record drops (no demonstrations):
``trained.yaml`` plus the training's numbers in ``partial.json``, so a new machine scores it
instead of training again; so does a DSPy row's compiled ``program.json`` without demos (GEPA's:
instructions only).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ann_langgraph.eval_report import EvalReport
from ann_langgraph.executors import ExampleResult

from .report import read_jsonl, write_text

__all__ = [
    "PARTIAL",
    "PARTIAL_META",
    "TRAINED",
    "Carried",
    "CarryWriter",
    "discard",
    "file_fingerprint",
    "has_demos",
    "join",
    "load_carried",
]

PARTIAL = "partial.jsonl"
PARTIAL_META = "partial.json"
TRAINED = "trained.yaml"


class Carried(BaseModel):
    """What ``partial.json`` says of the rows beside it."""

    key: str
    spec_fingerprint: str
    sittings: int = 1
    wall_time_s: float = Field(default=0.0, description="Scoring time of the sittings so far.")
    codes: list[str] = Field(default_factory=list, description="The commit of each sitting.")
    training: dict[str, Any] | None = None


def file_fingerprint(path: Path) -> str:
    """What a carried program file is keyed by (a DSPy row's ``program.json``)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def has_demos(data: Any) -> bool:
    """Whether a saved DSPy program holds demonstrations (training text: never recorded)."""
    if isinstance(data, dict):
        return bool(data.get("demos")) or any(has_demos(v) for v in data.values())
    if isinstance(data, list):
        return any(has_demos(v) for v in data)
    return False


def load_carried(
    folder: Path, *, key: str, fingerprint: str
) -> tuple[Carried | None, dict[str, dict[str, Any]]]:
    """The carried meta and rows (by example id) of ``folder``, if they are for this key and
    spec; else nothing (stale rows are left for :class:`CarryWriter` to replace)."""
    meta_path, rows_path = folder / PARTIAL_META, folder / PARTIAL
    if not meta_path.is_file():
        return None, {}
    try:
        meta = Carried.model_validate_json(meta_path.read_text(encoding="utf-8"))
    except ValueError:
        return None, {}
    if meta.key != key or meta.spec_fingerprint != fingerprint:
        return None, {}
    rows = read_jsonl(rows_path) if rows_path.is_file() else []
    return meta, {str(r["id"]): r for r in rows if "id" in r}


def discard(folder: Path) -> None:
    """Remove the partial files (the method finished, or they were for other options)."""
    for name in (PARTIAL, PARTIAL_META):
        (folder / name).unlink(missing_ok=True)


class CarryWriter:
    """Appends each finished example to ``partial.jsonl`` (its extras computed now) and keeps
    ``partial.json``'s wall time current, so nothing scored is lost when the process dies."""

    def __init__(
        self,
        folder: Path,
        *,
        key: str,
        fingerprint: str,
        code: str,
        previous: Carried | None,
        kept: Mapping[str, Mapping[str, Any]],
        row: Callable[[ExampleResult], dict[str, Any]],
        training: dict[str, Any] | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.row = folder, row
        self.began = time.monotonic()
        before = previous.wall_time_s if previous else 0.0
        codes = [*previous.codes, code] if previous else [code]
        if training is None and previous is not None:
            training = previous.training
        self.meta = Carried(
            key=key,
            spec_fingerprint=fingerprint,
            sittings=(previous.sittings + 1) if previous else 1,
            wall_time_s=before,
            codes=codes,
            training=training,
        )
        self.before = before
        # rewrite what is kept (drops stale rows of other options), then append as we go
        with (folder / PARTIAL).open("w", encoding="utf-8") as fh:
            for r in kept.values():
                fh.write(json.dumps(r) + "\n")
        self.save()

    def save(self) -> None:
        """Write ``partial.json`` with the scoring time so far."""
        self.meta.wall_time_s = self.before + (time.monotonic() - self.began)
        write_text(self.folder / PARTIAL_META, self.meta.model_dump_json(indent=2) + "\n")

    def add(self, result: ExampleResult) -> None:
        with (self.folder / PARTIAL).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(self.row(result)) + "\n")
        self.save()


_RESULT_FIELDS = tuple(ExampleResult.model_fields)


def _result(row: Mapping[str, Any]) -> ExampleResult:
    data = {k: row[k] for k in _RESULT_FIELDS if k in row and row[k] is not None}
    data.setdefault("input", "")
    return ExampleResult.model_validate({**data, "error": row.get("error")})


def join(
    report: EvalReport | None,
    carried: Mapping[str, Mapping[str, Any]],
    examples: Sequence[Mapping[str, Any]],
    *,
    wall_time_s: float,
    metric: str,
) -> EvalReport:
    """One report over ``examples``: this sitting's ``report`` (None when every example was
    carried) and the ``carried`` rows, in the examples' order. Tokens, calls and cost add up;
    ``wall_time_s`` is every sitting's scoring time."""
    fresh = {r.id: r for r in (report.results if report else [])}
    results: list[ExampleResult] = []
    for ex in examples:
        key = str(ex["id"])
        if key in fresh:
            results.append(fresh[key])
        elif key in carried:
            results.append(_result(carried[key]))
        else:
            raise ValueError(f"example {key} was neither scored nor carried")
    old = [_result(carried[r.id]) for r in results if r.id not in fresh]

    def total(name: str) -> Any:
        return (getattr(report, name) if report else 0) + sum(getattr(r, name) for r in old)

    return EvalReport.of(
        results,
        input_tokens=total("input_tokens"),
        output_tokens=total("output_tokens"),
        calls=total("calls"),
        cached_calls=total("cached_calls"),
        cost_usd=total("cost_usd"),
        wall_time_s=wall_time_s,
        records=list(report.records) if report else [],
        metric=report.metric if report else metric,
    )
