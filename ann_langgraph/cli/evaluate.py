"""``ann eval``: score a spec on a benchmark split or a dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from ..local import LocalModelError
from ..models import ModelError
from ..spec import GraphSpec, SpecError, save_spec
from ._common import (
    ExecutorOpt,
    ModelOpt,
    ReproducibleOpt,
    RequestsOpt,
    SpecArg,
    _check_models,
    _dataset,
    _executor,
    _fail,
    _load,
    _metric_for,
    _models_override,
    _reproducible,
    app,
    console,
    err_console,
)


def _evals_module() -> Any:
    """The ``evals`` package (benchmarks, baselines, report tables), imported on demand."""
    try:
        import evals
        import evals.baselines
        import evals.report
    except ImportError as exc:
        raise _fail(
            f"the evals package is not available ({exc}); install ann-langgraph from a checkout "
            "(pip install -e '.[evals]')"
        ) from None
    return evals


def _eval_examples(
    evals: Any, benchmark: str, split: str | None, data_dir: Path | None, limit: int | None
) -> tuple[Any, str, list[dict[str, Any]]]:
    try:
        bench = evals.get_benchmark(benchmark)
    except KeyError as exc:
        raise _fail(str(exc.args[0]) if exc.args else str(exc)) from None
    except ImportError as exc:
        raise _fail(f"benchmark {benchmark!r} needs a missing package: {exc}") from None
    split_name = split or bench.default_eval_split
    try:
        rows = bench.load(split_name, data_dir=data_dir, limit=limit)
    except (OSError, ValueError) as exc:  # DataNotFoundError, UnknownSplitError, bad rows
        raise _fail(str(exc)) from None
    if not rows:
        raise _fail(f"benchmark {benchmark!r} split {split_name!r} has no examples")
    return bench, split_name, rows


@app.command("eval")
def eval_command(
    spec_path: SpecArg,
    benchmark: Annotated[
        str | None,
        typer.Option("--benchmark", "-b", help="A benchmark name (gsm8k, math, mmlu-ml, ...)."),
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Your own examples (JSONL/JSON) instead.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Metric name for --dataset (see `ann metrics`; default exact_match)."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Benchmark split (default: the benchmark's eval split).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate the first N examples.")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Benchmark data folder (default: $ANN_DATA_DIR, ...)."),
    ] = None,
    model: ModelOpt = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Examples run at once [default: 1 on local, else 4]."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds per example before it counts as failed.")
    ] = 300.0,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Turn the response cache off.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Results folder (default: runs/eval-<spec>-<data>-<time>)."
        ),
    ] = None,
    langsmith_experiment: Annotated[
        str | None,
        typer.Option(
            "--langsmith-experiment",
            help="Record the run as a LangSmith experiment with this name (needs --dataset "
            "langsmith:<name> and LANGSMITH_API_KEY).",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    executor: ExecutorOpt = "local",
    requests_in_flight: RequestsOpt = None,
    reproducible: ReproducibleOpt = False,
) -> None:
    """Score a spec on a benchmark split (or your dataset): accuracy with a 95% CI, cost, files."""
    _reproducible(reproducible)
    from ..cache import SQLiteLLMCache
    from ..evaluate import evaluate
    from ..langsmith_io import LangSmithError

    evals = _evals_module()
    spec = _load(spec_path)
    if (benchmark is None) == (dataset is None):
        raise _fail("give exactly one of --benchmark NAME or --dataset FILE")
    data = _eval_data(evals, spec, benchmark, dataset, metric, split, data_dir, limit)
    bench, rows = data.bench, data.rows
    models = _models_override(model)
    _check_models(spec, models)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = out or Path("runs") / f"eval-{spec.name}-{data.label}-{stamp}"
    target.mkdir(parents=True, exist_ok=True)
    command = _command_line(spec_path, data, dataset, metric, limit, data_dir, model)
    cache = None if no_cache else SQLiteLLMCache(target / "cache.sqlite")
    if bench is not None and spec.answer_format != bench.answer_format and not json_output:
        err_console.print(
            f"[yellow]note:[/] the spec extracts answers as '{spec.answer_format}', the "
            f"benchmark expects '{bench.answer_format}'",
            highlight=False,
        )
    runner = _executor(executor, requests_in_flight)
    try:
        report = evaluate(
            spec,
            rows,
            data.score,
            models=models,
            concurrency=concurrency or runner.default_concurrency(spec, models, otherwise=4),
            timeout_s=timeout,
            cache=cache,
            progress=not json_output,
            metadata={"ann_eval": data.label},
            experiment=langsmith_experiment,
            executor=runner,
        )
    except (ModelError, SpecError, LocalModelError, LangSmithError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted (nothing written)", 130) from None
    finally:
        runner.close()
        if cache is not None:
            cache.close()
    summary = _write_results(evals, target, report, spec, spec_path, data, model, command)
    _print_eval(evals, summary, target, as_json=json_output)
    if report.n and report.errors == report.n:
        first = next((r.error for r in report.results if r.error), "")
        raise _fail(f"every example failed; first error: {first}", 1)


class _EvalData(NamedTuple):
    """What ``ann eval`` scores: the rows, the metric, and how to name them."""

    bench: Any
    split_name: str
    rows: list[dict[str, Any]]
    score: Any
    extras: dict[str, Any]
    breakdown: tuple[str, ...]
    source: str
    label: str


def _eval_data(
    evals: Any,
    spec: GraphSpec,
    benchmark: str | None,
    dataset: Path | None,
    metric: str | None,
    split: str | None,
    data_dir: Path | None,
    limit: int | None,
) -> _EvalData:
    """A benchmark's split with its own metric, or the user's dataset with ``--metric``."""
    if (benchmark is None) == (dataset is None):
        raise _fail("give exactly one of --benchmark NAME or --dataset FILE")
    if benchmark is not None:
        if metric is not None:
            raise _fail("--metric applies to --dataset; a benchmark brings its own metric")
        bench, split_name, rows = _eval_examples(evals, benchmark, split, data_dir, limit)
        return _EvalData(
            bench,
            split_name,
            rows,
            bench.metric(),
            {name: factory() for name, factory in bench.extra_metrics.items()},
            tuple(bench.breakdown),
            f"{bench.name} ({split_name})",
            bench.name,
        )
    assert dataset is not None
    if split is not None or data_dir is not None:
        raise _fail("--split and --data-dir apply to --benchmark, not --dataset")
    rows = _dataset(dataset, "dataset")[:limit]
    score = _metric_for(metric or "exact_match", spec)
    return _EvalData(None, "", rows, score, {}, (), str(dataset), dataset.stem)


def _command_line(
    spec_path: Path,
    data: _EvalData,
    dataset: Path | None,
    metric: str | None,
    limit: int | None,
    data_dir: Path | None,
    model: list[str] | None,
) -> list[str]:
    """The command that repeats this evaluation (written into summary.md)."""
    command = ["ann", "eval", str(spec_path)]
    if data.bench is not None:
        command += ["--benchmark", data.bench.name, "--split", data.split_name]
    else:
        command += ["--dataset", str(dataset)]
    if metric:
        command += ["--metric", metric]
    if limit:
        command += ["--limit", str(limit)]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    for value in model or []:
        command += ["--model", value]
    return command


def _write_results(
    evals: Any,
    target: Path,
    report: Any,
    spec: GraphSpec,
    spec_path: Path,
    data: _EvalData,
    model: list[str] | None,
    command: list[str],
) -> Any:
    """results.jsonl, records.jsonl, spec.yaml, summary.json and summary.md; the summary."""
    import shlex

    from ..tracing import save_records

    facts = {
        "spec": f"{spec.name} ({spec_path}, fingerprint {spec.fingerprint})",
        "data": data.source,
        "model": " ".join(model or []) or f"spec's own ({spec.models.get('default', '?')})",
        "n": report.n,
        "command": shlex.join(command),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    summary, result_rows = evals.report.summarize(
        report,
        data.rows,
        method=spec.name,
        extra_metrics=data.extras,
        breakdown=data.breakdown,
        details={k: v for k, v in facts.items() if k != "n"},
    )
    evals.report.write_jsonl(target / "results.jsonl", result_rows)
    save_records(report.records, target / "records.jsonl")
    save_spec(spec, target / "spec.yaml")
    (target / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n")
    title = f"Evaluation of {spec.name} on {data.source}"
    evals.report.write_text(
        target / "summary.md", evals.report.eval_markdown(summary, title=title, facts=facts)
    )
    return summary


def _print_eval(evals: Any, summary: Any, target: Path, *, as_json: bool) -> None:
    """The score with its CI, usage, extra metrics and breakdowns, and where the files are."""
    if as_json:
        payload = {**summary.model_dump(mode="json"), "out": str(target)}
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(
        f"[bold]{summary.metric or 'score'}[/] {100 * summary.mean:.1f}% "
        f"(95% CI {100 * summary.ci_low:.1f}-{100 * summary.ci_high:.1f}%), n={summary.n}"
        + (f", [red]{summary.errors} errors[/]" if summary.errors else ""),
        highlight=False,
    )
    console.print(
        f"{summary.tokens} tokens ({summary.input_tokens} in + {summary.output_tokens} out), "
        f"{summary.calls} calls ({summary.cached_calls} cached), ${summary.cost_usd:.4f}, "
        f"{summary.wall_time_s:.1f}s wall; per example {summary.tokens_per_example:.0f} "
        f"tokens, ${summary.cost_per_example:.5f}",
        highlight=False,
    )
    for name, value in summary.extra_metrics.items():
        console.print(f"{name}: {100 * value:.1f}%", highlight=False)
    for table in evals.report.breakdown_tables(summary):
        console.print(table)
    console.print(f"results: {target}/results.jsonl, summary.json, summary.md")
