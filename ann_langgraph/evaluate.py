"""Run a graph over a dataset: bounded concurrency, timeouts, scores, tokens, cost, traces.

``evaluate(spec_or_graph, dataset, metric, ...)`` runs every example through the graph with
``graph.ainvoke`` (at most ``concurrency`` at a time, each under a hard ``timeout_s``), scores the
final output with the metric, and returns an :class:`EvalReport`: the mean with a 95% confidence
interval, one :class:`ExampleResult` per example (in dataset order), tokens, LLM calls, cached
calls, cost, and the execution records of the run (each carrying its example id), which is what
the backward phase reads.

Failures never stop the run: an example that raises, times out, or whose metric raises scores 0
and carries the error text. Cached calls (served by an ``SQLiteLLMCache``) are counted in
``calls`` and tokens like any call (their records look like the original's), reported in
``cached_calls``/``cached_*_tokens``, and cost nothing.

With LangSmith configured (``LANGSMITH_API_KEY`` and ``LANGSMITH_TRACING=true``) every example
is also traced to a LangSmith project of its own run (``ann-<run id>``), its root run carrying
``ann_run_id``/``ann_eval_id``/``ann_example_id``/``ann_spec`` metadata and the metric score as
feedback; ``experiment=`` records the evaluation as a LangSmith experiment on the dataset it
was loaded from (``"langsmith:<name>"``). Without LangSmith configured nothing leaves the
process (see ``ann_langgraph.langsmith_io``).

``executor=`` chooses where the examples run (``ann_langgraph.executors``): this process by
default, or a Ray cluster (``"ray"``, ``"ray://HOST:PORT"``); the report is built here either
way, from the results and records the examples send back.

``evaluate`` is for synchronous code; from async code (or Jupyter) ``await aevaluate(...)``.
A timed-out example is abandoned, not interrupted: a model call already running in a worker
thread finishes in the background (``evaluate`` does not wait for it; records it produces late
reach ``recorder`` but not the report).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from langchain_core.caches import BaseCache

from .cache import CacheHitTracker
from .datasets import load_dataset, prepare_dataset
from .eval_report import EvalReport, build_report, with_usage
from .executors import EvalJob, ExampleOutcome, ExampleResult, Executor, resolve_executor
from .executors.base import DEFAULT_CONCURRENCY, default_concurrency
from .langsmith_io import LangSmithSession, experiment_dataset_id, new_run_id
from .metrics import Metric, get_metric, metric_name
from .models import ModelsArg
from .pricing import Price
from .progress import PlainLines, rich_bar, stderr_is_terminal
from .spec import GraphSpec
from .stats import confidence_interval
from .tracing import TraceRecorder

__all__ = [
    "EvalReport",
    "ExampleResult",
    "aevaluate",
    "confidence_interval",
    "default_concurrency",
    "evaluate",
    "load_dataset",
]

T = TypeVar("T")


# -- evaluation ----------------------------------------------------------------------------


def _resolve_graph(spec_or_graph: Any, models: ModelsArg, cache: BaseCache | None) -> Any:
    if isinstance(spec_or_graph, GraphSpec | str | Path | dict):
        from .compile import compile_graph

        # checkpointer=False: examples are independent runs, even when evaluate() is called
        # inside a node of a checkpointed graph (the optimizer), whose saver would be inherited.
        return compile_graph(spec_or_graph, models=models, cache=cache, checkpointer=False)
    if hasattr(spec_or_graph, "ainvoke"):
        if models is not None:
            raise ValueError(
                "models= applies only when evaluate() compiles a spec; the graph given is "
                "already compiled (pass models= to compile_graph instead)"
            )
        if cache is not None:
            import warnings

            warnings.warn(
                "cache= is not attached to an already compiled graph; compile it with "
                "compile_graph(..., cache=cache) (cached calls are still detected per call)",
                RuntimeWarning,
                stacklevel=3,
            )
        return spec_or_graph
    raise TypeError(
        "evaluate() needs a GraphSpec (or a spec path/dict) or a compiled graph, got "
        f"{type(spec_or_graph).__name__}"
    )


class _PlainProgress:
    """The evaluation's progress for logs (``progress.PlainLines``), with a bar's interface."""

    def __init__(self) -> None:
        self.lines = PlainLines()
        self.done = self.total = 0

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, _name: str, *, total: int, **_fields: Any) -> int:
        self.total = total
        return 0

    def update(self, _task: int, *, advance: int, mean: float, errors: int) -> None:
        self.done += advance
        self.lines.print(
            f"eval {self.done}/{self.total}  mean {mean:.3f}  errors {errors}  ",
            milestone=self.done >= self.total,
        )


def _progress(enabled: bool) -> Any:
    if enabled and not stderr_is_terminal():
        return _PlainProgress()
    return rich_bar(
        "eval",
        "mean {task.fields[mean]:.3f}  errors {task.fields[errors]}",
        transient=True,
        disable=not enabled,
    )


async def aevaluate(
    spec_or_graph: Any,
    dataset: Iterable[Mapping[str, Any]] | str | Path,
    metric: Metric | str,
    *,
    models: ModelsArg = None,
    concurrency: int | None = None,
    timeout_s: float | None = 300.0,
    cache: BaseCache | None = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
    recorder: TraceRecorder | None = None,
    prices: Mapping[str, Price] | None = None,
    langsmith: LangSmithSession | Literal["auto"] | None = "auto",
    experiment: str | bool | None = None,
    executor: Executor | str | None = None,
    on_result: Callable[[ExampleResult], None] | None = None,
) -> EvalReport:
    """Async :func:`evaluate` (same arguments and result), for code already in an event loop.

    Sync graph nodes run in the loop's default executor: give your loop one with enough
    threads for ``concurrency`` examples times their parallel agents (``evaluate`` does).
    """
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError("timeout_s must be positive (or None for no timeout)")
    score_fn: Metric = get_metric(metric) if isinstance(metric, str) else metric
    examples = prepare_dataset(dataset)
    if isinstance(spec_or_graph, str | Path | dict):
        from .compile import _coerce_spec

        spec_or_graph = _coerce_spec(spec_or_graph)
    runner = resolve_executor(executor)
    if concurrency is None:
        concurrency = runner.default_concurrency(spec_or_graph, models)
    graph = _resolve_graph(spec_or_graph, models, cache) if runner.name == "local" else None
    recorder = recorder if recorder is not None else TraceRecorder()
    before = {r.run_id for r in recorder.records}
    tracker = CacheHitTracker()
    extra_md = dict(metadata or {})
    fingerprint = spec_or_graph.fingerprint if isinstance(spec_or_graph, GraphSpec) else None
    label = spec_or_graph.name if isinstance(spec_or_graph, GraphSpec) else "graph"
    session = await asyncio.to_thread(_session_for, langsmith, experiment, examples, label)
    eval_id = str(extra_md.get("ann_eval_id") or uuid.uuid4().hex)
    mname = metric_name(metric if isinstance(metric, str) else score_fn)
    output_layer = spec_or_graph.layers[-1].name if isinstance(spec_or_graph, GraphSpec) else None
    if session is not None and runner.name != "local":
        _warn_no_langsmith(runner.name)
        session = None
    if session is not None:
        extra_md = {**extra_md, **session.metadata(ann_eval_id=eval_id, ann_spec=fingerprint)}
    job = EvalJob(
        graph=graph,
        spec=spec_or_graph if isinstance(spec_or_graph, GraphSpec) else None,
        models=models,
        metric=score_fn,
        metric_name=mname,
        timeout_s=timeout_s,
        concurrency=concurrency,
        metadata=extra_md,
        output_layer=output_layer,
        cache=cache,
    )
    done_scores: list[float] = []
    errors = 0
    started = time.perf_counter()

    def callbacks(example: dict[str, Any]) -> list[Any]:
        if session is None:
            return [recorder, tracker]
        link = example.get("langsmith_example_id") if experiment else None
        return [session.tracer(recorder=recorder, example_id=link), tracker]

    with _progress(progress) as bar:
        task_id = bar.add_task("eval", total=len(examples), mean=0.0, errors=0)

        feedback: list[asyncio.Future[None]] = []

        def finished(_index: int, outcome: ExampleOutcome) -> None:
            nonlocal errors
            done_scores.append(outcome.result.score)
            errors += outcome.result.error is not None
            bar.update(task_id, advance=1, mean=sum(done_scores) / len(done_scores), errors=errors)
            if on_result is not None:  # with its usage, so a caller can save it whole
                mine = [
                    r
                    for r in (*recorder.records, *outcome.records)
                    if r.example_id == outcome.result.id and r.run_id not in before
                ]
                hits = tracker.hit_runs | outcome.hit_runs
                on_result(with_usage(outcome.result, mine, hits, prices))
            if session is not None:  # as each example finishes: a crash later loses none
                feedback.append(
                    asyncio.ensure_future(
                        asyncio.to_thread(_send_feedback, session, outcome.result, mname)
                    )
                )

        try:
            outcomes = await runner.run(
                job,
                examples,
                callbacks=callbacks,
                records=lambda: recorder.records,
                on_result=finished,
            )
        finally:
            if runner is not executor:  # made here from a name: ours to close
                runner.close()
            await asyncio.gather(*feedback)
    for outcome in outcomes:  # what ran elsewhere comes back with its records and hits
        recorder.extend(outcome.records)
        tracker.hit_runs.update(outcome.hit_runs)
    results = [o.result for o in outcomes]
    if session is not None:
        await asyncio.to_thread(session.finish if experiment else session.flush)
    wall = time.perf_counter() - started
    ids = {ex["id"] for ex in examples}
    records = [r for r in recorder.records if r.run_id not in before and r.example_id in ids]
    report = build_report(
        results,
        records,
        tracker.hit_runs,
        prices,
        wall,
        mname,
    )
    if session is not None:
        report.run_id, report.langsmith_project = session.run_id, session.project
    return report


def _session_for(
    langsmith: LangSmithSession | Literal["auto"] | None,
    experiment: str | bool | None,
    examples: list[dict[str, Any]],
    label: str,
) -> LangSmithSession | None:
    """The LangSmith session of one evaluation (``None``: no LangSmith, no network)."""
    if experiment:
        dataset_id = experiment_dataset_id(examples)
        run_id = new_run_id(label)
        return LangSmithSession(
            project=experiment if isinstance(experiment, str) else f"ann-{run_id}",
            run_id=run_id,
            client=langsmith.client if isinstance(langsmith, LangSmithSession) else None,
            reference_dataset_id=dataset_id,
            description=f"ann-langgraph evaluation of {label}",
        )
    if langsmith == "auto":
        return LangSmithSession.from_env(run_id=new_run_id(label))
    return langsmith


def _warn_no_langsmith(name: str) -> None:
    import warnings

    warnings.warn(
        f"LangSmith tracing is not sent from the {name} executor's workers: this evaluation's "
        "records still come back to the report, but no LangSmith project is written "
        "(use the local executor to trace to LangSmith)",
        RuntimeWarning,
        stacklevel=4,
    )


def _send_feedback(session: LangSmithSession, result: ExampleResult, metric: str) -> None:
    """The metric's score and feedback on the example's root run (never fails the run)."""
    try:
        session.feedback(
            result.run_id, key=metric or "score", score=result.score, comment=result.feedback
        )
    except Exception as exc:
        import logging

        logging.getLogger(__name__).warning("LangSmith feedback for %s failed: %s", result.id, exc)


def _run_sync(factory: Callable[[], Coroutine[Any, Any, T]], threads: int) -> T:
    """Run a coroutine on a fresh loop whose default executor is ours and is abandoned at the
    end: a node still blocked in a timed-out example's model call must not hold up the return
    (``asyncio.run`` would wait for it when shutting the executor down)."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ann-eval")
    loop.set_default_executor(executor)
    try:
        return loop.run_until_complete(factory())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            loop.close()


