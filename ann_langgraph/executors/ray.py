"""Run an evaluation's examples on a Ray cluster (``pip install "ann-langgraph[ray]"``).

The driver (the process that called ``evaluate``/``train``) keeps the event loop, the report,
the checkpoints and the run directory. It sends each example to a pool of worker actors
spread over the cluster; the spec travels as JSON and is compiled on the worker, with its
models resolved there from the same model strings and the worker's own environment (API keys
are read on the worker, never shipped). A worker sends back the example's result, its
execution records and which calls the cache served; the driver puts results in dataset order.

Nothing is lost when a worker dies: an example whose actor died (its process killed, its
node removed) is run again on another actor (up to ``max_attempts``), and because every paid
call was stored in the driver's response cache as it returned (``services.CacheService``),
the retry replays those calls instead of paying again; the report still counts them as paid,
once. Model requests in flight are bounded cluster-wide (``services.RequestLimiter``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.runnables import Runnable

from ..models import ModelConfig
from ..spec import GraphSpec
from ..tracing import ExecutionRecord
from .base import EvalJob, ExampleOutcome, ExampleResult, Executor, OnResult

__all__ = ["DEFAULT_IN_FLIGHT", "RayExecutor"]

#: Examples in flight across the cluster, and model requests in flight per provider, when the
#: caller does not say.
DEFAULT_IN_FLIGHT = 32
_GRAPHS_PER_WORKER = 8
_FLOW_BACK_S = 5.0  # Ray Client: how often new cache entries are copied to the driver
_REST_S = 10.0  # an actor that failed is not given new examples for this long (if others live)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError('the ray executor needs Ray: pip install "ann-langgraph[ray]"') from None
    return ray


def _check_models(models: Any) -> Any:
    """Models as data the workers can resolve themselves (never live clients: those carry
    their API keys, which must not travel in task payloads)."""
    if models is None or isinstance(models, str | ModelConfig):
        return models
    if isinstance(models, Mapping):
        return {k: _check_models(v) for k, v in models.items()}
    if isinstance(models, Runnable):
        raise ValueError(
            "the ray executor resolves models on its workers from model strings (e.g. "
            "'openai:gpt-4o-mini', a ModelConfig, or a name your setup hook registers with "
            f"register_model); got a live {type(models).__name__}, which would carry its "
            "credentials into the task payload"
        )
    raise TypeError(f"models must be model strings or ModelConfig, got {type(models).__name__}")


def _job_key(spec: dict[str, Any], models: Any, cache: Any) -> str:
    text = json.dumps([spec, models, repr(cache)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ExampleWorker:
    """One worker actor: compiles each job's spec once and runs examples on its event loop."""

    def __init__(self, setup: str | None, limits: dict[str, Any], limiter: Any) -> None:
        if setup:
            module, _, name = setup.partition(":")
            getattr(importlib.import_module(module), name or "setup")()
        self.limits = limits
        self.limiter = limiter
        self.graphs: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.threads_set = False

    def _graph(self, payload: dict[str, Any]) -> Any:
        key = payload["key"]
        with self.lock:
            graph = self.graphs.get(key)
            if graph is None:
                from ..compile import compile_graph
                from .services import ClusterCache

                cache = ClusterCache(payload["cache"]) if payload["cache"] is not None else None
                spec = GraphSpec.model_validate(payload["spec"])
                graph = compile_graph(
                    spec, models=payload["models"], cache=cache, checkpointer=False
                )
                if len(self.graphs) >= _GRAPHS_PER_WORKER:
                    self.graphs.pop(next(iter(self.graphs)))
                self.graphs[key] = graph
            return graph

    async def run(self, payload: dict[str, Any], example: dict[str, Any], attempt: str) -> dict:
        from ..cache import CacheHitTracker
        from ..tracing import TraceRecorder
        from .base import run_example
        from .services import LimitGate, current_attempt

        if not self.threads_set:  # sync graph nodes run in the loop's executor: room for many
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(max_workers=256, thread_name_prefix="ann-ray")
            )
            self.threads_set = True
        graph = await asyncio.to_thread(self._graph, payload)
        job = dataclasses.replace(payload["job"], graph=graph)
        recorder, tracker = TraceRecorder(), CacheHitTracker()
        callbacks: list[Any] = [recorder, tracker]
        if self.limiter is not None:
            callbacks.append(LimitGate(self.limiter, self.limits))
        token = current_attempt.set((example["id"], attempt))
        try:
            result = await run_example(
                job, graph, example, callbacks=callbacks, records=lambda: recorder.records
            )
        finally:
            current_attempt.reset(token)
        mine = [r for r in recorder.records if r.example_id == example["id"]]
        return {
            "result": result.model_dump(mode="json"),
            "records": [r.model_dump(mode="json") for r in mine],
            "hit_runs": sorted(tracker.hit_runs),
            "pid": os.getpid(),
        }

    def pid(self) -> int:
        return os.getpid()


