"""What every node of the backward phase shares: settings, models, and how to evaluate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable

from ..evaluate import EvalReport, evaluate
from ..executors import Executor, LocalExecutor
from ..langsmith_io import LangSmithSession
from ..metrics import Metric
from ..models import ModelsArg
from ..pricing import cost_usd
from ..spec import GraphSpec
from .config import Budget, OptimizerConfig

__all__ = ["OptimizerContext"]


@dataclass
class OptimizerContext:
    """Built once by ``create_optimizer``; nodes read it and never change it."""

    cfg: OptimizerConfig
    budget: Budget
    metric: Metric
    models: ModelsArg
    opt_model: Runnable[Any, Any]
    opt_label: str
    cache: Any = None
    prices: dict[str, tuple[float, float]] | None = None
    on_event: Callable[[str, dict[str, Any]], None] | None = None
    langsmith: LangSmithSession | None = None
    trace_source: str = "local"
    executor: Executor | None = None

    def emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, data)

    def run_eval(
        self,
        spec: GraphSpec,
        examples: list[dict[str, Any]],
        *,
        label: str = "",
        scored_before: Sequence[float] = (),
        total: int | None = None,
        **metadata: Any,
    ) -> EvalReport:
        """Evaluate ``spec``; with a ``label``, emit an ``evaluating`` event per finished
        example (``scored_before``: the scores earlier chunks of the same evaluation gave, of
        ``total`` in all), so a long validation shows progress instead of minutes of silence."""
        on_result = None
        if label and self.on_event is not None:
            scores: list[float] = list(scored_before)
            of = total if total is not None else len(scores) + len(examples)

            def on_result(result: Any) -> None:
                scores.append(result.score)
                self.emit(
                    "evaluating",
                    what=label,
                    done=len(scores),
                    total=of,
                    mean=sum(scores) / len(scores),
                )

        return evaluate(
            spec,
            examples,
            self.metric,
            models=self.models,
            concurrency=self.cfg.concurrency
            or (self.executor or LocalExecutor()).default_concurrency(
                spec, self.models, otherwise=4
            ),
            timeout_s=self.cfg.timeout_s,
            cache=self.cache,
            progress=False,
            metadata=metadata,
            prices=self.prices,
            langsmith=self.langsmith,
            executor=self.executor,
            on_result=on_result,
        )

    def llm_usage(self, raw_usage: dict[str, int]) -> dict[str, Any]:
        """The optimizer model's own calls, priced."""
        tin, tout = raw_usage.get("input_tokens", 0), raw_usage.get("output_tokens", 0)
        return {
            "calls": raw_usage.get("calls", 0),
            "cached_calls": raw_usage.get("cached_calls", 0),
            "input_tokens": tin,
            "output_tokens": tout,
            "cost_usd": cost_usd(self.opt_label, tin, tout, prices=self.prices),
        }
