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

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, Field

from .executors import Executor, resolve_executor
from .langsmith_io import LangSmithError, LangSmithSession, new_run_id
from .metrics import Metric
from .models import ModelsArg, model_label
from .optimize.graph import Budget, OptimizerConfig, create_optimizer, paid_so_far
from .progress import PlainLines, rich_bar, stderr_is_terminal
from .spec import GraphSpec, save_spec

__all__ = ["RunDirError", "TrainResult", "train"]

THREAD_ID = "ann-train"


class RunDirError(RuntimeError):
    """The run directory holds another run (or none to resume)."""


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
    pool: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Every fully validated candidate (optimize.pool): id, parent, source, step, "
        "validation mean and per-example scores, committed version, spec fingerprint.",
    )


# Options that change how fast a run goes, never what it computes: free to differ on resume.
_OPERATIONAL = frozenset({"concurrency"})


def _config_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a resumed run's options differ from the saved ones.

    An option added in a later version, absent from the saved run, counts as unchanged while it
    keeps its default (so upgrading the package does not strand older run directories);
    ``concurrency`` may change freely (responses are cached and seeded per example).
    """
    defaults = OptimizerConfig().model_dump(mode="json")
    return any(
        (old[k] if k in old else defaults.get(k)) != v
        for k, v in new.items()
        if k not in _OPERATIONAL
    ) or any(k not in new for k in old)


def _dataset_hash(rows: list[dict[str, Any]]) -> str:
    text = json.dumps(rows, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _with_ids(rows: Iterable[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        row["id"] = str(row.get("id", f"{prefix}{i}"))
        out.append(row)
    ids = [r["id"] for r in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate example ids in the {prefix.rstrip('-')} set")
    return out


def _model_label(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _model_label(v) for k, v in value.items()}
    return model_label(value)


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
    ``executor``: where evaluations run (``"local"``, ``"ray"``, ``"ray://..."`` or an
    ``Executor``; see ``ann_langgraph.executors``); the optimizer graph, its checkpoints and the
    run directory stay in this process, so ``resume`` works the same with any executor.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.types import Command

    from .cache import SQLiteCache

    started = time.perf_counter()
    run_path = Path(run_dir)
    if trace_source not in ("auto", "local", "langsmith"):
        raise ValueError(f"trace_source must be auto, local or langsmith, not {trace_source!r}")
    if isinstance(train, str | Path) or isinstance(val, str | Path):
        from .datasets import load_dataset

        train = load_dataset(train) if isinstance(train, str | Path) else train
        val = load_dataset(val) if isinstance(val, str | Path) else val
    train_rows = _with_ids(train, "train-")
    val_rows = _with_ids(val, "val-")
    test_rows: list[dict[str, Any]] | None = None
    if test is not None:
        from .datasets import load_dataset
        from .heldout import check_disjoint

        test_rows = _with_ids(load_dataset(test) if isinstance(test, str | Path) else test, "test-")
        check_disjoint(test_rows, train=train_rows, validation=val_rows)
    cfg = (config or OptimizerConfig()).model_copy(
        update={"epochs": epochs, "batch_size": batch_size, "review": review is not None}
    )
    meta = {
        "spec": spec.name,
        "spec_fingerprint": spec.fingerprint,
        "train": {"n": len(train_rows), "hash": _dataset_hash(train_rows)},
        "val": {"n": len(val_rows), "hash": _dataset_hash(val_rows)},
        "metric": metric if isinstance(metric, str) else getattr(metric, "__name__", "custom"),
        "models": _model_label(models),
        "optimizer_model": _model_label(optimizer_model),
        "config": cfg.model_dump(mode="json"),
        "budget": (budget or Budget()).model_dump(mode="json"),
        "created": time.time(),
    }
    run_file = run_path / "run.json"
    old: dict[str, Any] = {}
    if run_file.exists():
        if not resume:
            raise RunDirError(
                f"{run_path} already holds a run; pass resume=True (--resume) to continue it, "
                "or choose another run directory"
            )
        old = json.loads(run_file.read_text())
        changed = [k for k in ("spec_fingerprint", "train", "val") if old.get(k) != meta[k]]
        if _config_changed(old.get("config") or {}, meta["config"]):
            changed.append("config")
        meta["created"] = old.get("created")
        if changed:
            raise RunDirError(
                f"cannot resume {run_path}: {', '.join(changed)} differ from the saved run"
            )
    meta["run_id"] = str(old.get("run_id") or new_run_id(run_path.resolve().name))
    session = LangSmithSession.from_env(
        run_id=meta["run_id"], project=langsmith_project or run_path.resolve().name
    )
    if trace_source == "langsmith" and session is None:
        raise LangSmithError(
            "trace_source='langsmith' needs LangSmith configured: set LANGSMITH_API_KEY and "
            "LANGSMITH_TRACING=true"
        )
    source: Literal["local", "langsmith"] = (
        "langsmith" if session is not None and trace_source != "local" else "local"
    )
    meta["trace_source"] = source
    if session is not None:
        meta["langsmith_project"] = session.project
    run_path.mkdir(parents=True, exist_ok=True)
    if not run_file.exists() or old.get("run_id") != meta["run_id"]:
        run_file.write_text(json.dumps({**meta, **old}, indent=2) + "\n")
    if not (run_path / "spec.v0.yaml").exists():
        save_spec(spec, run_path / "spec.v0.yaml")

    response_cache = SQLiteCache(run_path / "cache.sqlite") if cache else None
    runner = resolve_executor(executor)
    try:
        runner.start()  # here, in the caller's thread: evaluations run in the graph's threads
        reporter = _Progress(
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
            snapshot = graph.get_state(thread)
            if snapshot.values and resume:
                payload: Any = None
                stopped = str(snapshot.values.get("stop_reason") or "")
                usage_so_far = paid_so_far(response_cache, snapshot.values, prices=prices)
                if (
                    not snapshot.next
                    and "budget reached" in stopped
                    and not (budget or Budget()).exceeded(usage_so_far)
                ):
                    # A run stopped by its budget, resumed with a larger one: continue from the
                    # step boundary where it stopped (check_budget runs again with the new caps).
                    graph.update_state(thread, {"stop_reason": ""}, as_node="advance")
            else:
                payload = {
                    "spec": spec.model_dump(mode="json"),
                    "train": train_rows,
                    "val": val_rows,
                    "ledger_since": meta["created"],
                }
            with reporter:
                while True:
                    # A node's update arrives before the step's checkpoint is written, so
                    # `graph.get_state` then still shows the state before it (history.jsonl lagged a
                    # row behind). The "values" chunk of a step is the state after it, and with
                    # durability="sync" it only arrives once that checkpoint is on disk: the files
                    # are rewritten from it, never ahead of what a resume would start from.
                    done: list[tuple[str, Any]] = []
                    stream = graph.stream(
                        payload, thread, stream_mode=["updates", "values"], durability="sync"
                    )
                    for mode, chunk in cast(Iterator[tuple[str, Any]], stream):
                        if mode == "updates":
                            done += [(n, d) for n, d in chunk.items() if n != "__interrupt__"]
                            continue
                        for node, data in done:
                            _sync_outputs(run_path, chunk, node, data)
                            reporter.update(node, chunk)
                        done = []
                    pending = graph.get_state(thread)
                    for node, data in done:  # a step that ended in an interrupt
                        _sync_outputs(run_path, pending.values, node, data)
                        reporter.update(node, pending.values)
                    if pending.next and pending.interrupts and review is not None:
                        payload = Command(resume=review(pending.interrupts[0].value))
                        continue
                    break
            final = graph.get_state(thread).values
        _sync_outputs(run_path, final, "final", {})
        best = GraphSpec.model_validate(final["spec"])
        save_spec(best, run_path / "best.yaml")
        wall = time.perf_counter() - started
        from .report import pool_summary, write_report

        # what was really paid: checkpointed usage, raised by the cache's ledger (calls finished in
        # a step that a crash cut short are in the ledger, and free on resume)
        paid = paid_so_far(response_cache, final, prices=prices)
        heldout = None
        if test_rows is not None:
            from .heldout import score_heldout

            heldout = score_heldout(
                GraphSpec.model_validate(final["versions"][0]["spec"]),
                best,
                test_rows,
                metric,
                models=models,
                cache=response_cache,
                prices=prices,
                concurrency=cfg.concurrency,
                timeout_s=cfg.timeout_s,
                version=int(final.get("version", 0)),
                progress=progress,
                executor=runner,
            )
            (run_path / "test.json").write_text(json.dumps(heldout, indent=2) + "\n")
        report_path = write_report(
            run_path,
            final,
            wall_time_s=time.perf_counter() - started,
            cache_stats=response_cache.stats() if response_cache else None,
            paid=paid,
            test=heldout,
        )
        if response_cache is not None:
            response_cache.close()  # folds the WAL into cache.sqlite: the run dir is self-contained
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
        )
    finally:
        if runner is not executor:  # made here from a name: ours to close
            runner.close()


def _sync_outputs(run_path: Path, state: dict[str, Any], node: str, data: dict[str, Any]) -> None:
    """Rewrite the run directory's files from checkpointed state (idempotent, so resume-safe)."""
    if node in ("forward",) and isinstance(data, dict) and data.get("batch"):
        step = state.get("global_step", 0)
        path = run_path / "records" / f"step-{step:04d}.jsonl"
        path.parent.mkdir(exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for record in data["batch"]["records"]:
                fh.write(json.dumps(record, default=str) + "\n")
    if node in ("setup", "decide", "momentum", "final"):
        versions = state.get("versions") or []
        lineage = []
        for row in versions:
            path = run_path / f"spec.v{row['version']}.yaml"
            if not path.exists():
                save_spec(GraphSpec.model_validate(row["spec"]), path)
            lineage.append({k: v for k, v in row.items() if k != "spec"})
        _write_jsonl(run_path / "versions.jsonl", lineage)
        _write_jsonl(run_path / "history.jsonl", state.get("history") or [])


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
    tmp.replace(path)


class _Progress:
    """The numbers a person watches during training: a rich bar over steps on a terminal; in a
    log a plain line per finished step and at most one a minute between (``progress``)."""

    def __init__(self, *, enabled: bool, epochs: int, steps: int) -> None:
        self.enabled = enabled
        self.total = epochs * steps
        self._progress: Any = None
        self._task: Any = None
        self._plain: PlainLines | None = None
        self._steps_seen = 0
        self._last = "starting"

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        if not stderr_is_terminal():
            self._plain = PlainLines()
            return self
        self._progress = rich_bar("[bold]train[/]", "{task.description}")
        self._progress.__enter__()
        self._task = self._progress.add_task(
            "starting: scoring the starting spec", total=self.total
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Progress inside a node: an evaluation that takes minutes says how far it got."""
        if kind != "evaluating" or (self._progress is None and self._plain is None):
            return
        text = f"{data['what']}: {data['done']}/{data['total']}, mean {data['mean']:.2f}"
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._last} | {text}")
        elif self._plain is not None:
            self._plain.print(
                f"train {self._steps_seen}/{self.total} steps | {text} | ",
                milestone=data["done"] == data["total"],
            )

    def update(self, node: str, state: dict[str, Any]) -> None:
        if self._progress is None and self._plain is None:
            return
        history = state.get("history") or []
        accepted = sum(1 for h in history if (h.get("decision") or {}).get("accepted"))
        rejected = sum(1 for h in history for c in h.get("candidates", []) if not c.get("accepted"))
        usage = state.get("usage") or {}
        tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        batch = (state.get("batch") or {}).get("mean")
        text = (
            f"epoch {state.get('epoch', 0) + 1} step {state.get('step', 0) + 1} | {node} | "
            f"batch {'-' if batch is None else f'{batch:.2f}'} | "
            f"best val {state.get('best_score', 0):.3f} (v{state.get('version', 0)}) | "
            f"{accepted} accepted, {rejected} rejected | {tokens} tok, "
            f"${float(usage.get('cost_usd', 0)):.4f}"
        )
        self._last = text
        if self._progress is not None:
            self._progress.update(self._task, completed=len(history), description=text)
        elif self._plain is not None:
            finished_a_step = len(history) > self._steps_seen
            self._steps_seen = len(history)
            self._plain.print(
                f"train {len(history)}/{self.total} steps | {text} | ", milestone=finished_a_step
            )
