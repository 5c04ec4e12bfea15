"""How much of the machine one embedded server takes: threads, parallel slots, and the
client-side gate that keeps at most ``slots`` requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from .errors import LocalModelError

__all__ = [
    "DEFAULT_N_CTX",
    "ENV_REPRODUCIBLE",
    "ENV_SLOTS",
    "ENV_THREADS",
    "RequestGate",
    "available_memory",
    "default_slots",
    "engine_slots",
    "env_threads",
    "reproducible",
]

# llama.cpp's worker threads spin-wait on each other: on a busy machine, one thread per core is
# much slower than fewer threads (measured on 2 cores under load: 1-20 tokens/s with 2 threads,
# a steady 30-50 with 1). The default stays one per core; this overrides it.
ENV_THREADS = "ANN_LOCAL_THREADS"
# Parallel slots of the engine (requests it decodes together); default from cores and memory.
ENV_SLOTS = "ANN_LOCAL_SLOTS"
# Reproducible mode (`--reproducible`): one request at a time, each prompt computed afresh.
ENV_REPRODUCIBLE = "ANN_LOCAL_REPRODUCIBLE"
_MAX_SLOTS = 8
# Context for a GGUF that is not in the catalogue (catalogue entries carry their own).
DEFAULT_N_CTX = 8192


def reproducible() -> bool:
    """``ANN_LOCAL_REPRODUCIBLE`` is set: the engine serves one request at a time and reuses no
    cached prompt, so a request's answer depends on the request alone.

    Why both: at temperature 0 an answer still varies with what else the engine decodes in
    the same batch and with which part of the prompt came from a slot's or the host's prompt
    cache (float sums in another order); sampling above 0 is already seeded per sample."""
    return os.environ.get(ENV_REPRODUCIBLE, "").strip().lower() in ("1", "true", "yes", "on")


def default_slots(n_ctx: int = DEFAULT_N_CTX) -> int:
    """Parallel slots: 1 when :func:`reproducible`, else ``ANN_LOCAL_SLOTS``, else twice the
    cores (at most 8), fewer when memory is short (each slot keeps ``n_ctx`` tokens of KV
    cache, budgeted at 64 KiB a token)."""
    if reproducible():
        return 1
    chosen = _env_positive_int(ENV_SLOTS)
    if chosen is not None:
        return chosen
    slots = min(_MAX_SLOTS, 2 * (os.cpu_count() or 1))
    fit = _slots_that_fit(n_ctx)
    if fit is not None:
        slots = min(slots, max(1, fit))
    return max(1, slots)


def _slots_that_fit(n_ctx: int) -> int | None:
    """Slots whose KV cache (budgeted at 64 KiB a token) fits in a quarter of free memory."""
    available = available_memory()
    return None if available is None else available // (4 * n_ctx * 64 * 1024)


def engine_slots(slots: int, n_ctx: int = DEFAULT_N_CTX) -> int:
    """Slots the engine keeps: twice the ``slots`` it serves at once, memory allowing.

    The request gate keeps ``slots`` requests in flight, so with only ``slots`` engine slots a
    new request always lands in the one slot just freed, whatever prompt it holds. Idle spare
    slots keep earlier prompts: the engine picks the slot holding the longest shared prefix
    (the next agent of a team, the next tool round), and an idle slot costs memory, not compute.
    """
    if reproducible():
        return slots  # no spare slot holds a prompt: none is reused
    total = 2 * slots
    fit = _slots_that_fit(n_ctx)
    if fit is not None:
        total = min(total, fit)
    return max(slots, total)


def available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def env_threads() -> int | None:
    return _env_positive_int(ENV_THREADS)


def _env_positive_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise LocalModelError(f"{name}={raw!r} must be a positive integer")
    return value


class RequestGate:
    """At most ``slots`` requests in flight per server, for threads and event loops alike.

    The server queues requests itself, but a client-side queue keeps the request timeout about
    generation rather than waiting, and keeps a multi-step tool call on a warm prompt cache.
    """

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._lock = threading.BoundedSemaphore(slots)
        self._guard = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            # A blocking call on an event-loop thread could wait on a task of that same loop
            # forever; skip the gate there (the server still queues).
            yield
            return
        with self._lock:
            yield

    @contextlib.asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with self._guard:
            loop_lock = self._loop_locks.get(loop)
            if loop_lock is None:
                loop_lock = self._loop_locks[loop] = asyncio.Lock()
        async with loop_lock:  # FIFO among this loop's tasks; one of them polls below
            delay = 0.002
            while not self._lock.acquire(blocking=False):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                self._lock.release()
