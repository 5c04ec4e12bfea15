"""A persistent SQLite cache for LLM responses, keyed by model, parameters, prompt and sample.

``SQLiteLLMCache`` implements ``langchain_core.caches.BaseCache``. It is attached per model
(``compile_graph(spec, models=..., cache=SQLiteLLMCache("runs/x/llm-cache.sqlite"))``, which
gives every resolved ``BaseChatModel`` a copy of itself with ``cache=`` set), never globally.

The key is ``sha256(llm_string, prompt, sample index)``. LangChain's ``llm_string`` already
encodes the model and every bound parameter (temperature, max_tokens, tools...), and ``prompt`` is
the serialized message list. The **sample index** comes from the :data:`current_sample` context
variable, which ``LayerContext.call(..., sample=i)`` sets around the model call: parallel voters
sampling at temperature > 0 from the same prompt get distinct entries (so they still differ),
while re-running the same graph replays every voter's own answer (so runs are free and
reproducible).

What LangChain does on a hit (checked in langchain-core 1.8,
``BaseChatModel.generate`` / ``_generate_with_cache``): ``on_chat_model_start`` has already fired
and ``on_llm_end`` fires with the cached generations, so tracers (``TraceRecorder``) still get a
record for every call. The cached message keeps its original ``usage_metadata`` (the tokens the
original call used) and LangChain adds ``"total_cost": 0`` to it. This cache additionally marks
every message it returns with ``response_metadata["ann_cache_hit"] = True``, which is how
``ann_langgraph.evaluate`` tells cached calls (free) from paid ones; the in-process ``hits``
counter tells the same in aggregate.

Every fresh call stored also appends a row (time, model, tokens) to the file's ``spend`` table:
a ledger of what was paid that lives outside any checkpoint. A run killed in the middle of a
step loses that step's state, but not the ledger rows of the calls it paid for (they are replayed
from the cache on resume, so a checkpoint's usage counts them as free); ``spent()`` reads the
ledger so budgets and reports can count them.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import Serializable, dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, LLMResult

__all__ = [
    "CACHE_HIT_KEY",
    "CacheHitTracker",
    "SQLiteCache",
    "SQLiteLLMCache",
    "cache_key",
    "current_sample",
    "is_cache_hit",
    "sample_scope",
]

#: ``response_metadata`` key set to ``True`` on every message served from this cache.
CACHE_HIT_KEY = "ann_cache_hit"

#: Which sample of a sampled agent is being drawn (the voter index in ``parallel_vote``).
current_sample: contextvars.ContextVar[int] = contextvars.ContextVar(
    "ann_current_sample", default=0
)

_ALLOWED: list[type[Serializable]] = [
    ChatGeneration,
    ChatGenerationChunk,
    Generation,
    AIMessage,
    AIMessageChunk,
]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY,
    sample INTEGER NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reused_input_tokens INTEGER NOT NULL DEFAULT 0
)
"""
_MODEL_IN_LLM_STRING = re.compile(r"'(?:model_name|model)', '([^']+)'")
_beta_silenced = False


@contextlib.contextmanager
def sample_scope(index: int) -> Iterator[None]:
    """Set :data:`current_sample` to ``index`` for the calls made inside the block."""
    token = current_sample.set(int(index))
    try:
        yield
    finally:
        current_sample.reset(token)


def is_cache_hit(message: Any) -> bool:
    """True if ``message`` (an ``AIMessage`` or its serialized dict) was served by this cache."""
    meta = getattr(message, "response_metadata", None)
    if meta is None and isinstance(message, dict):
        data = message.get("kwargs", message)
        meta = data.get("response_metadata") if isinstance(data, dict) else None
    return bool(isinstance(meta, dict) and meta.get(CACHE_HIT_KEY))


def _silence_loads_beta_warning() -> None:
    """``langchain_core.load.loads`` warns once per process that it is beta; consume that
    warning once here (at construction, normally on the main thread) instead of at a hit."""
    global _beta_silenced
    if _beta_silenced:
        return
    _beta_silenced = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loads("[]", allowed_objects=_ALLOWED)


_VOLATILE_MESSAGE_FIELDS = ("id", "response_metadata", "usage_metadata")


def _strip_volatile(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_volatile(item) for item in node]
    if isinstance(node, dict):
        out = {key: _strip_volatile(value) for key, value in node.items()}
        kwargs = out.get("kwargs")
        if out.get("lc") == 1 and isinstance(kwargs, dict):
            out["kwargs"] = {k: v for k, v in kwargs.items() if k not in _VOLATILE_MESSAGE_FIELDS}
        return out
    return node


