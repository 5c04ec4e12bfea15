"""The report of one evaluation: scores with their 95% CI, and what the run used (tokens,
calls, the part the response cache served, cost), per example and in all.

Kept apart from ``evaluate`` (which runs the examples) because the carried rows of a learning
table, the DSPy baseline and held-out scoring build reports from results they did not run.
A cached call counts in ``calls`` and tokens like any call and costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from .executors import ExampleResult
from .pricing import Price, cost_usd
from .stats import confidence_interval
from .tracing import ExecutionRecord

__all__ = ["EvalReport", "add_call", "build_report", "llm_cost", "with_usage"]


class EvalReport(BaseModel):
    """Scores, usage and traces of one evaluation run.

    ``input_tokens``/``output_tokens``/``calls`` count every LLM call recorded in this run,
    cached or not (a cached call's record carries the tokens of the call it replays);
    ``cached_calls`` and ``cached_*_tokens`` are the part served by the LLM cache, which is
    free: ``cost_usd`` prices only the others. ``records`` are this run's execution records;
    they are part of ``model_dump``/``model_dump_json`` (so a report survives a checkpoint
    round trip whole); use ``model_dump(exclude={"records"})`` for a light copy.
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    results: list[ExampleResult] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    cost_usd: float = 0.0
    wall_time_s: float = 0.0
    records: list[ExecutionRecord] = Field(default_factory=list)
    # extensions
    errors: int = 0
    cached_input_tokens: int = 0
    cached_output_tokens: int = 0
    metric: str = ""
    run_id: str | None = Field(default=None, description="ann_run_id, when traced to LangSmith.")
    langsmith_project: str | None = None

    @classmethod
    def of(cls, results: list[ExampleResult], **fields: Any) -> EvalReport:
        """A report over ``results``: mean, 95% CI, n and errors from them; usage, wall time,
        records and metric from ``fields``."""
        scores = [r.score for r in results]
        low, high = confidence_interval(scores)
        return cls(
            mean=sum(scores) / len(scores) if scores else 0.0,
            ci_low=low,
            ci_high=high,
            n=len(results),
            results=results,
            errors=sum(r.error is not None for r in results),
            **fields,
        )

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.results]

    def summary(self) -> str:
        """One line: ``mean 0.625 (95% CI 0.47-0.76), n=40, 1234 tokens, 120 calls, ...``."""
        cached = f" ({self.cached_calls} cached)" if self.cached_calls else ""
        errors = f", {self.errors} errors" if self.errors else ""
        return (
            f"mean {self.mean:.3f} (95% CI {self.ci_low:.2f}-{self.ci_high:.2f}), n={self.n}, "
            f"{self.input_tokens + self.output_tokens} tokens, {self.calls} calls{cached}, "
            f"${self.cost_usd:.4f}, {self.wall_time_s:.1f}s{errors}"
        )


def llm_cost(
    rec: ExecutionRecord, hit_runs: set[str], prices: Mapping[str, Price] | None
) -> tuple[bool, float]:
    """(served by the cache, what it cost): a cached call is free."""
    cached = rec.run_id in hit_runs
    return cached, 0.0 if cached else cost_usd(
        rec.model, rec.input_tokens, rec.output_tokens, prices
    )


def with_usage(
    result: ExampleResult,
    records: Iterable[ExecutionRecord],
    hit_runs: set[str],
    prices: Mapping[str, Price] | None,
) -> ExampleResult:
    """A copy of ``result`` with the tokens, calls and cost of its LLM ``records``."""
    out = result.model_copy()
    for rec in records:
        if rec.kind == "llm":
            add_call(out, rec, *llm_cost(rec, hit_runs, prices))
    return out


def add_call(result: ExampleResult, rec: ExecutionRecord, cached: bool, cost: float) -> None:
    result.input_tokens += rec.input_tokens
    result.output_tokens += rec.output_tokens
    result.calls += 1
    result.cached_calls += int(cached)
    result.cost_usd += cost


def build_report(
    results: list[ExampleResult],
    records: list[ExecutionRecord],
    hit_runs: set[str],
    prices: Mapping[str, Price] | None,
    wall: float,
    metric: str,
) -> EvalReport:
    by_id = {r.id: r for r in results}
    totals = {"in": 0, "out": 0, "calls": 0, "cached": 0, "cin": 0, "cout": 0, "cost": 0.0}
    for rec in records:
        if rec.kind != "llm":
            continue
        cached, cost = llm_cost(rec, hit_runs, prices)
        totals["in"] += rec.input_tokens
        totals["out"] += rec.output_tokens
        totals["calls"] += 1
        totals["cost"] += cost
        if cached:
            totals["cached"] += 1
            totals["cin"] += rec.input_tokens
            totals["cout"] += rec.output_tokens
        result = by_id.get(rec.example_id or "")
        if result is not None:
            add_call(result, rec, cached, cost)
    return EvalReport.of(
        results,
        input_tokens=int(totals["in"]),
        output_tokens=int(totals["out"]),
        calls=int(totals["calls"]),
        cached_calls=int(totals["cached"]),
        cached_input_tokens=int(totals["cin"]),
        cached_output_tokens=int(totals["cout"]),
        cost_usd=float(totals["cost"]),
        wall_time_s=wall,
        records=records,
        metric=metric,
    )
