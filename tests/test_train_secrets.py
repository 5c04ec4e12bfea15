"""No API key reaches the run directory.

Provider keys are set to distinctive fake values in the environment, and a custom chat model
carries one in an ``api_key`` field (as provider clients do); after a short training, every file
under the run directory, read as bytes (the SQLite checkpoint and cache databases and their
WAL files included), is searched for each key, raw and base64-encoded.
"""

from __future__ import annotations

import base64
import os

from pydantic import Field, SecretStr

from ann_langgraph.testing import ScriptedChatModel
from ann_langgraph.train import train

from .test_optimizer import data, executor, optimizer, solver_spec

KEYS = {
    "OPENAI_API_KEY": "sk-proj-FAKEopenaiKEY-7f3c9a1e5b2d4c6e8a0b",
    "ANTHROPIC_API_KEY": "sk-ant-api03-FAKEanthropicKEY-9d8c7b6a5f4e",
    "LANGSMITH_API_KEY": "lsv2_pt_FAKElangsmithKEY_0a1b2c3d4e5f6a7b",
}
MODEL_KEY = "sk-FAKEcustomModelFieldKEY-1234567890abcdef"
MARKER = "ZEBRA-7731"  # in the examples: must be found (the scan sees inside the databases)


class KeyedChatModel(ScriptedChatModel):
    """A scripted model holding a key, as a provider client would."""

    api_key: SecretStr = Field(default_factory=lambda: SecretStr(os.environ["OPENAI_API_KEY"]))
    backup_key: SecretStr = SecretStr(MODEL_KEY)


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw)]


def test_no_api_key_is_written_to_the_run_directory(tmp_path, monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")  # keys set, tracing off: stay offline
    monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)

    inner = executor()
    model = KeyedChatModel(respond=inner.respond, model_name="executor")
    assert model.api_key.get_secret_value() == KEYS["OPENAI_API_KEY"]
    rows = [{**row, "input": f"{row['input']} ({MARKER})"} for row in data(8, "t")]
    run_dir = tmp_path / "run"
    result = train(
        solver_spec(),
        train=rows[:4],
        val=rows[4:],
        metric="numeric_match",
        models={"default": model},
        optimizer_model=optimizer("Add one. MAGIC."),
        epochs=1,
        batch_size=4,
        run_dir=run_dir,
        progress=False,
    )
    assert result.history and model.calls  # it trained, with the keyed model

    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"checkpoints.sqlite", "cache.sqlite", "run.json", "history.jsonl"} <= names
    found = {p.name: p.read_bytes() for p in files}
    leaks = [
        (path, name)
        for path, content in found.items()
        for name, secret in [*KEYS.items(), ("model field", MODEL_KEY)]
        if any(form in content for form in _forms(secret))
    ]
    assert leaks == []
    # the scan is not blind: what training does store is found, inside both databases
    assert MARKER.encode() in found["checkpoints.sqlite"] + found.get("checkpoints.sqlite-wal", b"")
    assert b"Answer: " in found["cache.sqlite"] + found.get("cache.sqlite-wal", b"")
