"""What an executor runs: one example of one evaluation, and the contract executors keep.

``evaluate`` prepares an :class:`EvalJob` (the compiled graph or the spec, the metric, the
timeout, the metadata every invoke carries) and hands the examples to an :class:`Executor`,
which runs :func:`run_example` for each of them, where it sees fit (this process, a Ray
worker), and gives back one :class:`ExampleOutcome` per example in dataset order. The report
is built on the driver from the outcomes, so every executor prints the same report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables.config import var_child_runnable_config
from langsmith import tracing_context as ls_tracing_context
from pydantic import BaseModel, Field

from ..metrics import Metric, Score, as_score
from ..models import ModelResolver, ModelsArg
from ..sandbox import FILES_CONFIG_KEY
from ..spec import GraphSpec
from ..tracing import ExecutionRecord

__all__ = [
    "DEFAULT_CONCURRENCY",
    "EvalJob",
    "ExampleOutcome",
    "ExampleResult",
    "Executor",
    "OnResult",
    "default_concurrency",
    "run_example",
]

DEFAULT_CONCURRENCY = 8  # examples at once on provider models (the embedded one gets 1)


def default_concurrency(
    spec_or_graph: Any, models: ModelsArg = None, *, otherwise: int = DEFAULT_CONCURRENCY
) -> int:
    """Examples to run at once when the caller does not say: on the embedded model only, the
    parallel slots its server really serves (1 on the fallback server).

    More examples than slots only wait for each other, and that wait counts against each
    example's timeout: a many-call spec times out at 4 at once where it finishes at 1 on a
    one-slot server, for the same total time. Compiled graphs, whose models cannot be
    inspected, get ``otherwise``.
    """
    if not isinstance(spec_or_graph, GraphSpec):
        return otherwise
    if not ModelResolver(spec_or_graph, models).only_embedded():
        return otherwise
    from ..local.registry import planned_slots

    return planned_slots()


_ERROR_LIMIT = 2000


class ExampleResult(BaseModel):
    """How one example went."""

    id: str
    input: str
    target: Any = None
    output: str = ""
    score: float = 0.0
    feedback: str = ""
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    latency_s: float = 0.0
    # extensions
    cached_calls: int = 0
    cost_usd: float = 0.0
    run_id: str = Field(default="", description="The example's root run id (its trace id).")


@dataclass
class ExampleOutcome:
    """One example's result with what it left behind: its execution records and which of its
    LLM runs the response cache served (free)."""

    result: ExampleResult
    records: list[ExecutionRecord] = field(default_factory=list)
    hit_runs: set[str] = field(default_factory=set)


@dataclass
class EvalJob:
    """What every example of one evaluation shares.

    ``spec`` is set when the evaluation compiled a spec (executors that run elsewhere send
    it as JSON and compile it there, with ``models`` resolved there); ``graph`` is the graph
    compiled in this process (what the local executor runs).
    """

    graph: Any
    spec: GraphSpec | None
    models: Any
    metric: Metric
    metric_name: str
    timeout_s: float | None
    concurrency: int
    metadata: dict[str, Any]
    output_layer: str | None
    cache: Any = None


#: Called on the driver as each example finishes: (dataset index, outcome).
OnResult = Callable[[int, ExampleOutcome], None]


class Executor(ABC):
    """Runs the examples of an evaluation. ``run`` returns the outcomes in dataset order,
    whatever order they finished in, and calls ``on_result`` once per example as it
    finishes (for progress)."""

    name: str = "executor"

    @abstractmethod
    async def run(
        self,
        job: EvalJob,
        examples: Sequence[dict[str, Any]],
        *,
        callbacks: Callable[[dict[str, Any]], list[Any]],
        records: Callable[[], Sequence[ExecutionRecord]],
        on_result: OnResult,
    ) -> list[ExampleOutcome]:
        """``callbacks(example)``: the driver's callback handlers for that example (its
        recorder, cache-hit tracker, LangSmith tracer); ``records()``: the driver recorder's
        records so far. Executors that run examples elsewhere collect records and hits there
        and return them in the outcomes instead."""

    def default_concurrency(
        self, spec_or_graph: Any, models: Any, *, otherwise: int | None = None
    ) -> int:
        """Examples in flight when the caller does not say: :func:`default_concurrency`
        (the embedded server's slots; ``otherwise``, default 8, for other models)."""
        return default_concurrency(
            spec_or_graph, models, otherwise=DEFAULT_CONCURRENCY if otherwise is None else otherwise
        )

    def start(self) -> None:  # noqa: B027 - most executors hold nothing
        """Start (or connect) what the executor needs; call it from the thread that will stay
        (the main one): a Ray started from a short-lived thread goes down with it. Runs
        otherwise on first use."""

    def close(self) -> None:  # noqa: B027 - most executors hold nothing
        """Release what the executor holds (worker pools, connections)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_LIMIT else text[:_ERROR_LIMIT] + "...[truncated]"


def output_text(out: Any) -> str:
    if isinstance(out, Mapping) and "output" in out:
        value = out["output"]
        return value if isinstance(value, str) else str(value)
    got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
    raise ValueError(f"the graph returned no 'output' (got: {got})")


def truncation(records: Sequence[ExecutionRecord], example_id: str, layer: str | None) -> str:
    """Why a failing answer may be incomplete: the output layer's model hit its token cap."""
    for record in reversed(records):
        if (
            record.example_id == example_id
            and record.kind == "llm"
            and (layer is None or record.layer == layer)
            and record.truncated
        ):
            who = f"{record.layer}/{record.agent_id}"
            return f"the final answer ({who}) was {record.truncation_note()}"
    return ""


async def run_example(
    job: EvalJob,
    graph: Any,
    example: dict[str, Any],
    *,
    callbacks: list[Any],
    records: Callable[[], Sequence[ExecutionRecord]],
    gate: contextlib.AbstractAsyncContextManager[Any] | None = None,
) -> ExampleResult:
    """Invoke ``graph`` on one example under the job's timeout and score it with its metric.

    Never raises for the example's own failures: an invoke that raises or times out, or a
    metric that raises, scores 0 and carries the error text. ``records()`` gives the records
    seen so far (for the truncation note on a failing answer). ``gate`` is held around the
    invoke only (not the metric), as the concurrency limit of the examples.
    """
    example_id = example["id"]
    root_id = uuid.uuid4()
    md: dict[str, Any] = {**job.metadata, "ann_example_id": example_id}
    config: dict[str, Any] = {
        "callbacks": callbacks,
        "metadata": md,
        "max_concurrency": job.concurrency,
        "run_id": root_id,
    }
    if example.get("files"):  # the example's own files, for the python tool's sandbox
        config["configurable"] = {FILES_CONFIG_KEY: dict(example["files"])}
    result = ExampleResult(
        id=example_id, input=example["input"], target=example.get("target"), run_id=str(root_id)
    )
    # Each example is a top-level run: never a child of whatever graph called evaluate()
    # (the optimizer), whose config (checkpointer, callbacks) would otherwise be inherited.
    var_child_runnable_config.set(None)
    timeout_s = job.timeout_s
    async with gate or contextlib.nullcontext():
        t0 = time.perf_counter()
        try:
            # ... nor of a LangSmith run tree the caller's tracer left in the context.
            with ls_tracing_context(parent=False):
                async with asyncio.timeout(timeout_s) as scope:
                    out = await graph.ainvoke({"input": example["input"]}, config=config)
            result.output = output_text(out)
        except TimeoutError as exc:
            if scope.expired():
                result.error = f"timeout: no answer within {timeout_s:g}s"
            else:
                result.error = error_text(exc)
        except Exception as exc:
            result.error = error_text(exc)
        result.latency_s = time.perf_counter() - t0
    if result.error is None:
        try:
            raw = await asyncio.to_thread(job.metric, dict(example), result.output)
            score: Score = as_score(raw)
            result.score, result.feedback = float(score.value), score.feedback
        except Exception as exc:
            result.error = f"metric failed: {error_text(exc)}"
    if result.error is not None:
        result.score = 0.0
        result.feedback = result.feedback or f"error: {result.error}"
    if result.score < 1.0:
        cut = truncation(records(), example_id, job.output_layer)
        if cut:
            result.feedback = f"{result.feedback} [{cut}]".strip()
    return result
