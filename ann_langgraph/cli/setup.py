"""``ann metrics``, ``models``, ``engine`` and ``export``: what is installed, and deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..spec import SpecError
from ._common import (
    SpecArg,
    _fail,
    app,
    console,
)


@app.command()
def metrics() -> None:
    """List the built-in metrics usable with --metric."""
    from ..metrics import metric_names

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

    from ..local import LocalModelError, UnknownEmbeddedModel, find_gguf, parse_local_string
    from ..local.listing import model_rows

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
            help="Build llama-server now (once per llama.cpp source version and CPU; about 4-6 "
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

    from ..local.engine import EngineUnavailable, build_llama_server, engine_status
    from ..local.slots import default_slots

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
    from ..export import ExportError, export_spec

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
