"""Execution records: the forward pass's log, which the backward pass reads.

Records are built from runs in LangSmith's run schema, so the same code turns an in-process
``TraceRecorder``'s runs and runs fetched back from LangSmith into ``ExecutionRecord``s.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from pydantic import BaseModel, Field

__all__ = [
    "ExecutionRecord",
    "LocalTraceSource",
    "TraceRecorder",
    "TraceSource",
    "load_records",
    "record_from_run",
    "save_records",
]


class ExecutionRecord(BaseModel):
    """One step of a forward pass: an LLM call, a tool call, or an aggregation decision."""

    layer: str
    agent_id: str
    aggregator: str = ""
    input: str = ""
    output: str = ""
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    example_id: str | None = None
    run_id: str = ""
    trace_id: str = ""
    # extensions (not in the minimal contract)
    kind: Literal["llm", "tool", "decision"] = "llm"
    spec: str = Field(default="", description="Fingerprint of the spec that produced this step.")
    sample: int = 0
    start_time: str | None = None
    finish_reason: str | None = Field(
        default=None, description="Why generation stopped: 'stop', 'length' (hit the cap), ..."
    )
    max_tokens: int | None = Field(default=None, description="The output cap the call had.")
    user_message: str = Field(
        default="", description="The call's last user message (what a demonstration shows)."
    )

    @property
    def truncated(self) -> bool:
        """The model was cut off at its output cap before it finished."""
        return self.finish_reason == "length"

    def truncation_note(self) -> str:
        """A sentence for the optimizer's evidence, or "" when the output was complete."""
        if not self.truncated:
            return ""
        cap = f"max_tokens={self.max_tokens}" if self.max_tokens else "its max_tokens cap"
        return f"output cut off at {cap} after {self.output_tokens} tokens (unfinished)"


# -- reading runs in LangSmith's schema --------------------------------------------------


def _msg_fields(obj: Any) -> tuple[str, Any, list[Any]]:
    """(type, content, tool_calls) from a message object or its serialized forms."""
    if hasattr(obj, "content") and hasattr(obj, "type"):
        return str(obj.type), obj.content, list(getattr(obj, "tool_calls", []) or [])
    if isinstance(obj, Mapping):
        data: Mapping[str, Any] = obj
        if "kwargs" in data and isinstance(data["kwargs"], Mapping):
            ids = data.get("id") or []
            data = {**data["kwargs"], "_cls": ids[-1] if ids else ""}
        kind = str(data.get("type") or data.get("role") or data.get("_cls", ""))
        kind = {
            "SystemMessage": "system",
            "HumanMessage": "human",
            "AIMessage": "ai",
            "ToolMessage": "tool",
            "user": "human",
            "assistant": "ai",
        }.get(kind, kind)
        calls = data.get("tool_calls") or []
        return kind, data.get("content", ""), list(calls)
    return "", str(obj), []


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and "text" in block:
                parts.append(str(block["text"]))
        return "".join(parts)
    return "" if content is None else str(content)


def _render_calls(calls: list[Any]) -> str:
    out = []
    for call in calls:
        if isinstance(call, Mapping):
            name = call.get("name") or (call.get("function") or {}).get("name")
            args = call.get("args", (call.get("function") or {}).get("arguments"))
            out.append(
                f"{name}({json.dumps(args, default=str) if not isinstance(args, str) else args})"
            )
    return "; ".join(out)


def _one_batch(messages: Any) -> Any:
    """A chat-model run's inputs hold one batch of messages: that batch."""
    if isinstance(messages, list) and messages and isinstance(messages[0], list):
        return messages[0]
    return messages


def _last_user_text(messages: Any) -> str:
    for msg in reversed(_one_batch(messages) or []):
        kind, content, _ = _msg_fields(msg)
        if kind == "human":
            return _content_text(content)
    return ""


def _render_messages(messages: Any) -> str:
    lines = []
    for msg in _one_batch(messages) or []:
        kind, content, calls = _msg_fields(msg)
        text = _content_text(content)
        if calls:
            text = (text + "\n" if text else "") + "tool_calls: " + _render_calls(calls)
        lines.append(f"{kind}: {text}" if kind else text)
    return "\n".join(lines)