def canonical_prompt(prompt: str) -> str:
    """The prompt LangChain hands the cache (serialized messages) without per-call noise.

    An ``AIMessage`` fed back into a later prompt (a tool loop's transcript) carries its id,
    ``response_metadata`` and ``usage_metadata``; on a cache hit LangChain adds
    ``usage_metadata["total_cost"] = 0`` and this cache adds a hit marker, so keying on the raw
    text would make every replayed tool round after the first miss. Only content, tool calls
    and the other message fields are kept.
    """
    try:
        data = json.loads(prompt)
    except ValueError:
        return prompt
    return json.dumps(_strip_volatile(data), sort_keys=True, ensure_ascii=False)


def cache_key(prompt: str, llm_string: str, sample: int) -> str:
    """The entry key: sha256 of (llm_string, canonical prompt, sample index)."""
    payload = json.dumps([llm_string, canonical_prompt(prompt), int(sample)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SQLiteLLMCache(BaseCache):
    """LLM response cache in one SQLite file (WAL mode); safe across threads and processes.

    One connection guarded by a lock serves every thread (LangGraph runs parallel nodes in
    threads); other processes may share the file (WAL + busy timeout). ``hits``, ``misses`` and
    ``writes`` count this object's lookups and updates (in-process, since construction or the
    last ``reset_stats()``); ``stats()`` also reports the number of stored entries.

    Only the key hash, the sample index and the serialized generations are stored: no prompts,
    no model configuration (which may carry endpoints), no secrets.
    """

    def __init__(self, path: str | Path = ".ann-cache/llm-cache.sqlite") -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(path), check_same_thread=False, timeout=30.0, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(spend)")}
        if "reused_input_tokens" not in columns:  # a ledger written before the column existed
            self._conn.execute(
                "ALTER TABLE spend ADD COLUMN reused_input_tokens INTEGER NOT NULL DEFAULT 0"
            )
        self.hits = 0
        self.misses = 0
        self.writes = 0
        _silence_loads_beta_warning()

    # -- internals ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the LLM cache at {self.path} is closed")
        return self._conn

    @staticmethod
    def _decode(text: str) -> list[Generation] | None:
        try:
            value = loads(text, allowed_objects=_ALLOWED)
        except Exception:  # a corrupt or foreign row is a miss, never a crash
            return None
        if not isinstance(value, list) or not all(isinstance(g, Generation) for g in value):
            return None
        for gen in value:
            message = getattr(gen, "message", None)
            if isinstance(message, AIMessage):
                message.response_metadata = {**message.response_metadata, CACHE_HIT_KEY: True}
        return value

    # -- BaseCache ------------------------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Cached generations for this prompt, model string and :data:`current_sample`."""
        key = cache_key(prompt, llm_string, current_sample.get())
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT value FROM llm_cache WHERE key = ?", (key,))
                .fetchone()
            )
        value = self._decode(row[0]) if row is not None else None
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the generations of a fresh call (replacing any entry with the same key)."""
        sample = current_sample.get()
        key = cache_key(prompt, llm_string, sample)
        text = dumps(list(return_val))
        model, tokens_in, tokens_out, reused = _usage_of(return_val, llm_string)
        now = time.time()
        with self._lock:
            conn = self._connection()
            with conn:  # one transaction: the entry and its ledger row land together
                conn.execute("BEGIN")
                conn.execute(
                    "INSERT OR REPLACE INTO llm_cache (key, sample, value, created) "
                    "VALUES (?, ?, ?, ?)",
                    (key, sample, text, now),
                )
                conn.execute(
                    "INSERT INTO spend (created, model, input_tokens, output_tokens, "
                    "reused_input_tokens) VALUES (?, ?, ?, ?, ?)",
                    (now, model, tokens_in, tokens_out, reused),
                )
            self.writes += 1

    def clear(self, **kwargs: Any) -> None:
        """Delete every stored entry (the counters are kept; see ``reset_stats``)."""
        with self._lock:
            self._connection().execute("DELETE FROM llm_cache")

    # SQLite calls take microseconds on a local file, so the async methods run them inline
    # (same thread, so the ``current_sample`` context variable is the caller's).
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.lookup(prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.update(prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        self.clear(**kwargs)

    # -- extras ---------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            row = self._connection().execute("SELECT COUNT(*) FROM llm_cache").fetchone()
        return int(row[0])

    def stats(self) -> dict[str, Any]:
        """``{"hits", "misses", "writes", "entries", "path"}``."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "writes": self.writes,
            "entries": len(self),
            "path": str(self.path),
        }

    def spent(self, *, since: float | None = None) -> dict[str, Any]:
        """The ledger's totals (paid calls stored since ``since``, a ``time.time()`` value).

        ``{"calls", "input_tokens", "output_tokens", "reused_input_tokens", "by_model": {model:
        {...same keys}}}``; ``reused_input_tokens``: prompt tokens the server did not process
        again because its prompt cache held them (llama-server, OpenAI's cached tokens).
        """
        query = (
            "SELECT model, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
            "SUM(reused_input_tokens) FROM spend"
        )
        args: tuple[Any, ...] = ()
        if since is not None:
            query += " WHERE created >= ?"
            args = (since,)
        with self._lock:
            rows = self._connection().execute(query + " GROUP BY model", args).fetchall()
        by_model = {
            str(m): {
                "calls": int(c),
                "input_tokens": int(i or 0),
                "output_tokens": int(o or 0),
                "reused_input_tokens": int(r or 0),
            }
            for m, c, i, o, r in rows
        }
        total = {
            key: sum(v[key] for v in by_model.values())
            for key in ("calls", "input_tokens", "output_tokens", "reused_input_tokens")
        }
        return {**total, "by_model": by_model}

    def entries(self) -> list[tuple[str, int, str, float]]:
        """Every stored entry as ``(key, sample, serialized value, created)`` (to copy a cache
        elsewhere: ``add_entries``)."""
        with self._lock:
            rows = self._connection().execute("SELECT key, sample, value, created FROM llm_cache")
            return [(str(k), int(s), str(v), float(c)) for k, s, v, c in rows.fetchall()]

    def add_entries(
        self,
        entries: list[tuple[str, int, str, float]],
        ledger: Sequence[tuple[float, str, int, int, int]] = (),
    ) -> None:
        """Store entries copied from another cache (``entries()`` rows) and the ledger rows of
        the calls that paid for them (``(created, model, input, output, reused input)``), in one
        transaction; entries already here are kept as they are."""
        with self._lock:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT OR IGNORE INTO llm_cache (key, sample, value, created) "
                    "VALUES (?, ?, ?, ?)",
                    entries,
                )
                conn.executemany(
                    "INSERT INTO spend (created, model, input_tokens, output_tokens, "
                    "reused_input_tokens) VALUES (?, ?, ?, ?, ?)",
                    list(ledger),
                )

    def last_write(
        self, key: str
    ) -> tuple[tuple[str, int, str, float], tuple[float, str, int, int, int]]:
        """Entry ``key`` and the latest ledger row: what an ``update`` just stored (for a
        single writer)."""
        with self._lock:
            conn = self._connection()
            ledger = conn.execute(
                "SELECT created, model, input_tokens, output_tokens, reused_input_tokens "
                "FROM spend ORDER BY id DESC LIMIT 1"
            ).fetchone()
            entry = conn.execute(
                "SELECT key, sample, value, created FROM llm_cache WHERE key = ?", (key,)
            ).fetchone()
        return tuple(entry), tuple(ledger)

    def reset_stats(self) -> None:
        with self._lock:
            self.hits = self.misses = self.writes = 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SQLiteLLMCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteLLMCache({str(self.path)!r}, hits={self.hits}, misses={self.misses})"


