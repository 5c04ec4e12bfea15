"""The held-out test split of a training run: scored before and after, never used to decide.

``train(..., test=rows)`` (``ann train --test FILE``) calls this once training has finished, so
nothing the optimizer did could have seen these rows; the result is a paired comparison of the
starting and the best spec on the same examples.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .evaluate import EvalReport, evaluate
from .metrics import Metric
from .models import ModelsArg
from .spec import GraphSpec
from .stats import paired_sign_test

__all__ = ["check_disjoint", "score_heldout"]


def check_disjoint(test: list[dict[str, Any]], **others: list[dict[str, Any]]) -> None:
    """Refuse a test split that shares inputs with the training or validation rows."""
    seen = {str(r.get("input")): name for name, rows in others.items() for r in rows}
    shared = [str(r["id"]) for r in test if str(r.get("input")) in seen]
    if shared:
        where = seen[str(next(r for r in test if str(r["id"]) == shared[0])["input"])]
        raise ValueError(
            f"the test split shares {len(shared)} inputs with the {where} set (e.g. test row "
            f"{shared[0]!r}); a held-out score needs rows training never saw"
        )


def _row(report: EvalReport) -> dict[str, Any]:
    return {
        "mean": report.mean,
        "ci": [report.ci_low, report.ci_high],
        "n": report.n,
        "errors": report.errors,
        "tokens_per_example": (report.input_tokens + report.output_tokens) / max(1, report.n),
    }


def score_heldout(
    start: GraphSpec,
    best: GraphSpec,
    rows: list[dict[str, Any]],
    metric: Metric | str,
    *,
    models: ModelsArg,
    cache: Any = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    concurrency: int | None = None,
    timeout_s: float = 300.0,
    version: int = 0,
    name: str = "test",
    progress: bool = False,
    executor: Any = None,
) -> dict[str, Any]:
    """Scores of ``start`` and ``best`` on ``rows`` with a two-sided exact paired sign test."""

    def run(spec: GraphSpec, phase: str) -> EvalReport:
        if progress:
            which = "starting" if phase == "test_before" else "best"
            print(
                f"scoring the {which} spec on the held-out {name} split ({len(rows)} examples)",
                file=sys.stderr,
                flush=True,
            )
        return evaluate(
            spec,
            rows,
            metric,
            models=models,
            concurrency=concurrency,
            timeout_s=timeout_s,
            cache=cache,
            progress=progress,
            metadata={"ann_phase": phase},
            prices=dict(prices) if prices else None,
            executor=executor,
        )

    before = run(start, "test_before")
    after = before if best.fingerprint == start.fingerprint else run(best, "test_after")
    old = {r.id: r.score for r in before.results}
    diffs = [r.score - old[r.id] for r in after.results]
    return {
        "name": name,
        "version": version,
        "before": _row(before),
        "after": _row(after),
        **paired_sign_test(diffs),
        "calls": before.calls + (after.calls if after is not before else 0),
        "cached_calls": before.cached_calls + (after.cached_calls if after is not before else 0),
    }
