"""``ann train``: the backward pass from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..models import ModelError

if TYPE_CHECKING:
    from ..train import TrainResult

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
)

if TYPE_CHECKING:
    from ..train import TrainResult


@app.command("train")
def train_command(
    spec_path: SpecArg,
    train_path: Annotated[
        Path,
        typer.Option("--train", help="Training examples (JSONL/JSON, or langsmith:<dataset>)."),
    ],
    val_path: Annotated[
        Path,
        typer.Option("--val", help="Validation examples (JSONL/JSON, or langsmith:<dataset>)."),
    ],
    test_path: Annotated[
        Path | None,
        typer.Option(
            "--test",
            help="Held-out examples, scored with the starting and the best spec after training "
            "(never used to decide anything).",
        ),
    ] = None,
    metric: Annotated[str, typer.Option(help="Metric name (see `ann metrics`).")] = "exact_match",
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Default: runs/<spec name>.")
    ] = None,
    model: ModelOpt = None,
    optimizer_model: Annotated[
        str | None,
        typer.Option(
            "--optimizer-model",
            help="Model for the critic and repairers (default: the executor's default model).",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --run-dir.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Turn the response cache off.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Shuffling seed.")] = 0,
    min_delta: Annotated[
        float, typer.Option("--min-delta", help="Required validation gain.")
    ] = 0.0,
    paired_test: Annotated[
        bool | None,
        typer.Option(
            "--paired-test/--no-paired-test",
            help="Also require a one-sided sign test (p <= 0.1) [default: on from 12 "
            "validation examples].",
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Run the backward step when the minibatch mean is below this.")
    ] = 1.0,
    patience: Annotated[int | None, typer.Option(help="Stop after N epochs without gain.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Token budget.")] = None,
    max_calls: Annotated[int | None, typer.Option("--max-calls", help="Paid-call budget.")] = None,
    max_usd: Annotated[float | None, typer.Option("--max-usd", help="Cost budget (USD).")] = None,
    max_rollouts: Annotated[
        int | None,
        typer.Option("--max-rollouts", help="Rollout budget: examples evaluated, cached or not."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Examples evaluated at once [default: 1 on local, else 4]."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the projected calls/tokens/cost and exit.")
    ] = False,
    review: Annotated[
        bool, typer.Option("--review", help="Ask before committing each patch (approve/reject).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    trace_source: Annotated[
        str,
        typer.Option(
            "--trace-source",
            help="Where the backward phase reads execution records: local (in-process "
            "recorder), langsmith (queried back from LangSmith), auto (langsmith when "
            "LANGSMITH_API_KEY and LANGSMITH_TRACING=true are set).",
        ),
    ] = "auto",
    langsmith_project: Annotated[
        str | None,
        typer.Option("--langsmith-project", help="LangSmith project (default: the run dir name)."),
    ] = None,
    executor: ExecutorOpt = "local",
    requests_in_flight: RequestsOpt = None,
    reproducible: ReproducibleOpt = False,
    objective: Annotated[
        str,
        typer.Option(
            help="accuracy: commit what scores higher on validation. cost: also commit what "
            "is as accurate (--margin) at --min-saving fewer tokens per example."
        ),
    ] = "accuracy",
    margin: Annotated[
        float,
        typer.Option(min=0.0, max=0.99, help="Non-inferiority margin for --objective cost."),
    ] = 0.02,
    min_saving: Annotated[
        float,
        typer.Option(
            "--min-saving", min=0.01, max=0.99, help="Least token saving for --objective cost."
        ),
    ] = 0.10,
) -> None:
    """Optimize a spec: forward passes, critic, per-layer patches, validation, commit/rollback."""
    _reproducible(reproducible)
    from ..langsmith_io import LangSmithError, langsmith_configured
    from ..optimize.graph import Budget, OptimizerConfig
    from ..train import RunDirError, train

    if trace_source not in ("auto", "local", "langsmith"):
        raise _fail(f"--trace-source must be auto, local or langsmith, not {trace_source!r}")
    if trace_source == "langsmith" and not langsmith_configured():
        raise _fail(
            "--trace-source langsmith needs LangSmith: set LANGSMITH_API_KEY and "
            "LANGSMITH_TRACING=true"
        )
    spec = _load(spec_path)
    train_rows = _dataset(train_path, "train")
    val_rows = _dataset(val_path, "val")
    test_rows = _dataset(test_path, "test") if test_path is not None else None
    models = _models_override(model)
    score = _metric_for(metric, spec)
    budget = Budget(
        max_tokens=max_tokens, max_calls=max_calls, max_usd=max_usd, max_rollouts=max_rollouts
    )
    if objective not in ("accuracy", "cost"):
        raise _fail(f"--objective must be accuracy or cost, not {objective!r}")
    config = OptimizerConfig(
        objective=objective,  # type: ignore[arg-type]  # checked above
        margin=margin,
        min_saving=min_saving,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        min_delta=min_delta,
        paired_test=paired_test,
        threshold=threshold,
        patience=patience,
        concurrency=concurrency,
    )
    if dry_run:
        _print_projection(
            spec, train_rows, val_rows, config, models, optimizer_model, as_json=json_output
        )
        return
    _check_models(spec, models)
    opt_model = _optimizer_model(optimizer_model)
    target = run_dir or Path("runs") / spec.name

    def ask(question: dict[str, Any]) -> bool:
        from ..optimize.momentum import describe_ops

        console.print(
            f"[bold]Patch for layer {question['layer']}[/]: {describe_ops(question['patch'])}\n"
            f"validation {question['val_score']:.3f} vs best {question['best']:.3f}"
        )
        return typer.confirm("Commit this patch?", default=True)

    runner = _executor(executor, requests_in_flight)
    try:
        result = train(
            spec,
            train=train_rows,
            val=val_rows,
            test=test_rows,
            metric=score,
            models=models,
            optimizer_model=opt_model,
            epochs=epochs,
            batch_size=batch_size,
            run_dir=target,
            budget=budget,
            resume=resume,
            cache=not no_cache,
            config=config,
            progress=not json_output,
            review=ask if review else None,
            trace_source=trace_source,  # type: ignore[arg-type]  # checked above
            langsmith_project=langsmith_project,
            executor=runner,
        )
    except (RunDirError, LangSmithError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail(
            f"interrupted; continue with the same command plus --resume ({target})", 130
        ) from None
    finally:
        runner.close()
    _print_summary(result, target, as_json=json_output)


def _print_projection(
    spec: Any,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    config: Any,
    models: Any,
    optimizer_model: str | None,
    *,
    as_json: bool,
) -> None:
    """``--dry-run``: the projected upper bound of calls, tokens and cost; no model call."""
    from ..projection import project_training

    label = models if isinstance(models, str) else spec.models.get("default", "local")
    avg = sum(len(str(r.get("input", ""))) for r in train_rows) // len(train_rows)
    projection = project_training(
        spec,
        n_train=len(train_rows),
        n_val=len(val_rows),
        epochs=config.epochs,
        batch_size=config.batch_size,
        avg_input_chars=avg,
        model_label=str(label),
        optimizer_label=optimizer_model or str(label),
    )
    if as_json:
        typer.echo(projection.model_dump_json(indent=2))
        return
    console.print(f"[bold]Projected upper bound[/] for {projection.steps} steps:")
    console.print(
        f"  {projection.calls} LLM calls ({projection.forward_calls} forward, "
        f"{projection.optimizer_calls} optimizer), {projection.input_tokens} input + "
        f"{projection.output_tokens} output tokens, ${projection.cost_usd:.4f}"
    )
    for line in projection.assumptions:
        console.print(f"  - {line}")


def _optimizer_model(name: str | None) -> Any:
    """The ``--optimizer-model`` chat model (None: the executor's models optimize too)."""
    if not name:
        return None
    try:
        from ..models import init_model

        return init_model(name)
    except ModelError as exc:
        raise _fail(str(exc)) from None


def _print_summary(result: TrainResult, target: Path, *, as_json: bool) -> None:
    """The end of a run: scores, patches, usage, held-out test, and where the files are."""
    summary = {
        "best_spec": str(target / "best.yaml"),
        "best_score": result.best_score,
        "baseline_score": result.baseline_score,
        "versions": len(result.versions),
        "steps": len(result.history),
        "stop_reason": result.stop_reason,
        "usage": result.usage,
        "paid": result.paid,
        "report": str(result.report_path),
        "cheapest_spec": str(target / "cheapest.yaml")
        if result.cheapest_version is not None
        else None,
        "wall_time_s": round(result.wall_time_s, 1),
        "test": result.test,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    proposed = sum(len(h.get("candidates", [])) for h in result.history)
    accepted = len(result.versions) - 1
    usage = {**result.usage, **result.paid}
    console.print(
        f"validation {result.baseline_score:.3f} -> [bold]{result.best_score:.3f}[/] "
        f"after {len(result.history)} steps ({result.stop_reason}); {proposed} patches proposed, "
        f"{accepted} accepted; {usage.get('calls', 0)} paid calls, {usage.get('cached_calls', 0)} "
        f"from cache; {int(usage.get('input_tokens', 0)) + int(usage.get('output_tokens', 0))} "
        f"tokens; ${float(usage.get('cost_usd', 0)):.4f}; {result.wall_time_s:.0f}s"
    )
    if result.test:
        before, after = result.test["before"], result.test["after"]
        console.print(
            f"held-out test (n={after['n']}, never used in training): {before['mean']:.3f} "
            f"({before['ci'][0]:.2f}-{before['ci'][1]:.2f}) -> [bold]{after['mean']:.3f}[/] "
            f"({after['ci'][0]:.2f}-{after['ci'][1]:.2f}); paired exact sign test "
            f"({result.test.get('alternative', 'greater')}) p = {result.test['p_value']:.3g}"
        )
    console.print(f"best spec: {target / 'best.yaml'}")
    if result.cheapest_version is not None and (target / "cheapest.yaml").exists():
        console.print(
            f"cheapest:  {target / 'cheapest.yaml'} (v{result.cheapest_version}, the fewest "
            "tokens per example within the margin of the best)"
        )
    console.print(f"report:    {result.report_path}")
