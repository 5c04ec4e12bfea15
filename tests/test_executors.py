"""Executors without a cluster: naming, the Ray executor's guards, the limiter and the cache
service's replay rule (plain objects here; the cluster tests run them as actors)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration

from ann_langgraph.cache import CACHE_HIT_KEY
from ann_langgraph.executors import LocalExecutor, parse_executor, resolve_executor
from ann_langgraph.executors.services import CacheService, RequestLimiter, limit_key
from ann_langgraph.testing import ScriptedChatModel


def test_executor_strings():
    assert parse_executor("local") == ("local", None)
    assert parse_executor("ray") == ("ray", None)
    assert parse_executor("ray:auto") == ("ray", "auto")
    assert parse_executor("ray:10.0.0.1:6379") == ("ray", "10.0.0.1:6379")
    assert parse_executor("ray://head:10001") == ("ray", "ray://head:10001")
    for bad in ("dask", "ray:", "ray://"):
        with pytest.raises(ValueError):
            parse_executor(bad)
    assert isinstance(resolve_executor(None), LocalExecutor)
    assert isinstance(resolve_executor("local"), LocalExecutor)
    with pytest.raises(TypeError):
        resolve_executor(3)  # type: ignore[arg-type]


def test_ray_executor_guards():
    pytest.importorskip("ray")
    from ann_langgraph.executors.ray import RayExecutor, _check_models

    assert RayExecutor(address="ray://head:10001").client
    assert not RayExecutor(address="auto").client
    with pytest.raises(ValueError, match="credentials"):
        _check_models(ScriptedChatModel(default="x"))
    with pytest.raises(ValueError, match="credentials"):
        _check_models({"default": "local", "judge": ScriptedChatModel(default="x")})
    assert _check_models({"default": "openai:gpt-4o-mini"}) == {"default": "openai:gpt-4o-mini"}
    with pytest.raises(ValueError):
        RayExecutor(requests_in_flight=0)
    assert RayExecutor(examples_in_flight=5).default_concurrency(None, None) == 5


def test_limit_keys_prefer_the_most_specific():
    limits = {"openai:gpt-4o": 2, "openai": 8, "*": 32}
    assert limit_key(limits, "openai", "gpt-4o") == "openai:gpt-4o"
    assert limit_key(limits, "openai", "gpt-4o-mini") == "openai"
    assert limit_key(limits, "anthropic", "claude") == "*"
    assert limit_key({"openai": 1}, "anthropic", "claude") is None


def test_limiter_bounds_in_flight_and_frees_a_dead_attempts_leases():
    async def scenario() -> None:
        limiter = RequestLimiter({"*": 2})
        a = await limiter.acquire("*", "attempt-1")
        await limiter.acquire("*", "attempt-2")
        third = asyncio.create_task(limiter.acquire("*", "attempt-3"))
        await asyncio.sleep(0.05)
        assert not third.done()  # two in flight: the third waits
        assert await limiter.drop("attempt-2") == 1  # its worker died: the lease is freed
        await asyncio.wait_for(third, 2)
        await limiter.release(a, tokens=10)
        await limiter.release(a, tokens=10)  # twice is harmless
        assert limiter.stats()["peak"] == {"*": 2}
        assert limiter.stats()["busy"] == {"*": 1}

    asyncio.run(scenario())


def test_limiter_tokens_per_minute():
    async def scenario() -> None:
        limiter = RequestLimiter({"*": 10}, tokens_per_minute={"*": 100})
        lease = await limiter.acquire("*", "a")
        await limiter.release(lease, tokens=150)  # the minute's budget is spent
        waiting = asyncio.create_task(limiter.acquire("*", "b"))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        limiter.spent["*"].clear()  # a minute later
        await asyncio.wait_for(waiting, 3)

    asyncio.run(scenario())


def test_cache_service_replays_a_lost_attempts_calls_as_paid(tmp_path):
    service = CacheService(str(tmp_path / "cache.sqlite"))
    value = [ChatGeneration(message=AIMessage(content="4"))]
    service.update("p", "llm", 0, value, ("ex1", "attempt-1"))
    hit, replay = service.lookup("p", "llm", 0, ("ex1", "attempt-2"))
    assert replay and hit[0].message.content == "4"  # the same example, run again
    _, replay = service.lookup("p", "llm", 0, ("ex1", "attempt-1"))
    assert not replay  # the attempt that stored it: an ordinary hit
    _, replay = service.lookup("p", "llm", 0, ("ex2", "attempt-9"))
    assert not replay  # another example sharing the prompt: an ordinary hit
    assert service.lookup("p", "llm", 1, ("ex1", "attempt-2")) == (None, False)  # other sample
    assert service.counters() == (3, 1, 1)
    assert service.counters() == (0, 0, 0)
    assert service.cache.spent()["calls"] == 1  # the ledger row, once
    assert hit[0].message.response_metadata.get(CACHE_HIT_KEY)
    service.close()


def test_cli_names_a_bad_executor(tmp_path):
    from typer.testing import CliRunner

    from ann_langgraph import save_spec
    from ann_langgraph.cli import app
    from tests.conftest import agent, make_spec

    spec = save_spec(make_spec([{"name": "a", "agents": [agent("a")]}]), tmp_path / "s.yaml")
    data = tmp_path / "d.jsonl"
    data.write_text('{"input": "x", "target": "y"}\n')
    base = ["eval", str(spec), "--dataset", str(data), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*base, "--executor", "dask"])
    assert result.exit_code == 2 and "unknown executor 'dask'" in result.output
    result = CliRunner().invoke(app, [*base, "--requests-in-flight", "3"])
    assert result.exit_code == 2 and "applies to --executor ray" in result.output


def test_embedded_model_on_more_workers_than_nodes_is_named():
    pytest.importorskip("ray")
    from ann_langgraph.executors.ray import engines_warning

    assert engines_warning(1, 1) is None
    assert engines_warning(3, 3) is None
    text = engines_warning(4, 1)
    assert text and "4 engines" in text and "RayExecutor(workers=1)" in text


def test_ray_executor_imports_from_the_package_as_the_docs_write_it():
    pytest.importorskip("ray")
    import ann_langgraph.executors as executors
    from ann_langgraph.executors import RayExecutor
    from ann_langgraph.executors.ray import RayExecutor as Direct

    assert RayExecutor is Direct and "RayExecutor" in executors.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        executors.Nope  # noqa: B018


def test_ray_executor_without_ray_imports_and_says_which_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    from ann_langgraph.executors import RayExecutor

    with pytest.raises(ImportError, match=r'pip install "ann-langgraph\[ray\]"'):
        RayExecutor().start()