class RayExecutor(Executor):
    """Examples on a Ray cluster; see the module docstring for what travels and what stays.

    ``address``: ``None`` (``RAY_ADDRESS``, else a local Ray started here and stopped at
    :meth:`close`), ``"auto"`` or ``"HOST:PORT"`` of a cluster this machine is a node of, or
    ``"ray://HOST:PORT"`` (Ray Client, from outside the cluster: the cache's new entries then
    flow back to this process's file every few seconds and after each evaluation).
    ``examples_in_flight``: examples running at once across the cluster (the default for
    ``concurrency``). ``requests_in_flight``: model requests at once, cluster-wide: one number
    for every model, or ``{"openai": 16, "openai:gpt-4o": 4, "*": 32}`` (keys: provider,
    provider:model, ``*``); ``tokens_per_minute`` likewise. ``workers``: actors in the pool
    (default: the cluster's CPUs, at least 2), each reserving ``worker_cpus``.
    ``max_attempts``: runs of an example whose worker died before it is scored 0 with the
    error. ``setup``: ``"module:function"`` each worker calls once before its first example
    (register custom models there). ``runtime_env``: Ray's, for the workers.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        examples_in_flight: int = DEFAULT_IN_FLIGHT,
        requests_in_flight: int | Mapping[str, int] | None = DEFAULT_IN_FLIGHT,
        tokens_per_minute: int | Mapping[str, int] | None = None,
        workers: int | None = None,
        worker_cpus: float = 0.5,
        max_attempts: int = 4,
        setup: str | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if examples_in_flight < 1 or max_attempts < 1:
            raise ValueError("examples_in_flight and max_attempts must be at least 1")
        self.address = address
        # Ray Client: this process is outside the cluster, so its cache file is not reachable
        # from there; the cache service holds a copy and new entries flow back after each run
        self.client = bool(address and address.startswith("ray://"))
        self.examples_in_flight = examples_in_flight
        self.requests_in_flight = _limits(requests_in_flight)
        self.tokens_per_minute = _limits(tokens_per_minute)
        self.workers = workers
        self.worker_cpus = worker_cpus
        self.max_attempts = max_attempts
        self.setup = setup
        self.runtime_env = dict(runtime_env or {})
        self.init_options = dict(init_options or {})
        self._owns_ray = False
        self._pool: list[Any] = []
        self._limiter: Any = None
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.attempts = 0  # examples re-run after a worker died (this executor's life)
        self._warned = False
        self.last_payload: dict[str, Any] = {}  # what the last evaluation sent (diagnostics)

    # -- cluster ------------------------------------------------------------------------
    def _ray(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline, no prompt
            if self.client:  # Ray Client takes few options
                extra = {"runtime_env": self.runtime_env} if self.runtime_env else {}
                ray.init(address=self.address, **extra, **self.init_options)
                self._owns_ray = True  # our connection: disconnect at close
                return ray
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
                **self.init_options,
            }
            if self.runtime_env:
                options["runtime_env"] = self.runtime_env
            own = self.address is None and not os.environ.get("RAY_ADDRESS")
            if own:  # a new Ray of our own (never a stale one), on loopback: this machine only
                options.setdefault("_node_ip_address", "127.0.0.1")
            ray.init(address="local" if own else self.address, **options)
            self._owns_ray = own
        return ray

    def _here(self, ray: Any) -> Any:
        """Pinned to the driver's node (with Ray Client: the node serving this client)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=False
        )

    def _ensure_pool(self) -> list[Any]:
        with self._lock:
            ray = self._ray()
            if self._pool:
                return self._pool
            from .services import RequestLimiter

            if self.requests_in_flight or self.tokens_per_minute:
                self._limiter = (
                    ray.remote(RequestLimiter)
                    .options(
                        num_cpus=0, scheduling_strategy=self._here(ray), max_concurrency=10_000
                    )
                    .remote(self.requests_in_flight or {}, self.tokens_per_minute)
                )
            count = self.workers or max(2, int(ray.cluster_resources().get("CPU", 2)))
            actor = ray.remote(ExampleWorker).options(
                num_cpus=self.worker_cpus,
                max_restarts=-1,
                max_task_retries=0,
                max_concurrency=10_000,
                scheduling_strategy="SPREAD",
            )
            limits = {**(self.requests_in_flight or {}), **(self.tokens_per_minute or {})}
            self._pool = [actor.remote(self.setup, limits, self._limiter) for _ in range(count)]
            return self._pool

    def start(self) -> None:
        self._ensure_pool()

    def _cache_service(self, ray: Any, cache: Any) -> Any:
        if cache is None:
            return None
        from ..cache import SQLiteLLMCache
        from .services import CacheService

        if not isinstance(cache, SQLiteLLMCache) or str(cache.path) == ":memory:":
            raise ValueError(
                "the ray executor shares the response cache through its SQLite file: pass a "
                "file-backed SQLiteLLMCache (or no cache)"
            )
        path = str(cache.path.resolve())
        with self._lock:
            if path not in self._services:
                actor = ray.remote(CacheService).options(
                    num_cpus=0, scheduling_strategy=self._here(ray), max_concurrency=1
                )
                self._services[path] = (
                    actor.remote(":memory:", seed=cache.entries())
                    if self.client
                    else actor.remote(path)
                )
            return self._services[path]

    def _bring_home(self, ray: Any, service: Any, cache: Any) -> None:
        """Ray Client: copy the entries (and ledger rows) the workers stored into the
        driver's own cache file."""
        if not self.client or service is None:
            return
        fresh = ray.get(service.drain.remote())
        if fresh:
            cache.add_entries([entry for entry, _ in fresh], [row for _, row in fresh])

    def default_concurrency(
        self, spec_or_graph: Any, models: Any, *, otherwise: int | None = None
    ) -> int:
        """``examples_in_flight``, whatever the models (the cluster's own bound)."""
        return self.examples_in_flight

    def _warn_engines(self, job: EvalJob) -> None:
        """Once: an embedded-model spec starts one engine per worker process."""
        from ..models import ModelResolver

        if self._warned or job.spec is None:
            return
        if not ModelResolver(job.spec, job.models).only_embedded():
            return
        ray = self._ray()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        text = engines_warning(len(self._ensure_pool()), nodes)
        if text:
            self._warned = True
            warnings.warn(text, RuntimeWarning, stacklevel=3)

    def worker_pids(self) -> list[int]:
        """The pool's worker process ids (for tests and diagnostics)."""
        ray = self._ray()
        return list(ray.get([w.pid.remote() for w in self._ensure_pool()]))

    # -- running ------------------------------------------------------------------------
    async def run(
        self,
        job: EvalJob,
        examples: Sequence[dict[str, Any]],
        *,
        callbacks: Callable[[dict[str, Any]], list[Any]],
        records: Callable[[], Sequence[ExecutionRecord]],
        on_result: OnResult,
    ) -> list[ExampleOutcome]:
        if job.spec is None:
            raise ValueError(
                "the ray executor compiles the spec on its workers: pass a GraphSpec (or a "
                "spec file), not a compiled graph"
            )
        models = _check_models(job.models)
        self._warn_engines(job)
        # Ray starts (or connects) here, not in a helper thread: ray.init wants the thread that
        # will stay (a process whose Ray was started from a passing thread exits with it).
        pool = self._ensure_pool()
        ray = self._ray()
        service = self._cache_service(ray, job.cache)
        spec_json = job.spec.model_dump(mode="json")
        payload = {
            "key": _job_key(spec_json, models, service),
            "spec": spec_json,
            "models": models,
            "cache": service,
            # the rest of the job as it is, less what is compiled, resolved or opened there
            "job": dataclasses.replace(job, graph=None, spec=None, models=None, cache=None),
        }
        self.last_payload = payload
        payload_ref = ray.put(payload)
        gate = asyncio.Semaphore(job.concurrency)
        load = [0] * len(pool)
        resting: dict[int, float] = {}  # actor slot -> when it may be tried again
        outcomes: list[ExampleOutcome | None] = [None] * len(examples)

        def pick() -> int:
            """The least-loaded actor, avoiding ones that just failed (dead or restarting,
            perhaps on a removed node) while others are available."""
            now = time.monotonic()
            fine = [i for i in range(len(pool)) if resting.get(i, 0.0) <= now]
            return min(fine or range(len(pool)), key=lambda i: load[i])

        async def one(index: int, example: dict[str, Any]) -> None:
            failures: list[str] = []
            async with gate:
                while len(failures) < self.max_attempts:
                    slot = pick()
                    attempt = uuid.uuid4().hex
                    load[slot] += 1
                    try:
                        out = await pool[slot].run.remote(payload_ref, dict(example), attempt)
                        break
                    except ray.exceptions.RayError as exc:
                        if isinstance(exc, ray.exceptions.RayTaskError):
                            raise  # our own code failed on the worker: a bug, not a lost worker
                        failures.append(f"{type(exc).__name__}")
                        resting[slot] = time.monotonic() + _REST_S
                        self.attempts += 1
                        if self._limiter is not None:
                            await self._limiter.drop.remote(attempt)
                        await asyncio.sleep(min(0.5 * len(failures), 5.0))
                    finally:
                        load[slot] -= 1
                else:
                    result = ExampleResult(
                        id=example["id"],
                        input=example["input"],
                        target=example.get("target"),
                        error=f"worker lost {len(failures)} times ({', '.join(failures)})",
                    )
                    result.feedback = f"error: {result.error}"
                    out = {"result": result.model_dump(mode="json"), "records": [], "hit_runs": []}
            outcome = ExampleOutcome(
                result=ExampleResult.model_validate(out["result"]),
                records=[ExecutionRecord.model_validate(r) for r in out["records"]],
                hit_runs=set(out["hit_runs"]),
            )
            outcomes[index] = outcome
            on_result(index, outcome)

        async def bring_home_often() -> None:  # a driver killed mid-run loses little
            while True:
                await asyncio.sleep(_FLOW_BACK_S)
                await asyncio.to_thread(self._bring_home, ray, service, job.cache)

        home = asyncio.create_task(bring_home_often()) if self.client and service else None
        try:
            await asyncio.gather(*(one(i, ex) for i, ex in enumerate(examples)))
        finally:
            if home is not None:
                home.cancel()
            if service is not None:
                self._bring_home(ray, service, job.cache)
                self._fold_counters(ray, service, job.cache)
        return [o for o in outcomes if o is not None]

    @staticmethod
    def _fold_counters(ray: Any, service: Any, cache: Any) -> None:
        """The workers' cache hits, misses and writes into the driver's cache counters."""
        with contextlib.suppress(Exception):
            hits, misses, writes = ray.get(service.counters.remote(), timeout=30)
            cache.hits += hits
            cache.misses += misses
            cache.writes += writes

    def limiter_stats(self) -> dict[str, Any]:
        """Requests in flight now and at peak, per limit key (cluster-wide)."""
        if self._limiter is None:
            return {}
        return dict(self._ray().get(self._limiter.stats.remote()))

    def close(self) -> None:
        with self._lock:
            ray = _import_ray()
            if not ray.is_initialized():
                return
            for actor in [*self._pool, *self._services.values(), self._limiter]:
                if actor is not None:
                    with contextlib.suppress(Exception):
                        ray.kill(actor)
            self._pool, self._services, self._limiter = [], {}, None
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, in_flight={self.examples_in_flight})"


def _limits(value: int | Mapping[str, int] | None) -> dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        if value < 1:
            raise ValueError("a limit must be at least 1")
        return {"*": value}
    out = {str(k): int(v) for k, v in value.items()}
    if any(v < 1 for v in out.values()):
        raise ValueError("a limit must be at least 1")
    return out


def engines_warning(workers: int, nodes: int) -> str | None:
    """What to say when an embedded-model run has more worker processes than nodes."""
    if workers <= max(1, nodes):
        return None
    return (
        f"the embedded model is served per worker process: {workers} workers on {nodes} "
        f"node(s) start {workers} engines that share those cores; pass "
        f"RayExecutor(workers={max(1, nodes)}) (one per node), or serve the model once per "
        "node behind an OpenAI-compatible URL"
    )
