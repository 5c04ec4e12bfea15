"""The embedded engine (llama.cpp's llama-server): build cache, engine choice, fallback, and the
real engine's mechanics on the tiny model.

Build mechanics use a fake llama.cpp tree (a one-file C program named llama-server) through
``ANN_LLAMA_CPP_SOURCE``, so they need cmake and a C compiler but no network and seconds, not
minutes. Tests marked ``local_model`` start the real engine (built by ``make install``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from pydantic import BaseModel

from ann_langgraph.local import (
    LocalChatModel,
    LocalModelError,
    LocalServer,
    ModelLoadError,
    engine,
    find_gguf,
)
from ann_langgraph.local import launch as launch_module
from ann_langgraph.local import registry as registry_module
from ann_langgraph.local import server as server_module
from ann_langgraph.local import slots as slots_module
from ann_langgraph.local.protocol import Plan

local_model = pytest.mark.local_model
needs_fallback = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in launch_module.SERVER_MODULES),
    reason='the fallback server is not installed (pip install "ann-langgraph[local-fallback]")',
)
needs_cmake = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and cc"
)

_FAKE_CMAKE = """
cmake_minimum_required(VERSION 3.16)
project(fake C)
add_executable(llama-server main.c)
set_target_properties(llama-server PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
"""


def _fake_source(root: Path, *, body: str = "int main(void) { return 0; }\n") -> Path:
    (root / "tools" / "server").mkdir(parents=True)
    (root / "CMakeLists.txt").write_text(_FAKE_CMAKE)
    (root / "main.c").write_text(body)
    return root


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANN_CACHE_DIR", str(cache))
    monkeypatch.delenv("ANN_LOCAL_ENGINE", raising=False)
    monkeypatch.setattr(engine, "llama_cpp_version", lambda: "9.9.9-test")
    # the build and fallback paths, as without the prebuilt wheel (tests/test_prebuilt.py
    # covers what auto does with it)
    monkeypatch.setattr(server_module, "prebuilt_available", lambda: False)
    monkeypatch.setattr(registry_module, "prebuilt_available", lambda: False)
    return cache


# --------------------------------------------------------------------------- choice and slots


def test_engine_choice_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for raw, expected in (("", "auto"), ("auto", "auto"), ("python", "python")):
        monkeypatch.setenv("ANN_LOCAL_ENGINE", raw)
        assert engine.engine_choice() == (expected, None)
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("ANN_LOCAL_ENGINE", str(binary))
    assert engine.engine_choice() == ("llama-server", binary.resolve())
    monkeypatch.setenv("ANN_LOCAL_ENGINE", str(tmp_path / "missing"))
    with pytest.raises(LocalModelError, match="ANN_LOCAL_ENGINE"):
        engine.engine_choice()


def test_slots_come_from_cores_memory_and_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANN_LOCAL_SLOTS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(slots_module, "available_memory", lambda: 64 * 2**30)
    assert slots_module.default_slots(8192) == 4  # two per core
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert slots_module.default_slots(8192) == 8  # capped
    # 8192 tokens x 64 KiB = 512 MiB a slot, KV at most a quarter of 3 GiB: one slot
    monkeypatch.setattr(slots_module, "available_memory", lambda: 3 * 2**30)
    assert slots_module.default_slots(8192) == 1
    monkeypatch.setenv("ANN_LOCAL_SLOTS", "3")
    assert slots_module.default_slots(8192) == 3
    monkeypatch.setenv("ANN_LOCAL_SLOTS", "0")
    with pytest.raises(LocalModelError, match="ANN_LOCAL_SLOTS"):
        slots_module.default_slots()


def test_the_engine_keeps_spare_slots_for_prompt_reuse_memory_allowing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slots_module, "available_memory", lambda: 64 * 2**30)
    assert slots_module.engine_slots(4, 8192) == 8  # two per served slot
    # a quarter of 5 GiB holds two 512 MiB slots: one spare, never fewer than served
    monkeypatch.setattr(slots_module, "available_memory", lambda: 5 * 2**30)
    assert slots_module.engine_slots(1, 8192) == 2
    assert slots_module.engine_slots(3, 8192) == 3
    monkeypatch.setattr(slots_module, "available_memory", lambda: None)
    assert slots_module.engine_slots(2) == 4


def test_planned_slots_follow_the_engine_that_would_run(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANN_LOCAL_SLOTS", "3")
    monkeypatch.setattr(registry_module, "_SERVERS", {})  # no server of an earlier test counts
    monkeypatch.setattr(registry_module, "prebuilt_available", lambda: False)
    assert registry_module.planned_slots() == 1  # nothing built yet: the fallback serves one
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("ANN_LOCAL_ENGINE", str(binary))
    assert registry_module.planned_slots() == 3
    monkeypatch.setenv("ANN_LOCAL_ENGINE", "python")
    assert registry_module.planned_slots() == 1
    running = LocalServer(tmp_path / "m.gguf", engine="llama-server", slots=2)
    monkeypatch.setattr(running, "is_running", lambda: True)
    monkeypatch.setattr(registry_module, "_SERVERS", {tmp_path / "m.gguf": running})
    assert registry_module.planned_slots() == 2  # a running server answers for itself


def test_default_concurrency_on_the_embedded_model_is_its_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ann_langgraph.evaluate import default_concurrency
    from tests.conftest import agent, make_spec

    spec = make_spec([{"name": "a", "agents": [agent("x")]}], models={"default": "local"})
    monkeypatch.setattr(registry_module, "planned_slots", lambda n_ctx=0: 5)
    assert default_concurrency(spec) == 5
    assert default_concurrency(spec, "openai:gpt-4o-mini", otherwise=7) == 7


# --------------------------------------------------------------------------- requests


def _plan(kwargs: dict[str, Any], *, mode: Any) -> Plan:
    model = LocalChatModel(embedded="smollm2")
    return Plan.build(model, [HumanMessage("hi")], None, kwargs, mode=mode)


def test_engine_requests_use_its_json_schema_grammars() -> None:
    params = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fn = {"type": "function", "function": {"name": "add", "parameters": params}}
    other = {"type": "function", "function": {"name": "mul", "parameters": {"type": "object"}}}
    named = {"type": "function", "function": {"name": "add"}}
    # a forced call: one request constrained to the tool's argument schema ...
    plan = _plan({"tools": [fn, other], "tool_choice": named}, mode="engine")
    assert plan.decision is None and "tools" not in plan.final
    assert plan.final["extra_body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": params},
    }
    assert plan.call_as_json == "add"
    # ... whose JSON answer becomes the tool call (and a broken one an invalid call)
    for text, valid in (('{"a": 2}', True), ('{"a": 2', False)):
        raw = ChatResult(generations=[ChatGeneration(message=AIMessage(text))])
        message = plan.finish(raw).generations[0].message
        assert isinstance(message, AIMessage)
        if valid:
            assert message.tool_calls[0]["name"] == "add"
            assert message.tool_calls[0]["args"] == {"a": 2}
        else:
            assert not message.tool_calls and message.invalid_tool_calls[0]["name"] == "add"
    # auto: a decision under a tiny grammar first
    plan = _plan({"tools": [fn, other], "tool_choice": "auto"}, mode="engine")
    assert plan.decision is not None and "grammar" in plan.decision["extra_body"]
    assert isinstance(plan.decision_messages[0], SystemMessage)
    plan.choose(ChatResult(generations=[ChatGeneration(message=AIMessage("functions.mul:"))]))
    assert plan.call_as_json == "mul"
    # structured output: the engine's json_schema type (the fallback takes json_object+schema)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    plan = _plan({"response_format": {"type": "json_object", "schema": schema}}, mode="engine")
    assert plan.final["extra_body"]["response_format"]["type"] == "json_schema"
    plan = _plan({"response_format": {"type": "json_object", "schema": schema}}, mode="python")
    assert plan.final["extra_body"]["response_format"]["type"] == "json_object"
    plan = _plan({"tools": [fn], "tool_choice": named}, mode="python")
    assert plan.final["tool_choice"] == named and plan.call_as_json is None


# --------------------------------------------------------------------------- building


@needs_cmake
def test_build_caches_the_binary_once(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANN_LLAMA_CPP_SOURCE", str(_fake_source(tmp_path / "src")))
    lines: list[str] = []
    assert engine.find_llama_server() is None
    built = engine.build_llama_server(progress=lines.append)
    assert built.is_file() and os.access(built, os.X_OK)
    assert built.is_relative_to(isolated_cache / "engine")
    assert "9.9.9-test" in built.parent.parent.name  # keyed by the llama-cpp-python version
    assert any("compiling llama-server" in line for line in lines)
    assert engine.find_llama_server() == built
    stamp = built.stat().st_mtime_ns
    assert engine.resolve_llama_server(build=True) == built  # found, not rebuilt
    assert engine.build_llama_server(progress=lines.append) == built
    assert built.stat().st_mtime_ns == stamp
    # nothing of the build tree is left behind, only the binary, its log and the lock
    leftovers = {p.name for p in built.parent.parent.iterdir()}
    assert leftovers <= {"bin", "build.log", ".lock"}


@needs_cmake
def test_a_failed_build_is_remembered_with_its_log(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = _fake_source(tmp_path / "src", body="int main(void) { this is not C }\n")
    monkeypatch.setenv("ANN_LLAMA_CPP_SOURCE", str(source))
    with pytest.raises(engine.EngineUnavailable, match="compiling llama-server failed") as info:
        engine.build_llama_server(progress=lambda _: None)
    assert "log " in str(info.value)
    failure = engine.last_failure()
    assert failure is not None and Path(failure["log"]).is_file()
    assert "error" in Path(failure["log"]).read_text().lower()
    assert engine.find_llama_server() is None
    # later processes do not compile again: they are told, at once
    began = time.monotonic()
    with pytest.raises(engine.EngineUnavailable, match="failed earlier"):
        engine.resolve_llama_server(build=True)
    assert time.monotonic() - began < 1.0
    assert "build failed" in str(engine.engine_status()["status"])
    # an explicit build retries, and a fixed source succeeds
    (source / "main.c").write_text("int main(void) { return 0; }\n")
    assert engine.build_llama_server(progress=lambda _: None).is_file()
    assert engine.last_failure() is None


@needs_cmake
def test_two_builds_at_once_make_one_binary(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANN_LLAMA_CPP_SOURCE", str(_fake_source(tmp_path / "src")))
    results: list[Path] = []
    compiles: list[str] = []

    def build() -> None:
        results.append(
            engine.build_llama_server(
                progress=lambda line: (
                    compiles.append(line) if "compiling llama-server once" in line else None
                )
            )
        )

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 2 and results[0] == results[1] and results[0].is_file()
    assert len(compiles) == 1  # the second waited on the lock, then found the binary


def test_a_source_folder_without_llama_cpp_is_refused(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ANN_LLAMA_CPP_SOURCE", str(tmp_path / "empty"))
    with pytest.raises(engine.EngineUnavailable, match=r"no llama\.cpp source tree"):
        engine.build_llama_server(progress=lambda _: None)


# --------------------------------------------------------------------------- fallback


def _unbuildable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cached engine and no source to build one from."""
    monkeypatch.setenv("ANN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ANN_LLAMA_CPP_SOURCE", str(tmp_path / "no-such-source"))
    monkeypatch.delenv("ANN_LOCAL_ENGINE", raising=False)
    monkeypatch.setattr(launch_module, "_WARNED_FALLBACK", threading.Event())
    monkeypatch.setattr(server_module, "prebuilt_available", lambda: False)  # nor the wheel


@needs_fallback
def test_auto_falls_back_with_one_warning_when_the_engine_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _unbuildable(monkeypatch, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = LocalServer(tmp_path / "m.gguf")
        assert first._choose_engine() is False
        second = LocalServer(tmp_path / "m.gguf")
        second._choose_engine()
    assert first.engine == second.engine == "python"
    assert first.slots == 1 and first.gate.slots == 1
    fallbacks = [w for w in caught if issubclass(w.category, server_module.EngineFallbackWarning)]
    assert len(fallbacks) == 1  # one clear warning per process, not one per server
    text = str(fallbacks[0].message)
    assert "no-such-source" in text  # why
    assert "one request at a time" in text and "ann engine --build" in text  # what is lost, fix


def test_without_the_fallback_installed_an_unbuildable_engine_is_one_error_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _unbuildable(monkeypatch, tmp_path)
    monkeypatch.setattr(launch_module, "SERVER_MODULES", ("ann_no_such_module",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LocalModelError) as info:
            LocalServer(tmp_path / "m.gguf")._choose_engine()
    text = str(info.value)
    assert "no-such-source" in text  # why the engine cannot serve
    assert 'pip install "ann-langgraph[local-fallback]"' in text  # and how to get the fallback
    assert not [w for w in caught if issubclass(w.category, server_module.EngineFallbackWarning)]


def test_the_engine_builds_from_the_pinned_sources_without_llama_cpp_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(engine, "llama_cpp_version", lambda: None)
    assert engine.source_version() == engine.ENGINE_SOURCE_VERSION
    row = engine.engine_status()
    assert row["llama_cpp_python"] is None and row["llama_cpp_source"] == "0.3.36"
    assert str(row["status"]).startswith("not built")
    monkeypatch.setattr(engine, "llama_cpp_version", lambda: "9.9.9-test")
    assert engine.source_version() == "9.9.9-test"  # the fallback's llama.cpp, when installed


def test_asking_for_the_engine_by_name_never_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _unbuildable(monkeypatch, tmp_path)
    monkeypatch.setenv("ANN_LOCAL_ENGINE", "llama-server")
    with pytest.raises(engine.EngineUnavailable, match="no-such-source"):
        LocalServer(tmp_path / "m.gguf")._choose_engine()


@needs_fallback
@local_model
def test_the_fallback_server_really_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _unbuildable(monkeypatch, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LocalServer(find_gguf("smollm2"), n_ctx=2048) as srv:
            assert srv.engine == "python" and srv.slots == 1
            model = LocalChatModel(embedded="smollm2", max_tokens=8)
            model._server = srv
            out = model.invoke("Say hi.")
            assert out.usage_metadata and 0 < out.usage_metadata["output_tokens"] <= 8
    assert any(issubclass(w.category, server_module.EngineFallbackWarning) for w in caught)


@needs_fallback
@needs_cmake
def test_a_failed_engine_start_falls_back_and_keeps_its_log_in_the_cache(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    crash = '#include <stdio.h>\nint main(void) { puts("boom: no slots today"); return 3; }\n'
    monkeypatch.setenv("ANN_LLAMA_CPP_SOURCE", str(_fake_source(tmp_path / "src", body=crash)))
    monkeypatch.setattr(launch_module, "_WARNED_FALLBACK", threading.Event())
    made: list[Path] = []
    real_mkdtemp = server_module.tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        made.append(Path(real_mkdtemp(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(server_module.tempfile, "mkdtemp", mkdtemp)
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"GGUF" + bytes(64))  # the fallback then fails on the file itself
    srv = LocalServer(bad, n_ctx=512, slots=1, start_timeout=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LocalModelError):
            srv.start()
    srv.stop()
    fallbacks = [w for w in caught if issubclass(w.category, server_module.EngineFallbackWarning)]
    assert len(fallbacks) == 1
    kept = isolated_cache / "engine" / "last-start-failure.log"
    assert f"(log {kept})" in str(fallbacks[0].message) and "exited with code 3" in str(
        fallbacks[0].message
    )
    assert "boom: no slots today" in kept.read_text()
    assert srv.engine == "python" and len(made) >= 2
    assert not made[0].exists()  # the engine's temporary folder is not left in /tmp


_LOAD_LOG = """\
0.00.004.965 E common_fit_params: encountered an error while trying to fit params: failed to load model
0.00.004.972 E gguf_init_from_reader: invalid magic characters: 'Ue??', expected 'GGUF'
0.00.004.977 E llama_model_load: error loading model: llama_model_loader: failed to load model
0.00.004.980 I srv    operator(): operator(): cleaning up before exit...
0.00.006.207 E srv  llama_server: exiting due to model loading error"""


def test_a_model_load_failure_is_told_apart_from_an_engine_failure() -> None:
    assert (
        launch_module.model_load_error(_LOAD_LOG)
        == "gguf_init_from_reader: invalid magic characters: 'Ue??', expected 'GGUF'"
    )
    python_log = "ValueError: Failed to load model from file: /m.gguf"
    assert launch_module.model_load_error(python_log) == python_log
    engine_log = "error while loading shared libraries: libgomp.so.1: cannot open shared object"
    assert launch_module.model_load_error(engine_log) is None
    assert launch_module.model_load_error("illegal instruction (core dumped)") is None


def test_a_broken_model_file_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The engine cannot load a broken file; the python server could not either, so falling
    back would only hide the cause behind a second failure."""
    _engine_or_skip()
    monkeypatch.delenv("ANN_LOCAL_ENGINE", raising=False)
    monkeypatch.setattr(launch_module, "_WARNED_FALLBACK", threading.Event())
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(200))
    srv = LocalServer(bad, n_ctx=512, slots=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModelLoadError, match=r"broken.gguf could not be loaded"):
            srv.start()
    assert srv.engine == "llama-server" and not srv.is_running()
    assert not [w for w in caught if issubclass(w.category, server_module.EngineFallbackWarning)]


# --------------------------------------------------------------------------- the real engine


def _engine_or_skip() -> Path:
    found = engine.find_llama_server()
    if found is None:
        pytest.skip("llama-server is not built here (`ann engine --build`, run by make install)")
    return found


@pytest.fixture(scope="module")
def engine_server() -> Any:
    _engine_or_skip()
    with LocalServer(find_gguf("smollm2"), n_ctx=2048, engine="llama-server", slots=2) as srv:
        yield srv


def _post(srv: LocalServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        srv.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _model(srv: LocalServer, **kw: Any) -> LocalChatModel:
    model = LocalChatModel(embedded="smollm2", **kw)
    model._server = srv
    return model


@local_model
def test_engine_answers_with_usage_and_honours_the_cap(engine_server: LocalServer) -> None:
    assert engine_server.engine == "llama-server" and engine_server.slots == 2
    out = _model(engine_server, max_tokens=6, temperature=0.0).invoke(
        "Count from one to twenty in words."
    )
    assert out.usage_metadata is not None
    assert out.usage_metadata["input_tokens"] > 0
    assert 0 < out.usage_metadata["output_tokens"] <= 6
    assert out.response_metadata.get("finish_reason") == "length"


@local_model
def test_engine_keeps_spare_slots_but_serves_only_its_gate(engine_server: LocalServer) -> None:
    with urllib.request.urlopen(engine_server.url + "/slots", timeout=10) as response:
        slots = json.loads(response.read())
    assert len(slots) == engine_server.engine_slots == 2 * engine_server.slots
    assert engine_server.gate.slots == engine_server.slots == 2


@local_model
def test_engine_serves_two_requests_at_once(engine_server: LocalServer) -> None:
    body = {
        "messages": [{"role": "user", "content": "Write a long story about a cat."}],
        "max_tokens": 160,
        "temperature": 0.8,
        "ignore_eos": True,
    }
    busy: list[int] = []
    done = threading.Event()

    def watch() -> None:  # the engine's own view of its slots while both requests run
        while not done.is_set():
            with urllib.request.urlopen(engine_server.url + "/slots", timeout=10) as response:
                slots = json.loads(response.read())
            busy.append(sum(1 for slot in slots if slot.get("is_processing")))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    results: list[dict[str, Any]] = []
    workers = [
        threading.Thread(
            target=lambda: results.append(_post(engine_server, "/v1/chat/completions", body))
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    done.set()
    watcher.join(10)
    assert len(results) == 2
    assert max(busy) == 2  # both slots were decoding at the same moment
    assert all(r["usage"]["completion_tokens"] == 160 for r in results)


@local_model
def test_engine_reuses_a_shared_prompt_prefix(engine_server: LocalServer) -> None:
    prefix = "You are a careful assistant. " + " ".join(f"Fact {i}: {i * 7}." for i in range(60))
    model = _model(engine_server, max_tokens=4)
    first = model.invoke([SystemMessage(prefix), HumanMessage("What is fact 3?")])
    second = model.invoke([SystemMessage(prefix), HumanMessage("What is fact 9?")])
    assert first.usage_metadata and second.usage_metadata
    cached = (second.usage_metadata.get("input_token_details") or {}).get("cache_read", 0)
    assert cached > 0.8 * first.usage_metadata["input_tokens"]  # the prefix was not recomputed


class Person(BaseModel):
    name: str
    age: int


@local_model
def test_engine_returns_schema_valid_json(engine_server: LocalServer) -> None:
    model = _model(engine_server, max_tokens=64)
    for _ in range(3):
        person = model.with_structured_output(Person, method="json_schema").invoke(
            "Invent a person."
        )
        assert isinstance(person, Person)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@local_model
def test_engine_named_tool_call_and_the_result_fed_back(engine_server: LocalServer) -> None:
    model = _model(engine_server, max_tokens=64)
    call = model.bind_tools([add], tool_choice="add").invoke("What is 2 + 3?")
    assert len(call.tool_calls) == 1 and call.tool_calls[0]["name"] == "add"
    assert set(call.tool_calls[0]["args"]) == {"a", "b"}
    result = ToolMessage("5", tool_call_id=call.tool_calls[0]["id"])
    answer = model.bind_tools([add]).invoke(
        [HumanMessage("What is 2 + 3?"), call, result], tool_choice="none"
    )
    assert answer.text.strip() and not answer.tool_calls


@local_model
def test_engine_async_calls_through_the_slot_gate_all_answer(engine_server: LocalServer) -> None:
    model = _model(engine_server, max_tokens=4)

    async def main() -> list[Any]:
        return await asyncio.gather(*(model.ainvoke(f"Say {w}.") for w in ("hi", "bye", "yes")))

    outs = asyncio.run(main())
    assert all(o.usage_metadata and 0 < o.usage_metadata["output_tokens"] <= 4 for o in outs)


@local_model
def test_engine_stops_and_dies_with_a_killed_parent(tmp_path: Path) -> None:
    _engine_or_skip()
    with LocalServer(find_gguf("smollm2"), n_ctx=512, engine="llama-server", slots=1) as srv:
        pid, port = srv.pid, srv.port
        assert pid is not None and port is not None
    assert not _alive(pid)
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            from ann_langgraph.local import LocalServer, find_gguf
            server = LocalServer(find_gguf("smollm2"), n_ctx=512, engine="llama-server").start()
            print(server.pid, server.engine, flush=True)
            os.kill(os.getpid(), 9)  # no atexit: only the watchdog can clean up
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    pid_text, engine_name = proc.stdout.split()[:2]
    assert engine_name == "llama-server"
    child = int(pid_text)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def test_a_server_still_loading_is_not_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread asking for the server while another starts it waits for readiness: before, it
    got the spawned, still-loading process and its requests met 503 "Loading model"."""
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")
    loaded = threading.Event()
    handed: dict[str, float] = {}

    def spawn(self: LocalServer, model_path: Path) -> None:
        self._workdir = tmp_path
        self._port = 1
        self._proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

    def wait_ready(self: LocalServer, deadline: float) -> None:
        time.sleep(0.6)  # the model is loading
        loaded.set()
        handed["ready"] = time.monotonic()

    monkeypatch.setattr(LocalServer, "_spawn", spawn)
    monkeypatch.setattr(LocalServer, "_wait_ready", wait_ready)
    monkeypatch.setattr(LocalServer, "_cleanup", lambda self: None)
    monkeypatch.setattr(server_module, "check_server_runtime", lambda *a: None)
    server = LocalServer(model_file, engine="python")
    monkeypatch.setitem(registry_module._SERVERS, model_file.resolve(), server)
    first = threading.Thread(target=registry_module.get_local_server, args=(model_file,))
    first.start()
    try:
        deadline = time.monotonic() + 5
        while server._proc is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server._proc is not None and not loaded.is_set()  # spawned, still loading
        assert not server.is_running()
        got = registry_module.get_local_server(model_file)
        handed["second"] = time.monotonic()
        assert got is server and loaded.is_set() and handed["second"] >= handed["ready"]
        assert server.is_running()
    finally:
        first.join(10)
        if server._proc is not None:
            server._proc.kill()
            server._proc.wait()
