"""LangSmith: trace forward runs to a per-run project, read them back as execution records,
attach metric scores as feedback, load datasets and record experiments.

Everything here is opt-in and lazy: :func:`langsmith_configured` reads the environment only,
and no ``langsmith.Client`` is created (so nothing reaches the network) unless LangSmith is
configured (``LANGSMITH_API_KEY`` plus ``LANGSMITH_TRACING=true``) or a LangSmith dataset or
experiment is asked for by name.

Why an explicit tracer instead of LangChain's environment tracer: the project is the ANN run's
own (not ``LANGSMITH_PROJECT``), the client is ours to flush before reading the runs back, and
the same ``Run`` objects feed the local :class:`~ann_langgraph.tracing.TraceRecorder`, so the
records rebuilt from LangSmith equal the local ones field for field (timings included).

Configuration lives in ``langsmith_client``, datasets in ``langsmith_datasets``; their names
are re-exported here.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from langchain_core.tracers.langchain import LangChainTracer
from langchain_core.tracers.schemas import Run

from .langsmith_client import LangSmithError, langsmith_configured, make_client, new_run_id
from .langsmith_datasets import (
    DATASET_PREFIX,
    example_to_row,
    experiment_dataset_id,
    is_langsmith_dataset,
    load_dataset_spec,
    load_langsmith_dataset,
)
from .tracing import ExecutionRecord, TraceRecorder, record_from_run

if TYPE_CHECKING:
    from langsmith import Client

__all__ = [
    "DATASET_PREFIX",
    "LangSmithError",
    "LangSmithSession",
    "LangSmithTraceSource",
    "example_to_row",
    "experiment_dataset_id",
    "is_langsmith_dataset",
    "langsmith_configured",
    "load_dataset_spec",
    "load_langsmith_dataset",
    "make_client",
    "new_run_id",
]

logger = logging.getLogger(__name__)


# -- tracing -----------------------------------------------------------------------------------


class _RecordingTracer(LangChainTracer):
    """LangChain's LangSmith tracer that also hands every finished run to a ``TraceRecorder``
    (and stands in for it: ``records``/``save``). With ``flush_on_end`` a root run's end
    sends everything at once (one-shot commands)."""

    def __init__(
        self,
        *args: Any,
        recorder: TraceRecorder | None = None,
        flush_on_end: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        self.flush_on_end = flush_on_end

    def copy_with_metadata_defaults(self, **kwargs: Any) -> LangChainTracer:
        copy = super().copy_with_metadata_defaults(**kwargs)
        if isinstance(copy, _RecordingTracer):
            copy.recorder, copy.flush_on_end = self.recorder, self.flush_on_end
        return copy

    @property
    def records(self) -> list[ExecutionRecord]:
        return self.recorder.records if self.recorder is not None else []

    def save(self, path: Any, *, append: bool = False) -> Any:
        return (self.recorder or TraceRecorder()).save(path, append=append)

    def _record(self, run: Run) -> None:
        if self.recorder is not None:
            self.recorder.add_run(run)

    def _flush_at_root(self, run: Run) -> None:
        if self.flush_on_end and run.parent_run_id is None:
            self.client.flush()

    def _on_llm_end(self, run: Run) -> None:
        self._record(run)
        super()._on_llm_end(run)

    def _on_llm_error(self, run: Run) -> None:
        self._record(run)
        super()._on_llm_error(run)

    def _on_tool_end(self, run: Run) -> None:
        self._record(run)
        super()._on_tool_end(run)

    def _on_tool_error(self, run: Run) -> None:
        self._record(run)
        super()._on_tool_error(run)

    def _on_chain_end(self, run: Run) -> None:
        self._record(run)
        super()._on_chain_end(run)
        self._flush_at_root(run)

    def _on_chain_error(self, run: Run) -> None:
        self._record(run)
        super()._on_chain_error(run)
        self._flush_at_root(run)


class LangSmithSession:
    """One ANN run's link to LangSmith: a client, the project its runs go to, and its run id.

    Build one with :meth:`from_env` (``None`` when LangSmith is not configured). Pass
    :meth:`tracer` in ``config["callbacks"]`` (instead of the recorder: the tracer feeds it)
    and :meth:`metadata` in ``config["metadata"]``; scores go back with :meth:`feedback`.
    """

    def __init__(
        self,
        *,
        project: str,
        run_id: str,
        client: Client | None = None,
        reference_dataset_id: str | None = None,
        description: str | None = None,
    ) -> None:
        self.project = project
        self.run_id = run_id
        self.reference_dataset_id = reference_dataset_id
        self.description = description
        self._client = client
        self._project_id: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(
        cls,
        *,
        run_id: str,
        project: str | None = None,
        client: Client | None = None,
    ) -> LangSmithSession | None:
        """A session for ``run_id`` (project ``project`` or ``ann-<run_id>``) when LangSmith is
        configured, else ``None`` (without touching the network)."""
        if client is None and not langsmith_configured():
            return None
        return cls(project=project or f"ann-{run_id}", run_id=run_id, client=client)

    @property
    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = make_client()
            return self._client

    @property
    def project_id(self) -> str:
        """The project's id, creating the project on first use (idempotent)."""
        with self._lock:
            if self._project_id is not None:
                return self._project_id
        project = self.client.create_project(
            self.project,
            description=self.description,
            metadata={"ann_run_id": self.run_id},
            reference_dataset_id=self.reference_dataset_id,
            upsert=True,
        )
        with self._lock:
            self._project_id = str(project.id)
            return self._project_id

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """Run metadata: ``ann_run_id`` plus ``extra`` (``None`` values dropped)."""
        return {"ann_run_id": self.run_id, **{k: v for k, v in extra.items() if v is not None}}

    def tracer(
        self,
        *,
        recorder: TraceRecorder | None = None,
        example_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        flush_on_end: bool = False,
    ) -> _RecordingTracer:
        """A tracer to this session's project; ``recorder`` receives the same runs;
        ``example_id`` links the root run to a LangSmith dataset example (experiments);
        ``metadata`` is added to every run it uploads (not to the recorder's runs)."""
        self.project_id  # noqa: B018 - create the project (with its dataset link) first
        return _RecordingTracer(
            example_id=example_id,
            project_name=self.project,
            client=self.client,
            recorder=recorder,
            metadata={k: str(v) for k, v in metadata.items()} if metadata else None,
            flush_on_end=flush_on_end,
        )

    def feedback(
        self, run_id: str | uuid.UUID, *, key: str, score: float, comment: str | None = None
    ) -> None:
        """Attach a metric score (and its textual feedback) to a root run."""
        self.client.create_feedback(
            run_id,
            key=key,
            score=score,
            comment=comment or None,
            trace_id=run_id,  # a root run is its own trace; lets the client batch the upload
            session_id=self.project_id,
        )

    def flush(self) -> None:
        """Send everything buffered (runs and feedback) now."""
        if self._client is not None:
            self._client.flush()

    def finish(self) -> None:
        """Flush and mark the project ended (what LangSmith shows as an experiment's end)."""
        self.flush()
        if self._project_id is not None:
            self.client.update_project(self._project_id, end_time=datetime.now(UTC))

    def trace_source(
        self, *, expected_roots: int | None = None, **metadata: Any
    ) -> LangSmithTraceSource:
        """A :class:`LangSmithTraceSource` over this run's runs matching ``metadata``."""
        return LangSmithTraceSource(
            project=self.project,
            metadata=self.metadata(**metadata),
            client=self.client,
            expected_roots=expected_roots,
            flush=self.flush,
        )


