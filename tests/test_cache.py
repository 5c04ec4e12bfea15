"""SQLite LLM cache: keys (model, parameters, prompt, sample), persistence, threads, callbacks."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import warnings
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration
from langchain_core.runnables import RunnableLambda

import ann_langgraph as ann
from ann_langgraph.cache import (
    CACHE_HIT_KEY,
    SQLiteLLMCache,
    current_sample,
    is_cache_hit,
    sample_scope,
)
from ann_langgraph.models import ModelResolver
from ann_langgraph.testing import ScriptedChatModel, tool_call_message

from .conftest import agent, make_spec


@pytest.fixture
def cache(tmp_path: Path) -> SQLiteLLMCache:
    c = SQLiteLLMCache(tmp_path / "llm.sqlite")
    yield c
    c.close()


def chain_spec(prompt: str = "Do it.") -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "first", "agents": [agent("a", "Reader", prompt=prompt)]},
            {"name": "second", "agents": [agent("b", "Writer")]},
        ]
    )


def vote_spec(n: int = 3, temperature: float = 0.7) -> ann.GraphSpec:
    # Identical role and prompt for every voter: only the sample index tells them apart.
    return make_spec(
        [
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "agents": [
                    agent(f"v{i}", "Solver", prompt="Solve.", temperature=temperature)
                    for i in range(n)
                ],
            }
        ],
        answer_format="last_number",
    )


def by_sample(messages, **kwargs) -> str:
    return f"Answer: {10 + current_sample.get()}"


# -- the key ---------------------------------------------------------------------------------


def test_second_identical_run_makes_no_model_calls(cache):
    model = ScriptedChatModel(rules=[(r"Reader", "read it")], default="written")
    graph = ann.compile_graph(chain_spec(), models=model, cache=cache)
    first = graph.invoke({"input": "task"})
    assert len(model.calls) == 2
    assert cache.stats() | {"path": ""} == {
        "hits": 0,
        "misses": 2,
        "writes": 2,
        "entries": 2,
        "path": "",
    }
    second = graph.invoke({"input": "task"})
    assert len(model.calls) == 2  # unchanged: both answers came from the cache
    assert second == first
    assert (cache.hits, cache.misses, cache.writes) == (2, 2, 2)


def test_a_new_input_or_edited_prompt_misses(cache):
    model = ScriptedChatModel(default="ok")
    ann.compile_graph(chain_spec(), models=model, cache=cache).invoke({"input": "task"})
    assert len(model.calls) == 2
    ann.compile_graph(chain_spec(), models=model, cache=cache).invoke({"input": "other task"})
    assert len(model.calls) == 4
    edited = chain_spec(prompt="Do it carefully.")
    ann.compile_graph(edited, models=model, cache=cache).invoke({"input": "task"})
    # The edited first agent misses; its output is the same text, so the second agent hits.
    assert len(model.calls) == 5
    assert "Do it carefully." in model.calls[-1]["text"]
    assert (cache.hits, cache.misses) == (1, 5)


def test_bound_parameters_are_part_of_the_key(cache):
    model = ScriptedChatModel(default="Answer: 1")
    ann.compile_graph(vote_spec(1, 0.7), models=model, cache=cache).invoke({"input": "q"})
    ann.compile_graph(vote_spec(1, 0.2), models=model, cache=cache).invoke({"input": "q"})
    assert len(model.calls) == 2
    assert [c["kwargs"]["temperature"] for c in model.calls] == [0.7, 0.2]
    ann.compile_graph(vote_spec(1, 0.2), models=model, cache=cache).invoke({"input": "q"})
    assert len(model.calls) == 2


def test_voters_get_distinct_entries_and_replay_their_own_answers(cache):
    model = ScriptedChatModel(respond=by_sample)
    graph = ann.compile_graph(vote_spec(3), models=model, cache=cache)

    def voter_outputs() -> dict[str, str]:
        rec = ann.TraceRecorder()
        graph.invoke({"input": "q"}, config={"callbacks": [rec]})
        return {r.agent_id: r.output for r in rec.records if r.kind == "llm"}

    first = voter_outputs()
    assert first == {"v0": "Answer: 10", "v1": "Answer: 11", "v2": "Answer: 12"}
    assert (cache.hits, cache.misses, cache.writes, len(cache)) == (0, 3, 3, 3)
    second = voter_outputs()
    assert second == first  # each voter got its own sample back, not a shared one
    assert (cache.hits, cache.misses, cache.writes, len(cache)) == (3, 3, 3, 3)
    assert len(model.calls) == 3


def test_sample_scope_sets_and_restores_the_index():
    assert current_sample.get() == 0
    with sample_scope(4):
        assert current_sample.get() == 4
        with sample_scope(1):
            assert current_sample.get() == 1
        assert current_sample.get() == 4
    assert current_sample.get() == 0


def test_lookup_and_update_are_keyed_by_sample(cache):
    gen = [ChatGeneration(message=AIMessage(content="x"))]
    with sample_scope(2):
        cache.update("prompt", "llm", gen)
        assert cache.lookup("prompt", "llm") is not None
    assert cache.lookup("prompt", "llm") is None
    assert cache.lookup("other prompt", "llm") is None
    with sample_scope(2):
        assert cache.lookup("prompt", "other llm") is None
    assert (cache.hits, cache.misses, cache.writes) == (1, 3, 1)


# -- storage ---------------------------------------------------------------------------------


def test_messages_round_trip_with_tool_calls_and_usage(cache):
    message = tool_call_message("calculator", {"expression": "6*7"}, content="let me compute")
    message.usage_metadata = {"input_tokens": 11, "output_tokens": 5, "total_tokens": 16}
    message.response_metadata = {"model_name": "m", "finish_reason": "tool_calls"}
    cache.update("p", "llm", [ChatGeneration(message=message)])
    (gen,) = cache.lookup("p", "llm")
    back = gen.message
    assert isinstance(back, AIMessage)
    assert back.content == "let me compute"
    assert back.tool_calls == message.tool_calls
    assert back.usage_metadata == message.usage_metadata
    assert back.response_metadata == {**message.response_metadata, CACHE_HIT_KEY: True}
    assert is_cache_hit(back) and not is_cache_hit(message)


def test_entries_survive_a_new_cache_object_on_the_same_file(tmp_path):
    path = tmp_path / "sub" / "llm.sqlite"
    model = ScriptedChatModel(rules=[(r"Reader", "read it")], default="written")
    with SQLiteLLMCache(path) as first_cache:
        out1 = ann.compile_graph(chain_spec(), models=model, cache=first_cache).invoke(
            {"input": "task"}
        )
    assert len(model.calls) == 2
    fresh_model = ScriptedChatModel(default="a different answer")
    with SQLiteLLMCache(path) as second_cache:
        out2 = ann.compile_graph(chain_spec(), models=fresh_model, cache=second_cache).invoke(
            {"input": "task"}
        )
        assert (second_cache.hits, second_cache.misses, second_cache.writes) == (2, 0, 0)
    assert fresh_model.calls == []
    assert out2 == out1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_clear_empties_the_file_and_a_corrupt_row_is_a_miss(cache):
    gen = [ChatGeneration(message=AIMessage(content="x"))]
    cache.update("p", "llm", gen)
    cache.update("q", "llm", gen)
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.lookup("p", "llm") is None
    cache.update("p", "llm", gen)
    with sqlite3.connect(cache.path) as conn:
        conn.execute("UPDATE llm_cache SET value = 'not json'")
    assert cache.lookup("p", "llm") is None
    assert cache.stats()["misses"] == 2


def test_async_methods(cache):
    gen = [ChatGeneration(message=AIMessage(content="x"))]

    async def go():
        with sample_scope(3):
            await cache.aupdate("p", "llm", gen)
            hit = await cache.alookup("p", "llm")
        miss = await cache.alookup("p", "llm")
        await cache.aclear()
        return hit, miss, len(cache)

    hit, miss, size = asyncio.run(go())
    assert hit is not None and hit[0].message.content == "x"
    assert miss is None and size == 0


def test_async_graph_invocation_uses_the_cache(cache):
    model = ScriptedChatModel(respond=by_sample)
    graph = ann.compile_graph(vote_spec(3), models=model, cache=cache)
    first = asyncio.run(graph.ainvoke({"input": "q"}))
    second = asyncio.run(graph.ainvoke({"input": "q"}))
    assert first == second and len(model.calls) == 3
    assert (cache.hits, cache.misses) == (3, 3)


# -- threads ---------------------------------------------------------------------------------


def test_parallel_voters_in_threads_are_counted_and_stored_consistently(cache):
    voters, runs = 6, 4
    model = ScriptedChatModel(respond=by_sample, sleep_s=0.05)
    graph = ann.compile_graph(vote_spec(voters), models=model, cache=cache)
    inputs = [{"input": f"question {i}"} for i in range(runs)]
    outs = graph.batch(inputs, config={"max_concurrency": runs})
    assert len({c["thread"] for c in model.calls}) > 1  # really ran in several threads
    assert len(model.calls) == voters * runs
    assert (cache.misses, cache.writes, len(cache)) == (voters * runs,) * 3
    again = graph.batch(inputs, config={"max_concurrency": runs})
    assert again == outs
    assert len(model.calls) == voters * runs
    assert cache.hits == voters * runs


def test_two_cache_objects_on_one_file_in_threads(tmp_path):
    path = tmp_path / "shared.sqlite"
    caches = [SQLiteLLMCache(path), SQLiteLLMCache(path)]
    gen = [ChatGeneration(message=AIMessage(content="x"))]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(40):
                caches[k % 2].update(f"p{k}-{i}", "llm", gen)
                assert caches[(k + 1) % 2].lookup(f"p{k}-{i}", "llm") is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(caches[0]) == 240
    for c in caches:
        c.close()


# -- how models get the cache ----------------------------------------------------------------


def test_resolver_attaches_one_copy_per_model_and_leaves_the_original():
    c = SQLiteLLMCache(":memory:")
    model = ScriptedChatModel(default="x")
    spec = make_spec(
        [{"name": "l", "agents": [agent("a"), agent("b", model="fast")]}],
        models={"default": "local", "fast": "local"},
    )
    resolver = ModelResolver(spec, {"default": model, "fast": model}, cache=c)
    default, fast = resolver.get("default"), resolver.get("fast")
    assert default is fast  # one copy: a scripted `responses` list stays one sequence
    assert default.cache is c and model.cache is None
    assert ModelResolver(spec, model).get("default") is model  # no cache: untouched

    off = ScriptedChatModel(default="x", cache=False)
    assert ModelResolver(spec, off, cache=c).get("default") is off

    chain = RunnableLambda(lambda x: AIMessage(content="x"))
    with pytest.warns(RuntimeWarning, match="LLM cache not attached"):
        assert ModelResolver(spec, chain, cache=c).get("default") is chain


# -- what LangChain does on a hit ------------------------------------------------------------


def test_hits_still_reach_callbacks_with_the_original_usage(cache):
    model = ScriptedChatModel(default="the answer")
    graph = ann.compile_graph(chain_spec(), models=model, cache=cache)
    recs = []
    for _ in range(2):
        rec = ann.TraceRecorder()
        graph.invoke({"input": "task"}, config={"callbacks": [rec]})
        recs.append(rec.records)
    paid, replayed = recs
    assert len(paid) == len(replayed) == 2
    assert [(r.agent_id, r.output, r.input_tokens, r.output_tokens) for r in replayed] == [
        (r.agent_id, r.output, r.input_tokens, r.output_tokens) for r in paid
    ]
    assert all(r.input_tokens > 0 for r in replayed)


def test_hit_messages_are_marked_and_carry_zero_cost(cache):
    model = ScriptedChatModel(default="hello").model_copy(update={"cache": cache})
    first = model.invoke([HumanMessage("hi")])
    second = model.invoke([HumanMessage("hi")])
    assert not is_cache_hit(first) and is_cache_hit(second)
    assert second.usage_metadata["input_tokens"] == first.usage_metadata["input_tokens"]
    assert second.usage_metadata.get("total_cost") == 0  # added by langchain-core on hits


def test_tool_loops_replay_fully_from_the_cache(cache):
    spec = make_spec(
        [
            {
                "name": "calc",
                "aggregator": "tool_pipeline",
                "tools": ["calculator"],
                "agents": [agent("c", "Calculator user")],
            }
        ]
    )
    model = ScriptedChatModel(
        responses=[tool_call_message("calculator", {"expression": "6*7"}), "It is 42"]
    )
    graph = ann.compile_graph(spec, models=model, cache=cache)
    assert graph.invoke({"input": "6*7?"})["output"] == "It is 42"
    assert len(model.calls) == 2
    # The second round's prompt holds the first reply; on a hit that reply carries a hit
    # marker and langchain's total_cost, which must not change the key.
    assert graph.invoke({"input": "6*7?"})["output"] == "It is 42"
    assert len(model.calls) == 2
    assert cache.hits == 2


def test_loads_beta_warning_is_not_shown_on_hits(tmp_path):
    c = SQLiteLLMCache(tmp_path / "w.sqlite")
    c.update("p", "llm", [ChatGeneration(message=AIMessage(content="x"))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c.lookup("p", "llm") is not None
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.lookup("p", "llm")


def test_ledger_counts_paid_calls_outside_any_checkpoint_and_raises_budget_usage(tmp_path):
    """Each fresh call leaves a ledger row (hits do not); ``paid_so_far`` takes the larger count."""
    import time

    from ann_langgraph.optimize.graph import Budget, paid_so_far

    cache = SQLiteLLMCache(tmp_path / "c.sqlite")
    model = ScriptedChatModel(responses=["a", "b", "c"], model_name="gpt-4o-mini", cache=cache)
    before = time.time()
    model.invoke("one")
    model.invoke("two")
    model.invoke("one")  # a hit: free, no ledger row
    spent = cache.spent()
    assert spent["calls"] == 2
    assert spent["by_model"]["gpt-4o-mini"]["calls"] == 2
    assert spent["input_tokens"] > 0 and spent["output_tokens"] > 0
    assert cache.spent(since=time.time() + 60)["calls"] == 0
    cache.close()
    # the ledger survives the process: a new cache object on the same file sees it
    reopened = SQLiteLLMCache(tmp_path / "c.sqlite")
    assert reopened.spent(since=before)["calls"] == 2
    # a checkpoint that lost a step's usage: the ledger's count and its priced cost win
    state = {
        "usage": {"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.0},
        "ledger_since": before,
    }
    paid = paid_so_far(reopened, state)
    assert paid["calls"] == 2
    assert paid["cost_usd"] > 0
    assert Budget(max_calls=2).exceeded(paid) is not None
    assert Budget(max_calls=2).exceeded(state["usage"]) is None
    # without ledger_since (a run started before ledgers existed) the checkpoint is all there is
    assert paid_so_far(reopened, {"usage": state["usage"]})["calls"] == 1
    reopened.close()


def _generation(tokens_in: int, tokens_out: int, reused: int) -> ChatGeneration:
    usage = {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
        "input_token_details": {"cache_read": reused},
    }
    return ChatGeneration(message=AIMessage("ok", usage_metadata=usage))  # type: ignore[arg-type]


def test_ledger_counts_prompt_tokens_the_server_reused(cache: SQLiteLLMCache) -> None:
    llm = "[('model_name', 'local')]"
    cache.update("p1", llm, [_generation(300, 10, 0)])
    cache.update("p2", llm, [_generation(310, 12, 290)])
    spent = cache.spent()
    assert spent["input_tokens"] == 610 and spent["reused_input_tokens"] == 290
    assert spent["by_model"]["local"]["reused_input_tokens"] == 290


def test_a_ledger_from_before_prompt_reuse_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE spend (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, "
        "model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL);"
        "INSERT INTO spend (created, model, input_tokens, output_tokens) VALUES (1, 'm', 5, 6);"
    )
    conn.commit()
    conn.close()
    with SQLiteLLMCache(path) as cache:
        cache.update("p", "[('model_name', 'm')]", [_generation(7, 1, 3)])
        spent = cache.spent()
    assert spent["calls"] == 2 and spent["input_tokens"] == 12
    assert spent["reused_input_tokens"] == 3