def _usage_of(return_val: RETURN_VAL_TYPE, llm_string: str) -> tuple[str, int, int, int]:
    """(model, input tokens, output tokens, reused input tokens) of a fresh call, for the
    ledger."""
    tokens_in = tokens_out = reused = 0
    model = ""
    for gen in return_val:
        message = getattr(gen, "message", None)
        usage = getattr(message, "usage_metadata", None) or {}
        tokens_in += int(usage.get("input_tokens", 0) or 0)
        tokens_out += int(usage.get("output_tokens", 0) or 0)
        reused += int((usage.get("input_token_details") or {}).get("cache_read", 0) or 0)
        meta = getattr(message, "response_metadata", None) or {}
        model = model or str(meta.get("model_name") or meta.get("model") or "")
    if not model:
        found = _MODEL_IN_LLM_STRING.search(llm_string)
        model = found.group(1) if found else ""
    return model, tokens_in, tokens_out, reused


#: Short alias.
SQLiteCache = SQLiteLLMCache


class CacheHitTracker(BaseCallbackHandler):
    """Remembers which LLM runs were served from the cache (by the message's hit marker)."""

    run_inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hit_runs: set[str] = set()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        for batch in response.generations:
            for gen in batch:
                if is_cache_hit(getattr(gen, "message", None)):
                    with self._lock:
                        self.hit_runs.add(str(run_id))
                    return
