"""The optimizer graph's state, its reducers, and the usage bookkeeping every node shares."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypedDict

from ..pricing import price_for
from . import prompts

__all__ = [
    "OptimizerState",
    "add_usage",
    "compact_records",
    "evidence_records",
    "merge_demo_pool",
    "paid_so_far",
    "usage_of",
]


def add_usage(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(left or {})
    for key, value in (right or {}).items():
        out[key] = out.get(key, 0) + value
    return out


def _proposals(left: list[dict[str, Any]] | None, right: Any) -> list[dict[str, Any]]:
    """Reducer: ``"reset"`` clears (each step), lists append (one per repairer)."""
    if right == "reset":
        return []
    return [*(left or []), *(right or [])]


DEMO_POOL_SIZE = 16


def merge_demo_pool(
    left: dict[str, list[dict[str, Any]]] | None, right: dict[str, list[dict[str, Any]]] | None
) -> dict[str, list[dict[str, Any]]]:
    """Reducer: per agent, keep the first ``DEMO_POOL_SIZE`` distinct training examples."""
    out = {key: list(rows) for key, rows in (left or {}).items()}
    for key, rows in (right or {}).items():
        kept = out.setdefault(key, [])
        seen = {row["source"] for row in kept}
        for row in rows:
            if row["source"] not in seen and len(kept) < DEMO_POOL_SIZE:
                kept.append(row)
                seen.add(row["source"])
    return out


class OptimizerState(TypedDict, total=False):
    # inputs
    spec: dict[str, Any]
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    # progress
    version: int
    best_score: float
    best_val: dict[str, float]
    best_tokens: dict[str, int]  # the current version's tokens per validation example
    epoch: int
    step: int
    global_step: int
    batches: list[list[str]]
    epochs_without_gain: int
    # one step's work
    batch: dict[str, Any]
    gradient: dict[str, Any]
    proposals: Annotated[list[dict[str, Any]], _proposals]
    candidates: list[dict[str, Any]]
    decision: dict[str, Any]
    step_usage_start: dict[str, Any]
    # logs
    history: Annotated[list[dict[str, Any]], operator.add]
    versions: Annotated[list[dict[str, Any]], operator.add]
    usage: Annotated[dict[str, Any], add_usage]
    stop_reason: str
    # when this run began (time.time()); with a cache, its ledger since then counts as paid
    ledger_since: float
    # successful training traces per "layer/agent": the source of bootstrapped demonstrations
    demo_pool: Annotated[dict[str, list[dict[str, Any]]], merge_demo_pool]
    # every fully validated spec with its per-example scores (optimize.pool), and the index
    # of the step's parent in it (None: the best spec)
    pool: Annotated[list[dict[str, Any]], operator.add]
    parent: int | None


def usage_of(report: Any) -> dict[str, Any]:
    """What an evaluation paid for: cached calls and their tokens are free. ``rollouts``
    counts the examples evaluated, cached or not (the unit every optimizer's budget is
    compared in: GEPA's metric calls, an example run through the program)."""
    return {
        "rollouts": report.n,
        "calls": report.calls - report.cached_calls,
        "cached_calls": report.cached_calls,
        "input_tokens": report.input_tokens - report.cached_input_tokens,
        "output_tokens": report.output_tokens - report.cached_output_tokens,
        "cost_usd": report.cost_usd,
    }


def paid_so_far(
    cache: Any, state: Mapping[str, Any], *, prices: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run's usage, raised to what the cache's ledger says was paid since ``ledger_since``.

    A step killed mid-way never reaches the checkpoint's ``usage``, yet its finished calls were
    paid (and cached, so the resume replays them for free): the ledger still counts them.
    """
    usage = dict(state.get("usage") or {})
    since = state.get("ledger_since")
    if since is None or cache is None or not hasattr(cache, "spent"):
        return usage
    ledger = cache.spent(since=since)
    for key in ("calls", "input_tokens", "output_tokens"):
        usage[key] = max(int(usage.get(key, 0)), int(ledger[key]))
    usage["reused_input_tokens"] = int(ledger.get("reused_input_tokens", 0))
    ledger_cost = 0.0
    for model, row in ledger["by_model"].items():
        price = price_for(model, prices) if model else None
        if price is not None:
            ledger_cost += (row["input_tokens"] * price[0] + row["output_tokens"] * price[1]) / 1e6
    usage["cost_usd"] = max(float(usage.get("cost_usd", 0.0)), ledger_cost)
    return usage


def compact_records(records: Sequence[Any], chars: int = 1500) -> list[dict[str, Any]]:
    out = []
    for r in records:
        out.append(
            {
                "layer": r.layer,
                "agent_id": r.agent_id,
                "kind": r.kind,
                "aggregator": r.aggregator,
                "example_id": r.example_id,
                "output": prompts.clip(r.output, chars),
                # what the agent was asked (reflection shows it beside the output)
                "input": prompts.clip(getattr(r, "user_message", "") or "", chars),
                "max_tokens": getattr(r, "max_tokens", None),
                "error": r.error,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "sample": r.sample,
                "truncated": r.truncation_note() if r.kind == "llm" else "",
            }
        )
    return out


def evidence_records(records: list[dict[str, Any]], example_id: str) -> list[dict[str, Any]]:
    """One example's records as the critic and the repairers are shown them.

    A model call (or aggregation step) that failed and was then retried successfully, i.e. a
    later record of the same layer, agent, kind and sample has no error, is left out: a timeout
    or a rate limit the retry policy got past says nothing about the spec, and showing it would
    make the optimizer's prompt (so its answer, and the response cache's key) depend on
    transient faults, so a re-run would not be free and reproducible. Tool errors stay (an
    agent's bad tool call is its behaviour); the full records are in ``records/``.
    """
    mine = [r for r in records if r["example_id"] == example_id]

    def slot(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["layer"], r["agent_id"], r["kind"], r.get("sample", 0))

    recovered: set[int] = set()
    for i, r in enumerate(mine):
        if (r["error"] and r["kind"] != "tool") and any(
            not later["error"] and slot(later) == slot(r) for later in mine[i + 1 :]
        ):
            recovered.add(i)
    return [r for i, r in enumerate(mine) if i not in recovered]
