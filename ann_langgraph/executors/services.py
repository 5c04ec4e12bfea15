"""The two things every Ray worker of one run shares, as actors on the driver's node.

- :class:`CacheService` holds the run's response cache (the driver's ``SQLiteLLMCache`` file,
  opened again on the driver's node; for a driver outside the cluster, a copy in memory whose
  new entries flow back to the driver's file) and :class:`ClusterCache` is its stand-in on the
  workers: a paid call is stored (and its ledger row written) the moment it returns, wherever
  it ran, so an example retried after its worker died replays that call instead of paying again. The
  service remembers which attempt of which example stored each entry in this run: when a later
  attempt of the *same* example reads it, the call is handed back as paid (no hit marker), so
  the report counts the lost attempt's calls exactly once, as the ledger does.
- :class:`RequestLimiter` bounds the model requests in flight across the whole cluster (per
  provider or model, optionally tokens per minute); :class:`LimitGate` is the callback handler
  that takes a lease before each model call and gives it back after. Leases of an attempt
  whose worker died are dropped by the driver (:meth:`RequestLimiter.drop`).

Both live on the driver's node because the cache file is there, and because they must outlive
any worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import time
import uuid
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from ..cache import CACHE_HIT_KEY, SQLiteLLMCache, cache_key, current_sample, sample_scope

__all__ = [
    "CacheService",
    "ClusterCache",
    "LimitGate",
    "RequestLimiter",
    "current_attempt",
    "limit_key",
]

#: (example id, attempt id) of the example this worker coroutine runs (set by the worker).
current_attempt: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "ann_current_attempt", default=None
)


class CacheService:
    """The run's response cache, served to the workers (a Ray actor on the driver's node)."""

    def __init__(self, path: str, *, seed: list[tuple[str, int, str, float]] | None = None) -> None:
        """``path``: the driver's cache file (the service runs on its node). ``seed``: for a
        driver on another machine (Ray Client), an in-memory cache holding the driver's entries;
        what the workers store then waits in :meth:`drain` for the driver to copy home."""
        self.cache = SQLiteLLMCache(path)
        self.flow_back = seed is not None
        if seed:
            self.cache.add_entries(seed)
        self.fresh: list[tuple[Any, Any]] = []
        self.written: dict[str, tuple[str, str]] = {}

    def lookup(
        self, prompt: str, llm_string: str, sample: int, attempt: tuple[str, str] | None
    ) -> tuple[Any, bool]:
        """``(generations or None, replay)``: ``replay`` when another attempt of the same
        example stored the entry in this run (its worker died before reporting back)."""
        with sample_scope(sample):
            value = self.cache.lookup(prompt, llm_string)
        if value is None or attempt is None:
            return value, False
        owner = self.written.get(cache_key(prompt, llm_string, sample))
        return value, bool(owner and owner[0] == attempt[0] and owner[1] != attempt[1])

    def update(
        self,
        prompt: str,
        llm_string: str,
        sample: int,
        return_val: Any,
        attempt: tuple[str, str] | None,
    ) -> None:
        with sample_scope(sample):
            self.cache.update(prompt, llm_string, return_val)
        key = cache_key(prompt, llm_string, sample)
        if attempt is not None:
            self.written[key] = attempt
        if self.flow_back:
            self.fresh.append(self.cache.last_write(key))

    def drain(self) -> list[tuple[Any, Any]]:
        """``(entry, ledger row)`` of every call stored since the last drain (flow-back mode)."""
        out, self.fresh = self.fresh, []
        return out

    def counters(self) -> tuple[int, int, int]:
        """``(hits, misses, writes)`` since the last call (then reset)."""
        out = (self.cache.hits, self.cache.misses, self.cache.writes)
        self.cache.reset_stats()
        return out

    def close(self) -> None:
        self.cache.close()


class ClusterCache(BaseCache):
    """A worker's view of the driver's response cache (calls :class:`CacheService`)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    @staticmethod
    def _unmark(value: Any) -> Any:
        for gen in value or ():
            message = getattr(gen, "message", None)
            meta = getattr(message, "response_metadata", None)
            if isinstance(meta, dict):
                meta.pop(CACHE_HIT_KEY, None)
        return value

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        import ray

        ref = self.service.lookup.remote(
            prompt, llm_string, current_sample.get(), current_attempt.get()
        )
        value, replay = ray.get(ref)
        return self._unmark(value) if replay else value

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        import ray

        ray.get(
            self.service.update.remote(
                prompt, llm_string, current_sample.get(), list(return_val), current_attempt.get()
            )
        )

    def clear(self, **kwargs: Any) -> None:
        raise NotImplementedError("clear the response cache on the driver")

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        value, replay = await self.service.lookup.remote(
            prompt, llm_string, current_sample.get(), current_attempt.get()
        )
        return self._unmark(value) if replay else value

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        await self.service.update.remote(
            prompt, llm_string, current_sample.get(), list(return_val), current_attempt.get()
        )