# -- reading runs back -------------------------------------------------------------------------


def _metadata_filter(metadata: Mapping[str, Any]) -> str:
    """LangSmith's filter language: every ``key == value`` pair of ``metadata`` must hold."""

    def lit(value: Any) -> str:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    pairs = [
        f"and(eq(metadata_key, {lit(k)}), eq(metadata_value, {lit(v)}))"
        for k, v in sorted(metadata.items())
    ]
    if not pairs:
        raise ValueError("a LangSmith trace source needs at least one metadata key to filter on")
    return pairs[0] if len(pairs) == 1 else f"and({', '.join(pairs)})"


def _query_runs(client: Client, *, project: str, filter: str) -> list[Any]:
    """The one place that calls ``Client.list_runs`` (deprecated upstream, removal announced for
    2027): swap the query API here when it goes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*list_runs\(\) is deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return list(client.list_runs(project_name=project, filter=filter))


class LangSmithTraceSource:
    """Execution records read back from LangSmith: the runs of ``project`` whose metadata
    matches ``metadata`` (e.g. ``{"ann_run_id": ..., "ann_eval_id": ...}``), rebuilt with
    :func:`~ann_langgraph.tracing.record_from_run`: the same interface as
    :class:`~ann_langgraph.tracing.LocalTraceSource`.

    LangSmith indexes runs a little after they are sent, so with ``expected_roots`` it polls
    until that many finished root runs (one per example) are visible and the run count is
    stable, for at most ``timeout_s`` seconds (then :class:`LangSmithError`).
    """

    def __init__(
        self,
        *,
        project: str,
        metadata: Mapping[str, Any],
        client: Client | None = None,
        expected_roots: int | None = None,
        timeout_s: float = 60.0,
        poll_s: float = 0.5,
        flush: Any = None,
    ) -> None:
        self.project = project
        self.metadata = dict(metadata)
        self._client = client
        self.expected_roots = expected_roots
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._flush = flush

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = make_client()
        return self._client

    def _fetch(self) -> list[Any]:
        if self._flush is not None:
            self._flush()
        filter_ = _metadata_filter(self.metadata)
        deadline = time.monotonic() + self.timeout_s
        last = -1
        while True:
            try:
                runs = _query_runs(self.client, project=self.project, filter=filter_)
            except Exception as exc:
                if "not found" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise LangSmithError(f"reading runs from LangSmith failed: {exc}") from exc
                runs = []
            if self.expected_roots is None:
                return runs
            roots = [
                r
                for r in runs
                if getattr(r, "parent_run_id", None) is None and getattr(r, "end_time", None)
            ]
            if len(roots) >= self.expected_roots and len(runs) == last:
                return runs
            if time.monotonic() >= deadline:
                raise LangSmithError(
                    f"LangSmith project {self.project!r} shows {len(roots)} of "
                    f"{self.expected_roots} finished runs after {self.timeout_s:g}s"
                )
            last = len(runs)
            time.sleep(self.poll_s if len(roots) < self.expected_roots else self.poll_s / 5)

    def records(self, *, example_ids: Iterable[str] | None = None) -> list[ExecutionRecord]:
        wanted = set(example_ids) if example_ids is not None else None
        out = [r for r in (record_from_run(run) for run in self._fetch()) if r is not None]
        out = [r for r in out if wanted is None or r.example_id in wanted]
        return sorted(out, key=lambda r: (r.start_time or "", r.run_id))
