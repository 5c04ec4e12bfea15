"""evals.optimizer_stats: the parse rate and prompt reuse pooled over training run directories."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from ann_langgraph.cache import SQLiteLLMCache
from evals.optimizer_stats import app, pool, run_stats


def _run_dir(path, history, spend=()):
    path.mkdir(parents=True)
    (path / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    SQLiteLLMCache(path / "cache.sqlite").close()  # creates the ledger table
    with sqlite3.connect(path / "cache.sqlite") as conn:
        conn.executemany(
            "INSERT INTO spend (created, model, input_tokens, output_tokens, reused_input_tokens)"
            " VALUES (0, 'local', ?, 1, ?)",
            spend,
        )
    return path


def _step(step, *, critic=(1, True, None), repairs=()):
    attempts, parsed, error = critic
    return {
        "global_step": step,
        "gradient": {"attempts": attempts, "parsed": parsed, "error": error, "blame": []},
        "candidates": [
            {"layer": layer, "source": "repairer", "attempts": a, "parsed": p, "error": e}
            for layer, a, p, e in repairs
        ]
        + [{"layer": "answer", "source": "bootstrap", "attempts": 0}],
    }


def test_pooled_parse_rate_counts_every_attempt_and_names_failures(tmp_path):
    a = _run_dir(
        tmp_path / "a",
        [
            _step(0, repairs=[("solve", 1, True, None)]),
            _step(1, critic=(2, False, "bad json"), repairs=[("answer", 2, True, None)]),
        ],
        spend=[(100, 60), (50, 0)],
    )
    b = _run_dir(tmp_path / "b", [_step(0, repairs=[("x", 2, False, "no answer")])])
    rows = [run_stats(a), run_stats(b)]
    assert [r["structured_calls"] for r in rows] == [6, 3]
    assert [r["structured_parsed"] for r in rows] == [3, 1]
    assert rows[0]["prompt_sent"] == 150 and rows[0]["prompt_processed"] == 90
    assert rows[0]["failures"] == ["step 1 critic: bad json"]
    assert rows[1]["failures"] == ["step 0 repair x: no answer"]
    total = pool(rows)
    assert total["structured_calls"] == 9 and total["structured_parsed"] == 4
    assert total["parse_rate"] == pytest.approx(4 / 9)
    low, high = total["parse_rate_ci"]
    assert low < 4 / 9 < high and low > 0 and high < 1
    assert total["processed_share"] == pytest.approx(90 / 150)


def test_cli_prints_the_pooled_row_and_writes_json(tmp_path):
    a = _run_dir(tmp_path / "a", [_step(0, repairs=[("solve", 1, True, None)])], [(10, 5)])
    out = tmp_path / "stats.json"
    result = CliRunner().invoke(app, [str(a), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "all" in result.output and "100.0%" in result.output
    saved = json.loads(out.read_text())
    assert saved["pooled"]["structured_calls"] == 2 and saved["pooled"]["processed_share"] == 0.5


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    result = CliRunner().invoke(app, [str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code != 0
    assert "no history.jsonl" in result.output
