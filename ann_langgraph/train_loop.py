"""The loop that drives the compiled optimizer graph for ``train()``: where a run starts or
resumes, the stream that keeps the run directory in step with each checkpoint, and the review
interrupts a person answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from langchain_core.caches import BaseCache
from langchain_core.runnables import RunnableConfig

from .optimize.graph import Budget, paid_so_far
from .run_dir import sync_outputs
from .spec import GraphSpec
from .train_progress import TrainProgress

__all__ = ["drive", "start_payload"]


def start_payload(
    graph: Any,
    thread: RunnableConfig,
    *,
    resume: bool,
    spec: GraphSpec,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    ledger_since: Any,
    cache: BaseCache | None,
    budget: Budget | None,
    prices: dict[str, tuple[float, float]] | None,
) -> Any:
    """The graph's input: the run's start, or None to continue the checkpointed thread.

    A run stopped by its budget and resumed with a larger one continues from the step
    boundary where it stopped (``check_budget`` runs again with the new caps)."""
    snapshot = graph.get_state(thread)
    if not (snapshot.values and resume):
        return {
            "spec": spec.model_dump(mode="json"),
            "train": train_rows,
            "val": val_rows,
            "ledger_since": ledger_since,
        }
    stopped = str(snapshot.values.get("stop_reason") or "")
    usage_so_far = paid_so_far(cache, snapshot.values, prices=prices)
    if (
        not snapshot.next
        and "budget reached" in stopped
        and not (budget or Budget()).exceeded(usage_so_far)
    ):
        graph.update_state(thread, {"stop_reason": ""}, as_node="advance")
    return None


def drive(
    graph: Any,
    thread: RunnableConfig,
    payload: Any,
    *,
    run_path: Path,
    reporter: TrainProgress,
    review: Callable[[dict[str, Any]], Any] | None,
) -> dict[str, Any]:
    """Stream the graph to its end (answering review interrupts); the final state.

    A node's update arrives before the step's checkpoint is written, so ``graph.get_state``
    then still shows the state before it (history.jsonl lagged a row behind). The "values"
    chunk of a step is the state after it, and with ``durability="sync"`` it only arrives once
    that checkpoint is on disk: the files are rewritten from it, never ahead of what a resume
    would start from.
    """
    from langgraph.types import Command

    with reporter:
        while True:
            done: list[tuple[str, Any]] = []
            stream = graph.stream(
                payload, thread, stream_mode=["updates", "values"], durability="sync"
            )
            for mode, chunk in cast(Iterator[tuple[str, Any]], stream):
                if mode == "updates":
                    done += [(n, d) for n, d in chunk.items() if n != "__interrupt__"]
                    continue
                for node, data in done:
                    sync_outputs(run_path, chunk, node, data)
                    reporter.update(node, chunk)
                done = []
            pending = graph.get_state(thread)
            for node, data in done:  # a step that ended in an interrupt
                sync_outputs(run_path, pending.values, node, data)
                reporter.update(node, pending.values)
            if pending.next and pending.interrupts and review is not None:
                payload = Command(resume=review(pending.interrupts[0].value))
                continue
            break
    return cast(dict[str, Any], graph.get_state(thread).values)
