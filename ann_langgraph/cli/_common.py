"""What the ``ann`` commands share: the Typer app, consoles, option types and input checks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..local import is_local_string
from ..models import ModelError, ModelResolver, ModelsArg, registered_models
from ..spec import GraphSpec, ModelConfig, SpecError, load_spec
from ..tracing import TraceRecorder

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


ReproducibleOpt = Annotated[
    bool,
    typer.Option(
        "--reproducible",
        help="Make a first run repeatable on this machine: the embedded engine serves one "
        "request at a time and reuses no cached prompt (slower: no batching, no prompt reuse). "
        "Provider models are not made repeatable.",
    ),
]


def _reproducible(on: bool) -> None:
    """Set before any embedded server starts, so it starts with one slot
    (docs/reproducibility.md)."""
    if on:
        from ..local.slots import ENV_REPRODUCIBLE

        os.environ[ENV_REPRODUCIBLE] = "1"


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


def _check_models(spec: GraphSpec, models: ModelsArg) -> None:
    """Resolve every model the spec uses now, so a bad name or missing key fails fast."""
    resolver = ModelResolver(spec, models)
    used = {a.model or "default" for layer in spec.layers for a in layer.agents}
    for name in sorted(used):
        try:
            resolver.get(name)
        except ModelError as exc:
            raise _fail(str(exc)) from None


def _metric_for(name: str, spec: GraphSpec) -> Any:
    from ..metrics import metric_for_format

    try:
        return metric_for_format(name, spec.answer_format)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _command_recorder(spec: GraphSpec) -> Any:
    """The run's recorder; with LangSmith configured, one that also traces the run to a
    project of its own (``ann-<run id>``, runs tagged ``ann_run_id``/``ann_spec``)."""
    from ..langsmith_io import LangSmithSession, new_run_id

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
    from ..datasets import load_dataset
    from ..langsmith_io import LangSmithError

    try:
        rows = load_dataset(path)
    except (OSError, ValueError, LangSmithError) as exc:
        raise _fail(f"--{what}: {exc}") from None
    if not rows:
        raise _fail(f"--{what}: {path} has no examples")
    return rows


def _executor(text: str, requests_in_flight: int | None) -> Any:
    """The executor ``--executor`` names (a clear error for a bad one or a missing extra)."""
    from ..executors import resolve_executor

    if requests_in_flight is not None and text.strip() in ("", "local"):
        raise _fail("--requests-in-flight applies to --executor ray")
    options = {"requests_in_flight": requests_in_flight} if requests_in_flight else {}
    try:
        runner = resolve_executor(text, **options)
        if runner.name == "ray":
            from ..executors.ray import _import_ray

            _import_ray()  # a missing extra says so now, not mid-run
    except (ImportError, ValueError) as exc:
        raise _fail(str(exc)) from None
    return runner