def _finish_reason(first: Mapping[str, Any], data: Any) -> str | None:
    info = first.get("generation_info") or {}
    meta = (
        data.get("response_metadata")
        if isinstance(data, Mapping)
        else getattr(data, "response_metadata", None)
    ) or {}
    reason = info.get("finish_reason") or meta.get("finish_reason") or meta.get("stop_reason")
    if reason in ("max_tokens", "MAX_TOKENS"):  # Anthropic / Google spellings
        reason = "length"
    return str(reason) if reason else None


def _llm_output(outputs: Mapping[str, Any] | None) -> tuple[str, int, int, str | None]:
    """(text, input_tokens, output_tokens, finish_reason) from an LLM run's outputs."""
    if not outputs:
        return "", 0, 0, None
    text, tin, tout, finish = "", 0, 0, None
    generations = outputs.get("generations") or []
    first = generations[0][0] if generations and generations[0] else None
    if isinstance(first, Mapping):
        message = first.get("message")
        calls: list[Any] = []
        data: Any = None
        if message is not None:
            _, content, calls = _msg_fields(message)
            text = _content_text(content)
            data = message.get("kwargs", message) if isinstance(message, Mapping) else message
            usage = (
                data.get("usage_metadata")
                if isinstance(data, Mapping)
                else getattr(data, "usage_metadata", None)
            ) or {}
            tin, tout = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        finish = _finish_reason(first, data)
        if not text:
            text = str(first.get("text") or "")
        if calls:
            text = (text + "\n" if text else "") + "tool_calls: " + _render_calls(calls)
    if not (tin or tout):
        usage = (outputs.get("llm_output") or {}).get("token_usage") or {}
        tin, tout = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return text, tin, tout, finish


