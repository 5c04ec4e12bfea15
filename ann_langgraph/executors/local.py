"""The default executor: every example in this process's event loop, at most N at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..tracing import ExecutionRecord
from .base import EvalJob, ExampleOutcome, Executor, OnResult, run_example

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Runs the examples with ``asyncio`` in this process, ``job.concurrency`` at a time.

    Records and cache hits go straight to the driver's own recorder and tracker (passed in
    ``callbacks``), so outcomes carry none of their own.
    """

    name = "local"

    async def run(
        self,
        job: EvalJob,
        examples: Sequence[dict[str, Any]],
        *,
        callbacks: Callable[[dict[str, Any]], list[Any]],
        records: Callable[[], Sequence[ExecutionRecord]],
        on_result: OnResult,
    ) -> list[ExampleOutcome]:
        semaphore = asyncio.Semaphore(job.concurrency)
        outcomes: list[ExampleOutcome | None] = [None] * len(examples)

        async def one(index: int, example: dict[str, Any]) -> None:
            result = await run_example(
                job,
                job.graph,
                example,
                callbacks=callbacks(example),
                records=records,
                gate=semaphore,
            )
            outcome = ExampleOutcome(result=result)
            outcomes[index] = outcome
            on_result(index, outcome)

        await asyncio.gather(*(one(i, ex) for i, ex in enumerate(examples)))
        return [o for o in outcomes if o is not None]

    def __repr__(self) -> str:
        return "LocalExecutor()"
