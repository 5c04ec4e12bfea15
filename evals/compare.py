"""Side-by-side comparison on one benchmark: baselines, the starter ANN, the trained ANN (DSPy).

    python -m evals.compare --benchmark gsm8k --model local --limit 40

runs, on the same evaluation examples and the same model: ``io`` (one agent), ``cot``
(chain-of-thought), ``cot-sc`` (5 CoT samples, majority vote), ``ann`` (the benchmark's starter
spec, or your own with ``--spec FILE``, untrained), ``ann-trained`` (that spec after
``ann.train`` on the benchmark's train/val splits) and, on request, ``dspy`` (a DSPy
chain-of-thought program compiled by one of its optimizers; needs the ``dspy`` extra).
Everything except DSPy runs through ``ann_langgraph.evaluate``, so tokens, calls, cache hits
and cost are counted the same way.

The output folder (``--out``, default ``runs/compare-<benchmark>-<timestamp>``) holds::

    compare.md / compare.json     the table (+ model, split, n, seed, command, breakdowns)
    cache.sqlite                  the response cache shared by every method
    methods/<method>/summary.json one method's summary (its "key" says what was run)
    methods/<method>/results.jsonl one row per example
    methods/<method>/spec.yaml    the spec evaluated (baselines, ann, ann-trained)
    methods/ann-trained/run/      the training run directory (ann.train)

A method that fails is recorded (status ``error``) and the others still run. Re-running with
the same ``--out`` reuses every method whose summary is ``ok`` and whose key matches (same
examples, model and options), and resumes a training run, so finished work is not paid twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from ann_langgraph.executors import Executor, parse_executor
from ann_langgraph.local.catalogue import is_local_string
from ann_langgraph.models import ModelsArg

from .base import get_benchmark
from .compare_config import (
    DEFAULT_METHODS,
    METHODS,
    CompareConfig,
    check_methods,
    config_command,
)
from .compare_methods import MethodRunner, error_text
from .report import (
    RunSummary,
    compare_markdown,
    compare_table,
    paired_tests,
    read_jsonl,
    write_text,
)

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "CompareConfig",
    "CompareResult",
    "config_command",
    "run_compare",
]


class CompareResult(BaseModel):
    """The comparison's rows (one per method, in order) and where the files are."""

    config: CompareConfig
    split: str
    n: int
    summaries: list[RunSummary]
    out_dir: Path
    markdown_path: Path
    json_path: Path


