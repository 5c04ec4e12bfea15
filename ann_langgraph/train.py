"""``train()``: run the backward-phase graph over epochs with a run directory, budgets and resume.

Program + trainset + valset in, better program out (as DSPy optimizers do), saved as files:

    run_dir/
      run.json            what was run (config, spec fingerprint, dataset sizes); no secrets
      checkpoints.sqlite  the LangGraph checkpoint database (resume)
      cache.sqlite        the LLM response cache (re-runs and resumes are free)
      spec.vN.yaml        every committed version (versions.jsonl: parent, patch, rationale, score)
      best.yaml           the best spec
      history.jsonl       one row per step (gradient, proposals, validation, decision)
      records/            execution records of each step's forward pass (JSONL)
      report.md           human-readable report; learning_curve.png
      test.json           with ``test=``: the start and best spec on the held-out split

With LangSmith configured (``LANGSMITH_API_KEY``, ``LANGSMITH_TRACING=true``) every forward
run and the optimizer's own graph are traced to a LangSmith project named after the run
directory, tagged with the run's ``ann_run_id`` (kept in ``run.json``); ``trace_source``
chooses where the backward phase reads its execution records from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, Field

from .cost_front import cheapest_version
from .executors import Executor, resolve_executor
from .langsmith_io import LangSmithError, LangSmithSession, new_run_id
from .metrics import Metric
from .models import ModelsArg
from .optimize.graph import Budget, OptimizerConfig, create_optimizer, paid_so_far
from .run_dir import RunDirError, open_run_dir, sync_outputs, with_ids, write_run_file
from .spec import GraphSpec, save_spec
from .train_loop import drive, start_payload
from .train_progress import TrainProgress

if TYPE_CHECKING:
    from .cache import SQLiteCache

__all__ = ["RunDirError", "TrainResult", "train"]

THREAD_ID = "ann-train"


class TrainResult(BaseModel):
    """What training produced."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    best_spec: GraphSpec
    best_score: float
    baseline_score: float
    history: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    usage: dict[str, Any]
    paid: dict[str, Any] = {}
    stop_reason: str
    run_dir: Path
    report_path: Path
    wall_time_s: float
    test: dict[str, Any] | None = None
    cheapest_version: int | None = Field(
        default=None,
        description="The version saved as cheapest.yaml: the fewest tokens per example within "
        "`margin` of the best validation accuracy (cost_front.cheapest_version).",
    )
    pool: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Every fully validated candidate (optimize.pool): id, parent, source, step, "
        "validation mean and per-example scores, committed version, spec fingerprint.",
    )


