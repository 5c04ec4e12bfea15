"""OpenAI-compatible servers (vLLM, Ollama, llama.cpp): base URLs, keys and structured output.

A fake OpenAI-compatible server on loopback records every request, so the tests check what
actually goes over the wire: the URL, the model name, the key and the structured-output method.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.cli import app
from ann_langgraph.models import ModelError, ModelResolver, structured_output_method
from tests.conftest import agent, make_spec


class FakeOpenAI:
    """Answers /v1/chat/completions: text, a JSON object (json_schema/json_mode) or a tool call."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.text = "fake answer 42"
        self.structured: dict[str, Any] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {"path": self.path, "auth": self.headers.get("authorization"), "body": body}
                )
                payload = json.dumps(fake.reply(body)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        finish = "stop"
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in ("json_schema", "json_object"):
            message["content"] = json.dumps(self.structured)
        elif body.get("tools") and body.get("tool_choice") not in (None, "auto", "none"):
            name = body["tools"][0]["function"]["name"]
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(self.structured)},
                }
            ]
            finish = "tool_calls"
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]


@pytest.fixture
def fake_openai(monkeypatch) -> Iterator[FakeOpenAI]:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeOpenAI()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def routed_spec(default: Any) -> ann.GraphSpec:
    """One dynamic layer: the router uses structured output, the chosen template plain chat."""
    return make_spec(
        [
            {
                "name": "solve",
                "aggregator": "dynamic",
                "candidates": ["parallel_vote", "sequential_cot"],
                "agents": [agent("solver", "Solver")],
            }
        ],
        models={"default": default},
    )


@pytest.mark.parametrize(
    ("method", "wire_check"),
    [
        ("json_schema", lambda b: b["response_format"]["type"] == "json_schema"),
        ("json_mode", lambda b: b["response_format"]["type"] == "json_object"),
        ("function_calling", lambda b: b["tools"] and "response_format" not in b),
    ],
)
def test_models_table_entry_sets_url_and_structured_output(fake_openai, method, wire_check):
    fake_openai.structured = {"aggregator": "sequential_cot", "reason": "one careful pass"}
    spec = routed_spec(
        {"model": "openai:qwen2.5:7b", "base_url": fake_openai.url, "structured_output": method}
    )
    out = ann.compile_graph(spec).invoke({"input": "What is 6*7?"})

    # The router's structured answer was understood (no fallback) and the agent's text came back.
    assert out["routes"]["solve"] == {
        "choice": "sequential_cot",
        "reason": "one careful pass",
        "fallback": False,
    }
    assert out["output"] == "fake answer 42"
    router_call, agent_call = fake_openai.chat_requests()
    assert router_call["body"]["model"] == "qwen2.5:7b"
    assert wire_check(router_call["body"])
    assert "response_format" not in agent_call["body"] and "tools" not in agent_call["body"]
    # A keyless local server gets a placeholder key (the OpenAI client insists on one).
    assert router_call["auth"] == "Bearer not-needed"


def test_openai_base_url_env_and_plain_string(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)
    spec = make_spec([{"name": "only", "agents": [agent("a")]}], models={"default": "openai:m1"})
    out = ann.compile_graph(spec).invoke({"input": "hi"})
    assert out["output"] == "fake answer 42"
    assert fake_openai.chat_requests()[0]["body"]["model"] == "m1"


def test_api_key_env_is_sent_and_missing_key_is_clear(fake_openai, monkeypatch):
    entry = ann.ModelConfig(model="openai:m", base_url=fake_openai.url, api_key_env="MY_VLLM_KEY")
    monkeypatch.setenv("MY_VLLM_KEY", "secret-123")
    model = ann.init_model(entry)
    assert model.invoke("hi").content == "fake answer 42"
    assert fake_openai.chat_requests()[0]["auth"] == "Bearer secret-123"
    monkeypatch.delenv("MY_VLLM_KEY")
    with pytest.raises(ModelError, match="MY_VLLM_KEY is not set"):
        ann.init_model(entry)


def test_params_reach_the_request_and_bare_names_mean_openai(fake_openai):
    model = ann.init_model(
        "my-served-model",  # no provider prefix: with a base URL it is an OpenAI-style server
        base_url=fake_openai.url,
        params={"temperature": 0.1, "extra_body": {"max_tokens": 7}},
    )
    model.invoke("hi")
    body = fake_openai.chat_requests()[0]["body"]
    assert body["model"] == "my-served-model"
    assert body["temperature"] == 0.1
    assert body["max_tokens"] == 7


def test_structured_output_method_resolution(fake_openai):
    plain = ann.init_model("openai:m", base_url=fake_openai.url)
    assert structured_output_method(plain) is None  # the provider's default
    fixed = ann.init_model("openai:m", base_url=fake_openai.url, structured_output="json_mode")
    assert structured_output_method(fixed) == "json_mode"
    assert structured_output_method(fixed.bind(temperature=0)) == "json_mode"
    # Registered models can carry a method too; the LLM cache copy keeps it.
    spec = make_spec(
        [{"name": "only", "agents": [agent("a")]}],
        models={"default": {"model": "openai:m", "base_url": fake_openai.url}},
    )
    resolver = ModelResolver(spec, {"default": fixed}, cache=ann.SQLiteLLMCache(":memory:"))
    assert structured_output_method(resolver.get("default")) == "json_mode"