def evaluate(
    spec_or_graph: Any,
    dataset: Iterable[Mapping[str, Any]] | str | Path,
    metric: Metric | str,
    *,
    models: ModelsArg = None,
    concurrency: int | None = None,
    timeout_s: float | None = 300.0,
    cache: BaseCache | None = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
    recorder: TraceRecorder | None = None,
    prices: Mapping[str, Price] | None = None,
    langsmith: LangSmithSession | Literal["auto"] | None = "auto",
    experiment: str | bool | None = None,
    executor: Executor | str | None = None,
    on_result: Callable[[ExampleResult], None] | None = None,
) -> EvalReport:
    """Run ``spec_or_graph`` on every example of ``dataset`` and score it with ``metric``.

    ``spec_or_graph``: a ``GraphSpec`` (or spec path/dict), compiled here with ``models`` and
    ``cache``, or an already compiled graph. ``dataset``: ``{"id", "input", "target", ...}``
    dicts (a missing id becomes the example's index) or a ``.jsonl``/``.json`` path; an
    example's optional ``files`` (``{name: host path}``) go into the invoke's
    ``configurable`` so the ``python`` tool finds them in its sandbox's working directory.
    ``metric``: a metric function or a registered metric name. At most ``concurrency``
    examples run at once (also each invoke's ``max_concurrency``; default
    :func:`default_concurrency`); each gets ``timeout_s`` seconds. Every invoke carries
    ``config={"callbacks": [recorder, ...], "metadata": {**metadata, "ann_example_id": id}}``,
    so the records name their example. ``prices`` extends the price table
    (``ann_langgraph.pricing``). Shows a transient progress bar on a terminal, or a plain line
    every minute when stderr is not one, unless ``progress=False``. Each example's root run id
    is ``ExampleResult.run_id``. ``on_result`` (optional) is called with each example's result,
    its tokens, calls and cost filled in, as it finishes, in finishing order (for progress or
    saving of your own; keep it quick).

    ``langsmith``: ``"auto"`` traces to a new project ``ann-<run id>`` when LangSmith is
    configured (else nothing is sent); a ``LangSmithSession`` traces to its project; ``None``
    adds no LangSmith tracer. ``experiment``: a name (or ``True`` for ``ann-<run id>``) records
    the run as a LangSmith experiment on the dataset the examples were loaded from
    (``"langsmith:<name>"``; needs ``LANGSMITH_API_KEY``).

    Runs its own event loop: from a running loop, ``await aevaluate(...)`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "evaluate() cannot run inside a running event loop (async code, Jupyter); "
            "use `await aevaluate(...)` (from ann_langgraph.evaluate import aevaluate) with the "
            "same arguments"
        )
    return _run_sync(
        lambda: aevaluate(
            spec_or_graph,
            dataset,
            metric,
            models=models,
            concurrency=concurrency,
            timeout_s=timeout_s,
            cache=cache,
            progress=progress,
            metadata=metadata,
            recorder=recorder,
            prices=prices,
            langsmith=langsmith,
            experiment=experiment,
            executor=executor,
            on_result=on_result,
        ),
        threads=min(256, max(16, (concurrency or DEFAULT_CONCURRENCY) * 8)),
    )
