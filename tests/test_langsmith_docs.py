"""docs/langsmith.md: its shell commands and Python snippets run as written (the embedded model
replaced by a scripted one, LangSmith by the loopback stand-in)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph import models as ann_models
from ann_langgraph.cli import app
from ann_langgraph.testing import ScriptedChatModel

from .langsmith_standin import LangSmithStandIn
from .test_langsmith import _standin

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "langsmith.md"

REVIEWS = [
    ("Loved every minute of it", "positive", "train"),
    ("Dull and far too long", "negative", "train"),
    ("A delight from start to finish", "positive", "train"),
    ("I want my money back", "negative", "train"),
    ("Wonderful acting", "positive", "val"),
    ("Terrible plot", "negative", "val"),
]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _labeler(messages, **kw) -> str:
    text = messages[-1].content.lower()
    return "negative" if any(w in text for w in ("dull", "money", "terrible")) else "positive"


@pytest.fixture
def docs_env(tmp_path, monkeypatch) -> Iterator[LangSmithStandIn]:
    standin = _standin({"LANGSMITH_API_KEY": "test-key", "LANGSMITH_TRACING": "true"})
    ls = next(standin)
    ls.add_dataset(
        "reviews",
        [
            {"inputs": {"question": q}, "outputs": {"answer": a}, "split": split}
            for q, a, split in REVIEWS
        ],
    )
    (tmp_path / "graphs").mkdir()
    shutil.copy(ROOT / "graphs" / "sentiment.yaml", tmp_path / "graphs")
    monkeypatch.chdir(tmp_path)
    model = ScriptedChatModel(respond=_labeler, model_name="local-stand-in")
    ann.register_model("local", lambda: model, replace=True)  # instead of the embedded model
    try:
        yield ls
    finally:
        ann_models._FACTORIES.pop("local", None)
        standin.close()


def test_the_shell_commands_run(docs_env):
    commands = [
        line
        for block in _blocks("bash")
        for line in block.replace("\\\n", " ").splitlines()
        if line.startswith("ann ")
    ]
    assert commands, "docs/langsmith.md shows no ann command"
    for command in commands:
        result = CliRunner().invoke(app, shlex.split(command)[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
    history = [
        json.loads(line)
        for line in Path("runs/sentiment-ls/history.jsonl").read_text().splitlines()
    ]
    assert history and {row["trace_source"] for row in history} == {"langsmith"}
    assert docs_env.runs_in("sentiment-ls")


def test_the_python_snippets_run_and_do_what_they_say(docs_env, capsys):
    namespace: dict = {}
    for block in _blocks("python"):
        exec(compile(block, str(DOC), "exec"), namespace)  # our own docs
    assert len(namespace["train"]) == 4 and len(namespace["val"]) == 2
    report = namespace["report"]
    assert report.mean == 1.0 and report.langsmith_project == "sentiment-baseline"
    session = docs_env.session_named("sentiment-baseline")
    assert session and session["reference_dataset_id"]
    local = sorted(report.records, key=lambda r: (r.start_time or "", r.run_id))
    assert namespace["records"] == local and local
    result = namespace["result"]
    assert {row["trace_source"] for row in result.history} == {"langsmith"}
    assert "LangSmith project: sentiment-baseline" in capsys.readouterr().out
