"""Train a spec, then score the starting and the trained spec on validation and test.

The before/after measurement behind the README's training numbers::

    python -m evals.train_eval graphs/sentiment.yaml --data data/sentiment \
        --metric label_match --epochs 1 --run-dir runs/measure-sentiment

``--data`` is a folder with ``train.jsonl``, ``val.jsonl`` and ``test.jsonl``; the test split is
only ever scored, never trained or validated on. Re-running with the same ``--run-dir`` resumes
the training and re-scores from the run's response cache (free). Writes ``before_after.json``
into the run directory and prints one table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import ann_langgraph as ann
from ann_langgraph.cache import SQLiteCache
from ann_langgraph.metrics import metric_for_format

app = typer.Typer(add_completion=False)


def _row(report: ann.EvalReport) -> dict[str, Any]:
    return {
        "mean": report.mean,
        "ci": [report.ci_low, report.ci_high],
        "n": report.n,
        "calls": report.calls,
        "cached_calls": report.cached_calls,
        "tokens": report.input_tokens + report.output_tokens,
        "wall_time_s": round(report.wall_time_s, 1),
    }


@app.command()
def main(
    spec_path: Path,
    data: Annotated[Path, typer.Option(help="Folder with train/val/test.jsonl.")],
    metric: Annotated[str, typer.Option()] = "exact_match",
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    run_dir: Annotated[Path | None, typer.Option()] = None,
    model: Annotated[str, typer.Option()] = "local",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    console = Console()
    spec = ann.load_spec(spec_path)
    run_path = run_dir or Path("runs") / f"measure-{spec.name}"
    splits = {s: ann.load_dataset(data / f"{s}.jsonl") for s in ("train", "val", "test")}
    score = metric_for_format(metric, spec.answer_format)
    started = time.perf_counter()
    result = ann.train(
        spec,
        train=splits["train"],
        val=splits["val"],
        metric=score,
        models=model,
        epochs=epochs,
        batch_size=batch_size,
        run_dir=run_path,
        resume=(run_path / "run.json").exists(),
        config=ann.OptimizerConfig(seed=seed),
    )
    train_s = time.perf_counter() - started
    scores: dict[str, dict[str, Any]] = {}
    cache = SQLiteCache(run_path / "cache.sqlite")  # the run's cache: re-scoring is mostly free
    try:
        for label, candidate in (("before", spec), ("after", result.best_spec)):
            for split in ("val", "test"):
                # a line before each evaluation: on the embedded model each takes minutes
                Console(stderr=True).print(
                    f"scoring the {'starting' if label == 'before' else 'best'} spec on {split} "
                    f"({len(splits[split])} examples; cached calls are free)"
                )
                report = ann.evaluate(candidate, splits[split], score, models=model, cache=cache)
                scores[f"{label}/{split}"] = _row(report)
    finally:
        cache.close()
    accepted = sum(1 for h in result.history if h.get("decision", {}).get("accepted"))
    proposed = sum(len(h.get("candidates", [])) for h in result.history)
    valid = sum(1 for h in result.history for c in h.get("candidates", []) if c.get("valid"))
    summary = {
        "spec": str(spec_path),
        "model": model,
        "metric": metric,
        "epochs": epochs,
        "batch_size": batch_size,
        "sizes": {k: len(v) for k, v in splits.items()},
        "scores": scores,
        "patches": {"proposed": proposed, "valid": valid, "accepted": accepted},
        "train_usage": result.usage,
        "train_wall_time_s": round(train_s, 1),
        "stop_reason": result.stop_reason,
        "best_version": len(result.versions) - 1,
    }
    (run_path / "before_after.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = Table(title=f"{spec.name}: before/after training ({model}, {metric})")
    for col in ("spec", "split", "n", "mean", "95% CI"):
        table.add_column(col)
    for key, row in scores.items():
        label, split = key.split("/")
        table.add_row(
            label,
            split,
            str(row["n"]),
            f"{row['mean']:.3f}",
            f"{row['ci'][0]:.2f}-{row['ci'][1]:.2f}",
        )
    console.print(table)
    console.print(
        f"patches proposed/valid/accepted: {proposed}/{valid}/{accepted}; training usage: "
        f"{json.dumps(result.usage)}; training wall time {train_s:.0f}s; "
        f"written {run_path / 'before_after.json'}"
    )


if __name__ == "__main__":
    app()