def _max_tokens(extra: Mapping[str, Any], metadata: Mapping[str, Any]) -> int | None:
    params = extra.get("invocation_params") or {}
    for value in (
        params.get("max_tokens"),
        (params.get("extra_body") or {}).get("max_tokens"),
        params.get("max_completion_tokens"),
        metadata.get("ls_max_tokens"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    return None


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if value else None


def _latency(start: Any, end: Any) -> float:
    if isinstance(start, str):
        start = datetime.fromisoformat(start)
    if isinstance(end, str):
        end = datetime.fromisoformat(end)
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds())
    return 0.0


def record_from_run(run: Any) -> ExecutionRecord | None:
    """An ``ExecutionRecord`` for a run (``Run`` or LangSmith run/dict), or ``None`` if it is
    not an ANN step (no ``ann_layer`` metadata, or a chain run that made no decision)."""
    get = run.get if isinstance(run, Mapping) else lambda k, d=None: getattr(run, k, d)
    extra = get("extra") or {}
    metadata = dict(extra.get("metadata") or {})
    if isinstance(run, Mapping):  # LangSmith's API may also return metadata at the top level
        metadata.update(run.get("metadata") or {})
    layer = metadata.get("ann_layer")
    agent = metadata.get("ann_agent")
    if not layer or not agent:
        return None
    run_type = get("run_type")
    outputs = get("outputs") or {}
    inputs = get("inputs") or {}
    base: dict[str, Any] = {
        "layer": str(layer),
        "agent_id": str(agent),
        "aggregator": str(metadata.get("ann_aggregator", "")),
        "error": get("error"),
        "example_id": (
            str(metadata["ann_example_id"]) if metadata.get("ann_example_id") is not None else None
        ),
        "run_id": str(get("id") or ""),
        "trace_id": str(get("trace_id") or ""),
        "spec": str(metadata.get("ann_spec", "")),
        "sample": int(metadata.get("ann_sample") or 0),
        "latency_s": _latency(get("start_time"), get("end_time")),
        "start_time": _iso(get("start_time")),
    }
    if run_type in ("llm", "chat_model"):
        text, tin, tout, finish = _llm_output(outputs)
        model = (
            metadata.get("ls_model_name")
            or (extra.get("invocation_params") or {}).get("model")
            or (extra.get("invocation_params") or {}).get("model_name")
            or get("name")
            or ""
        )
        messages = inputs.get("messages")
        prompt = (
            _render_messages(messages)
            if messages is not None
            else "\n".join(inputs.get("prompts") or [])
        )
        return ExecutionRecord(
            **base,
            kind="llm",
            input=prompt,
            output=text,
            model=str(model),
            input_tokens=tin,
            output_tokens=tout,
            finish_reason=finish,
            max_tokens=_max_tokens(extra, metadata),
            user_message=_last_user_text(messages) if messages is not None else prompt,
        )
    if run_type == "tool":
        raw_in = inputs.get("input", inputs)
        raw_out = outputs.get("output", outputs) if isinstance(outputs, Mapping) else outputs
        out_text = (
            _content_text(getattr(raw_out, "content", None))
            if hasattr(raw_out, "content")
            else (
                _content_text(raw_out.get("content"))
                if isinstance(raw_out, Mapping) and "content" in raw_out
                else (raw_out if isinstance(raw_out, str) else json.dumps(raw_out, default=str))
            )
        )
        return ExecutionRecord(
            **base,
            kind="tool",
            model=f"tool:{get('name')}",
            input=raw_in if isinstance(raw_in, str) else json.dumps(raw_in, default=str),
            output=out_text,
        )
    if (
        run_type == "chain"
        and metadata.get("ann_record")
        and get("name") == metadata.get("langgraph_node")
    ):
        decision = outputs.get("decision") if isinstance(outputs, Mapping) else None
        if decision is None and not base["error"]:
            return None
        return ExecutionRecord(
            **base,
            kind="decision",
            model="",
            output=json.dumps(decision, default=str) if decision else "",
        )
    return None


class TraceRecorder(BaseTracer):
    """Collects ``ExecutionRecord``s from a LangGraph run: pass it in ``config["callbacks"]``."""

    name: str = "ann_trace_recorder"

    def __init__(self, **kwargs: Any) -> None:
        # "original+chat" keeps chat messages structured, as LangSmith's tracer does.
        kwargs.setdefault("_schema_format", "original+chat")
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._records: list[ExecutionRecord] = []

    @property
    def records(self) -> list[ExecutionRecord]:
        """Records so far, ordered by start time."""
        with self._lock:
            return sorted(self._records, key=lambda r: r.start_time or "")

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def save(self, path: str | Path, *, append: bool = False) -> Path:
        return save_records(self.records, path, append=append)

    def extend(self, records: Iterable[ExecutionRecord]) -> None:
        """Add records collected elsewhere (an executor's worker) as if seen here."""
        with self._lock:
            self._records.extend(records)

    def add_run(self, run: Run) -> None:
        """Record one finished run. For tracers that share their runs (the LangSmith tracer
        feeds the recorder the very runs it uploads, so both sides hold the same records)."""
        self._add(run)

    def _add(self, run: Run) -> None:
        record = record_from_run(run)
        if record is not None:
            with self._lock:
                self._records.append(record)

    def _persist_run(self, run: Run) -> None:  # required by BaseTracer; records are kept live
        pass

    def _on_llm_end(self, run: Run) -> None:
        self._add(run)

    def _on_llm_error(self, run: Run) -> None:
        self._add(run)

    def _on_tool_end(self, run: Run) -> None:
        self._add(run)

    def _on_tool_error(self, run: Run) -> None:
        self._add(run)

    def _on_chain_end(self, run: Run) -> None:
        self._add(run)

    def _on_chain_error(self, run: Run) -> None:
        self._add(run)


# -- storage and sources -----------------------------------------------------------------


def save_records(
    records: Iterable[ExecutionRecord], path: str | Path, *, append: bool = False
) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a" if append else "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(record.model_dump_json() + "\n")
    return p


def load_records(path: str | Path) -> list[ExecutionRecord]:
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(ExecutionRecord.model_validate_json(line))
    return out


class TraceSource(Protocol):
    """Where the backward phase reads execution records from."""

    def records(self, *, example_ids: Iterable[str] | None = None) -> list[ExecutionRecord]: ...


class LocalTraceSource:
    """Records from JSONL files written by ``TraceRecorder.save`` (the default source)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _iter(self) -> Iterator[ExecutionRecord]:
        if self.path.exists():
            yield from load_records(self.path)

    def records(self, *, example_ids: Iterable[str] | None = None) -> list[ExecutionRecord]:
        wanted = set(example_ids) if example_ids is not None else None
        return [r for r in self._iter() if wanted is None or r.example_id in wanted]