def train(
    spec: GraphSpec,
    *,
    train: Iterable[dict[str, Any]] | str | Path,
    val: Iterable[dict[str, Any]] | str | Path,
    metric: Metric | str,
    test: Iterable[dict[str, Any]] | str | Path | None = None,
    models: ModelsArg = None,
    optimizer_model: BaseChatModel | Runnable[Any, Any] | str | None = None,
    epochs: int = 3,
    batch_size: int = 8,
    run_dir: str | Path = "runs/ann",
    budget: Budget | None = None,
    resume: bool = False,
    cache: bool = True,
    config: OptimizerConfig | None = None,
    prices: dict[str, tuple[float, float]] | None = None,
    progress: bool = True,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    review: Callable[[dict[str, Any]], Any] | None = None,
    trace_source: Literal["auto", "local", "langsmith"] = "auto",
    langsmith_project: str | None = None,
    executor: Executor | str | None = None,
    objective: Literal["accuracy", "cost"] | None = None,
) -> TrainResult:
    """Optimize ``spec`` on ``train``, validating every patch on ``val``; see the module doc.

    ``train``/``val`` may also be dataset names for ``load_dataset`` (``"langsmith:<name>"``).
    ``trace_source``: where the backward phase reads execution records: ``"local"`` (the
    in-process recorder), ``"langsmith"`` (queried back from LangSmith by the run's metadata;
    needs LangSmith configured) or ``"auto"`` (LangSmith when configured).
    ``langsmith_project`` overrides the project name (default: the run directory's name).
    ``test``: a held-out split, scored with the starting and the best spec after training
    (never seen by the optimizer; it must share no input with ``train``/``val``); the result is
    in ``TrainResult.test``, ``test.json`` and the report.
    ``objective``: overrides ``config.objective`` (``"cost"``: also commit a candidate as
    accurate at fewer tokens; see ``optimize.objective``).
    ``executor``: where evaluations run (``"local"``, ``"ray"``, ``"ray://..."`` or an
    ``Executor``; see ``ann_langgraph.executors``); the optimizer graph, its checkpoints and the
    run directory stay in this process, so ``resume`` works the same with any executor.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    from .cache import SQLiteCache

    started = time.perf_counter()
    run_path = Path(run_dir)
    if trace_source not in ("auto", "local", "langsmith"):
        raise ValueError(f"trace_source must be auto, local or langsmith, not {trace_source!r}")
    train_rows, val_rows, test_rows = _rows(train, val, test)
    cfg = (config or OptimizerConfig()).model_copy(
        update={
            "epochs": epochs,
            "batch_size": batch_size,
            "review": review is not None,
            **({"objective": objective} if objective is not None else {}),
        }
    )
    meta, old = open_run_dir(
        run_path,
        spec=spec,
        train_rows=train_rows,
        val_rows=val_rows,
        metric=metric,
        models=models,
        optimizer_model=optimizer_model,
        config=cfg,
        budget=budget,
        resume=resume,
    )
    meta["run_id"] = str(old.get("run_id") or new_run_id(run_path.resolve().name))
    session, source = _tracing(meta, run_path, project=langsmith_project, source=trace_source)
    write_run_file(run_path, spec, meta, old)

    response_cache = SQLiteCache(run_path / "cache.sqlite") if cache else None
    runner = resolve_executor(executor)
    try:
        runner.start()  # here, in the caller's thread: evaluations run in the graph's threads
        reporter = TrainProgress(
            enabled=progress, epochs=cfg.epochs, steps=-(-len(train_rows) // cfg.batch_size)
        )

        def events(kind: str, data: dict[str, Any]) -> None:
            reporter.event(kind, data)
            if on_event is not None:
                on_event(kind, data)

        builder = create_optimizer(
            metric=metric,
            models=models,
            optimizer_model=optimizer_model,
            config=cfg,
            budget=budget,
            cache=response_cache,
            prices=prices,
            on_event=events,
            langsmith=session,
            trace_source=source,
            executor=runner,
        )
        with SqliteSaver.from_conn_string(str(run_path / "checkpoints.sqlite")) as saver:
            graph = builder.compile(checkpointer=saver)
            thread: RunnableConfig = {
                "configurable": {"thread_id": THREAD_ID},
                "recursion_limit": 1_000_000,
            }
            if session is not None:  # the optimizer's own graph (critic, repairers) is traced too
                thread["callbacks"] = [session.tracer()]
                thread["metadata"] = session.metadata(ann_phase="optimizer")
            payload = start_payload(
                graph,
                thread,
                resume=resume,
                spec=spec,
                train_rows=train_rows,
                val_rows=val_rows,
                ledger_since=meta["created"],
                cache=response_cache,
                budget=budget,
                prices=prices,
            )
            final = drive(
                graph, thread, payload, run_path=run_path, reporter=reporter, review=review
            )
        return _finish(
            run_path,
            final,
            test_rows=test_rows,
            metric=metric,
            models=models,
            cache=response_cache,
            prices=prices,
            config=cfg,
            progress=progress,
            executor=runner,
            session=session,
            started=started,
        )
    finally:
        if runner is not executor:  # made here from a name: ours to close
            runner.close()


def _finish(
    run_path: Path,
    final: dict[str, Any],
    *,
    test_rows: list[dict[str, Any]] | None,
    metric: Metric | str,
    models: ModelsArg,
    cache: SQLiteCache | None,
    prices: dict[str, tuple[float, float]] | None,
    config: OptimizerConfig,
    progress: bool,
    executor: Executor,
    session: LangSmithSession | None,
    started: float,
) -> TrainResult:
    """After the last step: the best spec's file, the held-out scores, the report, the result."""
    sync_outputs(run_path, final, "final", {})
    best = GraphSpec.model_validate(final["spec"])
    save_spec(best, run_path / "best.yaml")
    wall = time.perf_counter() - started
    from .report import pool_summary, write_report

    # what was really paid: checkpointed usage, raised by the cache's ledger (calls finished in
    # a step that a crash cut short are in the ledger, and free on resume)
    paid = paid_so_far(cache, final, prices=prices)
    heldout = None
    if test_rows is not None:
        from .heldout import score_heldout

        heldout = score_heldout(
            GraphSpec.model_validate(final["versions"][0]["spec"]),
            best,
            test_rows,
            metric,
            models=models,
            cache=cache,
            prices=prices,
            concurrency=config.concurrency,
            timeout_s=config.timeout_s,
            version=int(final.get("version", 0)),
            progress=progress,
            executor=executor,
        )
        (run_path / "test.json").write_text(json.dumps(heldout, indent=2) + "\n")
    report_path = write_report(
        run_path,
        final,
        wall_time_s=time.perf_counter() - started,
        cache_stats=cache.stats() if cache else None,
        paid=paid,
        test=heldout,
        margin=config.margin,
    )
    cheapest = cheapest_version(final.get("versions") or [], margin=config.margin)
    if cheapest is not None:
        save_spec(GraphSpec.model_validate(cheapest["spec"]), run_path / "cheapest.yaml")
    if cache is not None:
        cache.close()  # folds the WAL into cache.sqlite: the run dir is self-contained
    if session is not None:
        session.flush()
    return TrainResult(
        best_spec=best,
        best_score=final["best_score"],
        baseline_score=final["versions"][0]["val_score"],
        history=final.get("history", []),
        versions=[
            {k: v for k, v in row.items() if k != "spec"} for row in final.get("versions", [])
        ],
        usage=final.get("usage", {}),
        paid=paid,
        stop_reason=final.get("stop_reason") or "finished",
        run_dir=run_path,
        report_path=report_path,
        wall_time_s=wall,
        test=heldout,
        pool=pool_summary(final.get("pool") or []),
        cheapest_version=None if cheapest is None else int(cheapest["version"]),
    )