def run_compare(
    config: CompareConfig,
    *,
    out_dir: str | Path | None = None,
    models: ModelsArg = None,
    progress: bool = True,
    console: Console | None = None,
    command: str | None = None,
    executor: Executor | None = None,
) -> CompareResult:
    """Run ``config.methods`` on the same examples and write the table to ``out_dir``.

    The table also holds the methods that earlier commands finished in ``out_dir`` for the
    same examples, model and options, so adding a method to a comparison keeps the others.

    ``models`` (optional) replaces ``config.model`` for the ANN-based methods with a chat model
    object or mapping (tests pass a scripted model); ``config.model`` stays the label.
    ``executor`` (optional) replaces the one ``config.executor`` names (the caller closes it).
    Raises for problems with the inputs (unknown benchmark/method/split, missing data); a
    method's own failure is recorded in its row instead.
    """
    console = console or Console(stderr=True)
    methods = check_methods(config.methods)
    bench = get_benchmark(config.benchmark)
    split = bench.split_name(config.split or bench.default_eval_split)
    examples = bench.load(split, data_dir=config.data_dir, limit=config.limit)
    if not examples:
        raise ValueError(f"benchmark {bench.name!r} split {split!r} has no examples")
    out = Path(out_dir or Path("runs") / f"compare-{bench.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    command = command or config_command(config, out)
    runner = MethodRunner(config, bench, split, examples, out, models, progress, console)
    if executor is not None:  # one the caller made (and closes): e.g. a RayExecutor with setup=
        runner.executor, runner.owns_executor = executor, False
    runner.executor.start()
    summaries: list[RunSummary] = []
    facts = {
        "benchmark": f"{bench.name}: {bench.description}",
        "split": f"{split} ({bench.splits.get(bench.split_range(split)[0], '')})",
        "n": len(examples),
        "model": runner.model_name,
        "seed": config.seed,
        "command": command,
    }
    try:
        for i, method in enumerate(methods, start=1):
            console.print(f"[bold][{i}/{len(methods)}][/] {method} …", highlight=False)
            try:
                summary = runner.run(method)
                note = " (reused from an earlier run)" if method in runner.reused else ""
                console.print(
                    f"    {method}: {100 * summary.mean:.1f}% "
                    f"(95% CI {100 * summary.ci_low:.1f}-{100 * summary.ci_high:.1f}%), "
                    f"n={summary.n}, {summary.tokens_per_example:.0f} tokens/example, "
                    f"${summary.cost_per_example:.5f}/example{note}",
                    highlight=False,
                )
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                summary = RunSummary(method=method, status="error", error=error_text(exc))
                write_text(
                    runner.method_dir(method) / "summary.json",
                    summary.model_dump_json(indent=2) + "\n",
                )
                console.print(f"    [red]{method} failed:[/] {summary.error}", highlight=False)
            summaries.append(summary)
            table = runner.table(summaries)
            _write_outputs(out, config, split, len(examples), facts, table)
    finally:
        runner.close()
    md_path, json_path = _write_outputs(out, config, split, len(examples), facts, table)
    return CompareResult(
        config=config,
        split=split,
        n=len(examples),
        summaries=table,
        out_dir=out,
        markdown_path=md_path,
        json_path=json_path,
    )


def _plot_front(path: Path, summaries: list[RunSummary], *, n: int) -> Path | None:
    """The table's methods on the accuracy/cost plane: the ANN rows as labelled stars, the
    others (io, CoT, CoT-SC, DSPy) as baselines; the front over all of them."""
    from ann_langgraph.cost_front import CostPoint, plot_front

    done = [s for s in summaries if s.status == "ok" and s.tokens_per_example > 0]
    points = [
        CostPoint(
            label=s.method,
            accuracy=s.mean,
            tokens=s.tokens_per_example,
            kind="version" if s.method.startswith("ann") else "baseline",
        )
        for s in done
    ]
    ours = [p for p in points if p.kind == "version"]
    others = [p for p in points if p.kind != "version"]
    if not ours:
        ours, others = others, []
    return plot_front(
        ours,
        path,
        baselines=others,
        ylabel=f"accuracy on the table's {n} examples",
        title="Methods: accuracy and tokens per example",
    )


def _write_outputs(
    out: Path,
    config: CompareConfig,
    split: str,
    n: int,
    facts: Mapping[str, Any],
    summaries: list[RunSummary],
) -> tuple[Path, Path]:
    """Rewrite compare.md/compare.json after every method, so an interrupted run keeps rows."""
    earlier = [s.method for s in summaries if s.method not in config.methods]
    if earlier:
        facts = {
            **facts,
            "earlier rows": f"{', '.join(earlier)}: finished by earlier commands into this "
            "folder with the same examples, model and options",
        }
    title = f"{config.benchmark}: methods compared on the same {n} examples"
    scores: dict[str, dict[str, float]] = {}
    for s in summaries:
        path = out / "methods" / s.method / "results.jsonl"
        if s.status == "ok" and path.exists():
            scores[s.method] = {str(r["id"]): float(r["score"]) for r in read_jsonl(path)}
    paired = paired_tests(scores)
    text = compare_markdown(summaries, title=title, facts=facts, paired=paired)
    if _plot_front(out / "compare_front.png", summaries, n=n) is not None:
        text += "\n![accuracy and tokens per example](compare_front.png)\n"
    md = write_text(out / "compare.md", text)
    payload = {
        "config": config.model_dump(mode="json"),
        "facts": dict(facts),
        "split": split,
        "n": n,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "methods": [s.model_dump(mode="json") for s in summaries],
        "paired_tests": paired,
    }
    js = write_text(out / "compare.json", json.dumps(payload, indent=2) + "\n")
    return md, js


# -- command line --------------------------------------------------------------------------

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="Benchmark name.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model for every method ('local', 'openai:...').")
    ] = "local",
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluation examples.")] = 40,
    split: Annotated[str | None, typer.Option(help="Evaluation split.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Benchmark data.")] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            exists=True,
            dir_okay=False,
            help="Starting spec of ann/ann-trained [default: graphs/<benchmark>.yaml].",
        ),
    ] = None,
    methods: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated methods from {', '.join(METHODS)}; 'all' = every one "
            "(dspy needs the dspy extra)."
        ),
    ] = ",".join(DEFAULT_METHODS),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Default: runs/compare-<bench>-<time>.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for training and DSPy.")] = 0,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Examples run at once [default: 1 on local, else 4]."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per example.")] = 300.0,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="Where examples run: local, ray (RAY_ADDRESS or a local Ray), ray:HOST:PORT, "
            "ray://HOST:PORT; DSPy runs its own loop here either way.",
        ),
    ] = "local",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="No response cache.")] = False,
    samples: Annotated[int, typer.Option(min=1, help="Self-consistency samples.")] = 5,
    temperature: Annotated[float, typer.Option(help="Self-consistency temperature.")] = 0.7,
    train_split: Annotated[str, typer.Option("--train-split")] = "train",
    val_split: Annotated[str, typer.Option("--val-split")] = "val",
    train_limit: Annotated[int | None, typer.Option("--train-limit", min=1)] = 24,
    val_limit: Annotated[int | None, typer.Option("--val-limit", min=1)] = 40,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (ann-trained).")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    optimizer_model: Annotated[
        str | None, typer.Option("--optimizer-model", help="Critic/repair model (default --model).")
    ] = None,
    max_train_tokens: Annotated[int | None, typer.Option("--max-train-tokens")] = None,
    max_train_calls: Annotated[int | None, typer.Option("--max-train-calls")] = None,
    max_train_usd: Annotated[float | None, typer.Option("--max-train-usd")] = None,
    rollout_budget: Annotated[
        int | None,
        typer.Option(
            "--rollout-budget",
            min=1,
            help="Training rollouts (examples evaluated) for every optimizer row: the ann "
            "rows' budget and GEPA's max_metric_calls [default: GEPA gets what the ann-trained "
            "row in --out used].",
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="What the ann rows' training optimises: accuracy, or cost (also a cheaper "
            "version at non-inferior accuracy; ann train --objective).",
        ),
    ] = "accuracy",
    margin: Annotated[
        float, typer.Option("--margin", min=0.0, max=1.0, help="--objective cost: the margin.")
    ] = 0.02,
    min_saving: Annotated[
        float,
        typer.Option("--min-saving", min=0.0, max=0.99, help="--objective cost: tokens saved."),
    ] = 0.10,
    dspy_optimizer: Annotated[
        str | None,
        typer.Option(
            "--dspy-optimizer",
            help="The dspy row's optimizer: miprov2 (light), copro, bootstrap-rs (demos only) "
            "or gepa; default: bootstrap-rs on local, miprov2 otherwise. The dspy-<optimizer> "
            "methods name theirs.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Compare IO, CoT, CoT-SC, the starter ANN and the trained ANN on one benchmark."""
    err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)
    chosen = (
        list(METHODS)
        if methods.strip() == "all"
        else [m.strip() for m in methods.split(",") if m.strip()]
    )
    if objective not in ("accuracy", "cost"):
        err.print(f"[bold red]error:[/] --objective must be accuracy or cost, not {objective!r}")
        raise typer.Exit(2)
    try:
        config = CompareConfig(
            benchmark=benchmark,
            model=model,
            split=split,
            limit=limit,
            data_dir=str(data_dir) if data_dir else None,
            spec=str(spec.resolve()) if spec else None,
            methods=chosen,
            seed=seed,
            concurrency=concurrency,
            timeout_s=timeout,
            executor=executor,
            cache=not no_cache,
            samples=samples,
            temperature=temperature,
            train_split=train_split,
            val_split=val_split,
            train_limit=train_limit,
            val_limit=val_limit,
            epochs=epochs,
            batch_size=batch_size,
            optimizer_model=optimizer_model,
            max_train_tokens=max_train_tokens,
            max_train_calls=max_train_calls,
            max_train_usd=max_train_usd,
            rollout_budget=rollout_budget,
            objective=objective,  # type: ignore[arg-type]
            margin=margin,
            min_saving=min_saving,
            dspy_optimizer=dspy_optimizer,
        )
        check_methods(config.methods)
        parse_executor(config.executor)
        if not is_local_string(model):
            from ann_langgraph.models import ModelError, init_model

            try:
                init_model(model)
            except ModelError as exc:
                raise ValueError(str(exc)) from None
        result = run_compare(config, out_dir=out, progress=not json_output, console=err)
    except KeyboardInterrupt:
        err.print("[bold red]error:[/] interrupted; re-run with the same --out to resume")
        raise typer.Exit(130) from None
    except (KeyError, ValueError, OSError, ImportError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(result.json_path.read_text(encoding="utf-8"), nl=False)
        return
    wide = Console(width=None if Console().is_terminal else 160)
    wide.print(
        compare_table(
            result.summaries, title=f"{benchmark} ({result.split}, n={result.n}, model {model})"
        )
    )
    wide.print(f"table: {result.markdown_path} and {result.json_path}")


if __name__ == "__main__":  # pragma: no cover
    app()