def limit_key(limits: Mapping[str, Any], provider: str, model: str) -> str | None:
    """Which limit a call to ``provider``/``model`` counts against: ``"provider:model"``,
    then ``"provider"``, then ``"*"``; ``None`` when no limit covers it."""
    for key in (f"{provider}:{model}", provider, "*"):
        if key in limits:
            return key
    return None


class RequestLimiter:
    """Cluster-wide limit on model requests in flight, per key (an async Ray actor).

    ``in_flight``: ``{key: max requests at once}``; ``tokens_per_minute``: ``{key: tokens}``,
    counted over a sliding minute from the usage each call reports when it ends (a call starts
    only while the last minute's total is under the limit). Keys as in :func:`limit_key`.
    """

    def __init__(
        self, in_flight: Mapping[str, int], tokens_per_minute: Mapping[str, int] | None = None
    ) -> None:
        self.in_flight = dict(in_flight)
        self.tpm = dict(tokens_per_minute or {})
        self.leases: dict[str, tuple[str, str]] = {}  # lease -> (key, attempt)
        self.busy: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.spent: dict[str, collections.deque[tuple[float, int]]] = collections.defaultdict(
            collections.deque
        )
        self.changed = asyncio.Condition()

    def _tokens_last_minute(self, key: str) -> int:
        window = self.spent[key]
        cutoff = time.monotonic() - 60.0
        while window and window[0][0] < cutoff:
            window.popleft()
        return sum(t for _, t in window)

    def _free(self, key: str) -> bool:
        if self.busy[key] >= self.in_flight.get(key, 1 << 30):
            return False
        return key not in self.tpm or self._tokens_last_minute(key) < self.tpm[key]

    async def acquire(self, key: str, attempt: str) -> str:
        async with self.changed:
            while not self._free(key):
                # tokens age out without anyone notifying: look again at least every second
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), timeout=1.0)
            lease = uuid.uuid4().hex
            self.leases[lease] = (key, attempt)
            self.busy[key] += 1
            self.peak[key] = max(self.peak[key], self.busy[key])
            return lease

    async def release(self, lease: str, tokens: int = 0) -> None:
        async with self.changed:
            held = self.leases.pop(lease, None)
            if held is None:
                return
            self.busy[held[0]] -= 1
            if tokens:
                self.spent[held[0]].append((time.monotonic(), tokens))
            self.changed.notify_all()

    async def drop(self, attempt: str) -> int:
        """Free the leases of an attempt whose worker died; how many there were."""
        async with self.changed:
            gone = [lease for lease, (_, a) in self.leases.items() if a == attempt]
            for lease in gone:
                key, _ = self.leases.pop(lease)
                self.busy[key] -= 1
            if gone:
                self.changed.notify_all()
            return len(gone)

    def stats(self) -> dict[str, Any]:
        return {"busy": dict(self.busy), "peak": dict(self.peak), "leases": len(self.leases)}


class LimitGate(BaseCallbackHandler):
    """Takes a :class:`RequestLimiter` lease before each chat-model call and returns it after
    (with the call's tokens). Runs inline, in the thread that makes the call, so the call
    waits for its lease."""

    run_inline = True
    raise_error = True

    def __init__(self, limiter: Any, limits: Mapping[str, Any]) -> None:
        self.limiter = limiter
        self.limits = dict(limits)
        self.leases: dict[UUID, str] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        import ray

        md = metadata or {}
        key = limit_key(
            self.limits, str(md.get("ls_provider", "")), str(md.get("ls_model_name", ""))
        )
        if key is None:
            return
        attempt = current_attempt.get()
        self.leases[run_id] = ray.get(
            self.limiter.acquire.remote(key, attempt[1] if attempt else "")
        )

    def _give_back(self, run_id: UUID, tokens: int) -> None:
        lease = self.leases.pop(run_id, None)
        if lease is not None:
            self.limiter.release.remote(lease, tokens)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        tokens = 0
        for batch in response.generations:
            for gen in batch:
                usage = getattr(getattr(gen, "message", None), "usage_metadata", None) or {}
                tokens += int(usage.get("total_tokens", 0) or 0)
        self._give_back(run_id, tokens)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._give_back(run_id, 0)