def _tracing(
    meta: dict[str, Any],
    run_path: Path,
    *,
    project: str | None,
    source: Literal["auto", "local", "langsmith"],
) -> tuple[LangSmithSession | None, Literal["local", "langsmith"]]:
    """The LangSmith session (None unless configured) and where records are read from; both
    are noted in ``meta``."""
    session = LangSmithSession.from_env(
        run_id=meta["run_id"], project=project or run_path.resolve().name
    )
    if source == "langsmith" and session is None:
        raise LangSmithError(
            "trace_source='langsmith' needs LangSmith configured: set LANGSMITH_API_KEY and "
            "LANGSMITH_TRACING=true"
        )
    chosen: Literal["local", "langsmith"] = (
        "langsmith" if session is not None and source != "local" else "local"
    )
    meta["trace_source"] = chosen
    if session is not None:
        meta["langsmith_project"] = session.project
    return session, chosen


Rows = Iterable[dict[str, Any]] | str | Path


def _rows(
    train: Rows, val: Rows, test: Rows | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Training, validation and held-out rows, loaded when named and given ids; the held-out
    rows must share no input with the others."""
    from .datasets import load_dataset

    def load(rows: Rows) -> Iterable[dict[str, Any]]:
        return load_dataset(rows) if isinstance(rows, str | Path) else rows

    train_rows, val_rows = with_ids(load(train), "train-"), with_ids(load(val), "val-")
    if test is None:
        return train_rows, val_rows, None
    from .heldout import check_disjoint

    test_rows = with_ids(load(test), "test-")
    check_disjoint(test_rows, train=train_rows, validation=val_rows)
    return train_rows, val_rows, test_rows
