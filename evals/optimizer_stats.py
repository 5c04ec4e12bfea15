"""The optimizer's own reliability, pooled over training runs: how often its structured output
(critic and repairer calls, retries included) parsed, and how much of the prompt the model
server really processed.

One training run of a small starter makes only a handful of critic and repairer calls, so a
parse rate worth quoting pools several runs::

    python -m evals.optimizer_stats runs/demo /work/keep/compare-gsm8k/methods/ann-trained/run

Reads each run directory's ``history.jsonl`` (written after every step, so a run still going
counts too) and the ledger in its ``cache.sqlite``; writes nothing unless ``--json`` is given.
A JSON file in place of a directory adds the runs it holds: an earlier ``--json`` output or
the ``optimizer.json`` of a recorded comparison (``evals.record``), so runs made on machines
that are gone still pool.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ann_langgraph.report import learning_stats, structured_calls
from ann_langgraph.stats import confidence_interval

app = typer.Typer(add_completion=False)

__all__ = ["parse_failures", "pool", "run_stats", "saved_stats", "stats_rows"]


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        raise typer.BadParameter(f"{run_dir}: no history.jsonl (not a training run directory?)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{path}:{n}: not JSON ({exc.msg})") from exc
    return rows


def _prompt_tokens(run_dir: Path) -> dict[str, int]:
    """Prompt tokens sent and reused by the server, from the run's ledger (0 without one)."""
    path = run_dir / "cache.sqlite"
    if not path.is_file():
        return {"sent": 0, "reused": 0, "paid_calls": 0}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        calls, sent, reused = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(reused_input_tokens), 0) FROM spend"
        ).fetchone()
    return {"sent": int(sent), "reused": int(reused), "paid_calls": int(calls)}


def saved_stats(path: Path) -> list[dict[str, Any]]:
    """The per-run rows an earlier ``--json`` (or ``evals.record``) wrote to ``path``."""
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise typer.BadParameter(f"{path}: not an optimizer_stats JSON ({exc})") from exc
    need = {
        "run_dir",
        "steps",
        "structured_calls",
        "structured_parsed",
        "parse_rate",
        "prompt_sent",
        "prompt_processed",
        "calls_saved_est",
        "failures",
    }
    for row in runs:
        missing = need - set(row)
        if missing:
            raise typer.BadParameter(f"{path}: a run lacks {', '.join(sorted(missing))}")
    return list(runs)


def stats_rows(path: Path) -> list[dict[str, Any]]:
    """A run directory's row, or the rows saved in a JSON file."""
    return saved_stats(path) if path.is_file() else [run_stats(path)]


def parse_failures(history: list[dict[str, Any]]) -> list[str]:
    """Why each critic or repairer call that never parsed gave up (one line per call row)."""
    return [f"{who}: {row.get('error')}" for row, who, ok in structured_calls(history) if not ok]


def run_stats(run_dir: Path) -> dict[str, Any]:
    """One run directory: steps, structured calls and parses, early stops, prompt reuse."""
    history = _history(run_dir)
    stats = learning_stats(history)
    tokens = _prompt_tokens(run_dir)
    return {
        "run_dir": str(run_dir),
        "steps": len(history),
        **stats,
        "prompt_sent": tokens["sent"],
        "prompt_processed": tokens["sent"] - tokens["reused"],
        "paid_calls": tokens["paid_calls"],
        "failures": parse_failures(history),
    }


def pool(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """All runs as one: the parse rate with its 95% (Wilson) interval over every call."""
    calls = sum(r["structured_calls"] for r in rows)
    parsed = sum(r["structured_parsed"] for r in rows)
    low, high = confidence_interval([1.0] * parsed + [0.0] * (calls - parsed))
    sent = sum(r["prompt_sent"] for r in rows)
    processed = sum(r["prompt_processed"] for r in rows)
    return {
        "runs": len(rows),
        "steps": sum(r["steps"] for r in rows),
        "structured_calls": calls,
        "structured_parsed": parsed,
        "parse_rate": parsed / calls if calls else None,
        "parse_rate_ci": [low, high] if calls else None,
        "prompt_sent": sent,
        "prompt_processed": processed,
        "processed_share": processed / sent if sent else None,
        "calls_saved_est": sum(r["calls_saved_est"] for r in rows),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


@app.command()
def main(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="Training run directories, or JSON files an earlier --json wrote."),
    ],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write this JSON.")] = None,
) -> None:
    """Pool the optimizer's parse rate and prompt reuse over training runs."""
    rows = [row for path in run_dirs for row in stats_rows(path)]
    total = pool(rows)
    table = Table(title="Optimizer structured output and prompt reuse")
    for col in ("run", "steps", "calls", "parsed", "rate", "prompt sent", "processed"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in rows:
        share = r["prompt_processed"] / r["prompt_sent"] if r["prompt_sent"] else None
        table.add_row(
            r["run_dir"],
            str(r["steps"]),
            str(r["structured_calls"]),
            str(r["structured_parsed"]),
            _pct(r["parse_rate"]),
            str(r["prompt_sent"]),
            _pct(share),
        )
    ci = total["parse_rate_ci"]
    rate = _pct(total["parse_rate"]) + (f" ({_pct(ci[0])}-{_pct(ci[1])})" if ci else "")
    table.add_row(
        "all",
        str(total["steps"]),
        str(total["structured_calls"]),
        str(total["structured_parsed"]),
        rate,
        str(total["prompt_sent"]),
        _pct(total["processed_share"]),
    )
    console = Console()
    console.print(table)
    for r in rows:
        for line in r["failures"]:
            console.print(f"{r['run_dir']}: {line}", markup=False)
    if json_out is not None:
        json_out.write_text(json.dumps({"runs": rows, "pooled": total}, indent=2) + "\n")


if __name__ == "__main__":
    app()
