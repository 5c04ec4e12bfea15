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
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from langchain_core.tracers.langchain import LangChainTracer
from langchain_core.tracers.schemas import Run

from .tracing import ExecutionRecord, TraceRecorder, record_from_run

if TYPE_CHECKING:
    from langsmith import Client

__all__ = [
    "DATASET_PREFIX",
    "LangSmithError",
    "LangSmithSession",
    "LangSmithTraceSource",
    "is_langsmith_dataset",
    "langsmith_configured",
    "load_langsmith_dataset",
    "new_run_id",
]

DATASET_PREFIX = "langsmith:"
_TRUE = ("true", "1", "yes")
logger = logging.getLogger(__name__)


class LangSmithError(RuntimeError):
    """LangSmith was asked for but is not configured, or a LangSmith call failed."""


# -- configuration ---------------------------------------------------------------------------


def _env(name: str) -> str | None:
    """``LANGSMITH_<name>`` or its older ``LANGCHAIN_<name>`` alias, read fresh (the langsmith
    package caches environment reads for the life of the process)."""
    for key in (f"LANGSMITH_{name}", f"LANGCHAIN_{name}"):
        value = os.environ.get(key)
        if value:
            return value
    return None


def _api_key() -> str | None:
    return _env("API_KEY")


def langsmith_configured() -> bool:
    """True when LangSmith tracing is on: an API key and ``LANGSMITH_TRACING=true``
    (or ``LANGCHAIN_TRACING_V2=true``). Reads the environment only."""
    tracing = _env("TRACING") or os.environ.get("LANGCHAIN_TRACING_V2") or ""
    return bool(_api_key()) and tracing.strip().lower() in _TRUE


def make_client() -> Client:
    """A ``langsmith.Client`` from the environment (``LANGSMITH_ENDPOINT``, ``LANGSMITH_API_KEY``);
    raises :class:`LangSmithError` when there is no API key."""
    key = _api_key()
    if not key:
        raise LangSmithError(
            "LangSmith is not configured: set LANGSMITH_API_KEY (and LANGSMITH_TRACING=true to "
            "trace runs)"
        )
    from langsmith import Client

    return Client(api_url=_env("ENDPOINT"), api_key=key)


def new_run_id(name: str) -> str:
    """A readable, unique ANN run id: ``<name>-<UTC timestamp>-<4 hex>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "run"
    return f"{safe}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


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


# -- datasets ----------------------------------------------------------------------------------

_INPUT_KEYS = ("input", "question", "query", "prompt", "text")
_TARGET_KEYS = ("target", "answer", "output", "expected", "label", "reference")


def is_langsmith_dataset(value: Any) -> bool:
    """Whether ``value`` names a LangSmith dataset (``"langsmith:<name>"``)."""
    return isinstance(value, str) and value.startswith(DATASET_PREFIX)


def _parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    body = spec[len(DATASET_PREFIX) :]
    name, _, query = body.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=False)) if query else {}
    unknown = set(options) - {"input", "target", "split", "limit"}
    if unknown or not name:
        raise ValueError(
            f"{spec}: expected langsmith:<dataset>[?input=KEY&target=KEY&split=NAME&limit=N]"
            + (f" (unknown option {', '.join(sorted(unknown))})" if unknown else "")
        )
    return name, options


def _pick(data: Mapping[str, Any], key: str | None, defaults: tuple[str, ...], what: str) -> Any:
    if key is not None:
        if key not in data:
            raise ValueError(f"no {what} field {key!r} (fields: {', '.join(sorted(data))})")
        return data[key]
    for name in defaults:
        if name in data:
            return data[name]
    return None


def example_to_row(
    example: Any, *, input_key: str | None = None, target_key: str | None = None
) -> dict[str, Any]:
    """One LangSmith example as an ANN example (see :func:`load_langsmith_dataset`)."""
    inputs: Mapping[str, Any] = getattr(example, "inputs", None) or {}
    outputs: Mapping[str, Any] = getattr(example, "outputs", None) or {}
    example_id = str(example.id)
    text = _pick(inputs, input_key, _INPUT_KEYS, "input")
    if text is None:
        strings = [v for v in inputs.values() if isinstance(v, str)]
        if not strings:
            raise ValueError(f"example {example_id}: no text input (fields: {sorted(inputs)})")
        text = strings[0]
    if not isinstance(text, str):
        raise ValueError(f"example {example_id}: the input must be a string")
    target = _pick(outputs, target_key, _TARGET_KEYS, "target") if outputs else None
    if target is None and len(outputs) == 1:
        target = next(iter(outputs.values()))
    elif target is None and outputs:
        target = dict(outputs)
    row: dict[str, Any] = {k: v for k, v in inputs.items() if k not in ("id", "input", "target")}
    row.update(
        id=example_id,
        input=text,
        target=target,
        langsmith_example_id=example_id,
        langsmith_dataset_id=str(example.dataset_id),
    )
    return row


def load_langsmith_dataset(
    name: str,
    *,
    input_key: str | None = None,
    target_key: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    client: Client | None = None,
) -> list[dict[str, Any]]:
    """Examples of the LangSmith dataset ``name`` as ANN examples.

    Mapping: ``id`` = the LangSmith example id; ``input`` = ``inputs[input_key]``, else the
    first of ``inputs.input|question|query|prompt|text``, else the first string field;
    ``target`` = ``outputs[target_key]``, else the first of
    ``outputs.target|answer|output|expected|label|reference``, else the only output value,
    else the whole ``outputs`` dict (``None`` without outputs). Other input fields are kept;
    ``langsmith_example_id``/``langsmith_dataset_id`` say where the row came from (experiments
    use them). ``split`` keeps one dataset split; ``limit`` the first N examples.
    """
    if client is None:
        client = make_client()
    from langsmith.utils import LangSmithError as _ClientError

    try:
        examples = list(
            client.list_examples(dataset_name=name, splits=[split] if split else None, limit=limit)
        )
    except _ClientError as exc:
        raise ValueError(f"LangSmith dataset {name!r}: {exc}") from None
    rows = []
    for ex in examples:
        try:
            rows.append(example_to_row(ex, input_key=input_key, target_key=target_key))
        except ValueError as exc:
            raise ValueError(f"LangSmith dataset {name!r}: {exc}") from None
    return rows


def load_dataset_spec(spec: str, *, client: Client | None = None) -> list[dict[str, Any]]:
    """``langsmith:<name>[?input=KEY&target=KEY&split=NAME&limit=N]`` -> examples."""
    name, options = _parse_spec(spec)
    limit = options.get("limit")
    if limit is not None and not limit.isdigit():
        raise ValueError(f"{spec}: limit must be a whole number")
    return load_langsmith_dataset(
        name,
        input_key=options.get("input"),
        target_key=options.get("target"),
        split=options.get("split"),
        limit=int(limit) if limit else None,
        client=client,
    )


def experiment_dataset_id(rows: Iterable[Mapping[str, Any]]) -> str:
    """The one LangSmith dataset every row comes from (an experiment compares on one)."""
    ids = {str(r.get("langsmith_dataset_id") or "") for r in rows}
    if "" in ids or len(ids) != 1:
        raise LangSmithError(
            "a LangSmith experiment needs examples loaded from one LangSmith dataset "
            "(dataset='langsmith:<name>')"
        )
    return ids.pop()
