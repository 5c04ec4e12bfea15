"""``ann run``, ``show``, ``validate``, ``schema``, ``patch``, ``diff``, ``init``: one spec."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from ..answers import extract_answer
from ..compile import compile_graph
from ..diff import diff_specs, format_diff
from ..local import LocalModelError
from ..models import ModelError
from ..patch import PatchError, apply_patch
from ..spec import GraphSpec, SpecError, load_spec, save_spec
from ..tracing import ExecutionRecord
from ._common import (
    BaseUrlOpt,
    ModelOpt,
    SpecArg,
    _check_models,
    _command_recorder,
    _dataset,
    _fail,
    _load,
    _models_override,
    _with_base_url,
    app,
    console,
    err_console,
)


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
    from ..bootstrap import init_spec
    from ..models import init_model

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