def test_bad_model_settings_are_clear(fake_openai):
    with pytest.raises(ModelError, match="apply to provider models"):
        ann.init_model("local", base_url=fake_openai.url)
    with pytest.raises(ModelError, match="unknown structured_output"):
        ann.init_model("openai:m", base_url=fake_openai.url, structured_output="xml")
    doc = make_spec([{"name": "l", "agents": [agent("a")]}]).model_dump(mode="json")
    doc["models"] = {"default": {"model": "x", "api_key": "sk"}}
    with pytest.raises(ann.SpecError, match="API keys do not belong in a spec") as info:
        ann.parse_spec(json.dumps(doc), format="json")
    assert info.value.errors[0][0] == "models.default"
    doc["models"] = {"default": {"model": "openai:m", "structured_output": "xml"}}
    with pytest.raises(ann.SpecError) as info:
        ann.parse_spec(json.dumps(doc), format="json")
    assert info.value.errors[0][0] == "models.default.structured_output"
    assert "json_schema" in info.value.errors[0][1]
    doc["models"] = {"default": {"model": "openai:m", "api_key_env": "not a name"}}
    with pytest.raises(ann.SpecError, match=r"models\.default\.api_key_env"):
        ann.parse_spec(json.dumps(doc), format="json")


def test_spec_round_trips_with_a_models_table_entry(fake_openai, tmp_path):
    spec = routed_spec(
        {"model": "openai:m", "base_url": fake_openai.url, "structured_output": "json_schema"}
    )
    path = ann.save_spec(spec, tmp_path / "s.yaml")
    text = path.read_text()
    assert "base_url:" in text and "params" not in text  # defaults stay out of the file
    again = ann.load_spec(path)
    assert again == spec and again.fingerprint == spec.fingerprint
    assert again.model_entry("default").structured_output == "json_schema"
    # Plain string entries keep their old fingerprint-relevant form.
    assert make_spec([{"name": "l", "agents": [agent("a")]}]).models == {"default": "local"}


def test_schema_documents_the_long_form():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    config = schema["$defs"]["ModelConfig"]
    assert set(config["properties"]) >= {"model", "base_url", "api_key_env", "structured_output"}
    assert config["properties"]["structured_output"]["anyOf"][0]["enum"] == [
        "function_calling",
        "json_schema",
        "json_mode",
    ]


def test_cli_run_with_model_and_base_url(fake_openai, tmp_path):
    spec_path = ann.save_spec(
        make_spec([{"name": "only", "agents": [agent("a")]}]), tmp_path / "s.yaml"
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(spec_path),
            "-i",
            "hi",
            "--model",
            "openai:served",
            "--base-url",
            fake_openai.url,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["output"] == "fake answer 42"
    assert fake_openai.chat_requests()[0]["body"]["model"] == "served"


def test_cli_base_url_applies_to_the_spec_table(fake_openai, tmp_path):
    spec = make_spec(
        [{"name": "only", "agents": [agent("a"), agent("b", model="other")]}],
        models={"default": "openai:one", "other": "openai:two"},
    )
    spec_path = ann.save_spec(spec, tmp_path / "s.yaml")
    result = CliRunner().invoke(
        app, ["run", str(spec_path), "-i", "hi", "--base-url", fake_openai.url, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert [r["body"]["model"] for r in fake_openai.chat_requests()] == ["one", "two"]


def test_cli_base_url_with_local_is_an_error(tmp_path):
    spec_path = ann.save_spec(
        make_spec([{"name": "only", "agents": [agent("a")]}]), tmp_path / "s.yaml"
    )
    result = CliRunner().invoke(
        app, ["run", str(spec_path), "-i", "hi", "--base-url", "http://127.0.0.1:9/v1"]
    )
    assert result.exit_code == 2
    assert "apply to provider models" in result.output


def test_cli_init_with_base_url(fake_openai, tmp_path):
    out = tmp_path / "designed.yaml"
    result = CliRunner().invoke(
        app,
        [
            "init",
            "--task",
            "Sort tickets by urgency",
            "--out",
            str(out),
            "--model",
            "openai:designer",
            "--base-url",
            fake_openai.url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert fake_openai.chat_requests()[0]["body"]["model"] == "designer"
    assert ann.load_spec(out).layers  # a valid spec (the model's or the built-in template)


def test_optimizer_defaults_to_the_models_entry(fake_openai, monkeypatch):
    """create_optimizer(models=ModelConfig(...)) critiques with that server, not the local model."""
    from ann_langgraph.optimize import graph as optimizer_graph

    seen: list[Any] = []
    real = optimizer_graph.init_model
    monkeypatch.setattr(
        optimizer_graph, "init_model", lambda m, **k: seen.append(m) or real(m, **k)
    )
    entry = ann.ModelConfig(
        model="openai:critic", base_url=fake_openai.url, structured_output="json_mode"
    )
    ann.create_optimizer(metric="exact_match", models=entry)
    assert seen == [entry]


def test_cli_show_prints_long_form_entries(tmp_path):
    spec = routed_spec({"model": "openai:q", "base_url": "http://127.0.0.1:1/v1"})
    path = ann.save_spec(spec, tmp_path / "s.yaml")
    result = CliRunner().invoke(app, ["show", str(path)])
    assert result.exit_code == 0, result.output
    assert "'default': {'model': 'openai:q', 'base_url': 'http://127.0.0.1:1/v1'}" in result.output
