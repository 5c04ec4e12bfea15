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

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from ann_langgraph.cache import SQLiteLLMCache
from ann_langgraph.evaluate import EvalReport, evaluate
from ann_langgraph.executors import Executor, parse_executor, resolve_executor
from ann_langgraph.local.catalogue import is_local_string
from ann_langgraph.metrics import Metric
from ann_langgraph.models import ModelsArg, model_label
from ann_langgraph.spec import GraphSpec, load_spec, save_spec

from .base import Benchmark, get_benchmark
from .baselines import BASELINES, baseline_spec
from .compare_config import (
    DEFAULT_METHODS,
    METHODS,
    CompareConfig,
    check_methods,
    config_command,
)
from .report import (
    RunSummary,
    compare_markdown,
    compare_table,
    paired_tests,
    read_jsonl,
    summarize,
    write_jsonl,
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


def _hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 2000 else text[:2000] + "...[truncated]"


class _Runner:
    """Runs the methods of one comparison, with the shared cache and per-method files."""

    def __init__(
        self,
        config: CompareConfig,
        bench: Benchmark,
        split: str,
        examples: list[dict[str, Any]],
        out_dir: Path,
        models: ModelsArg,
        progress: bool,
        console: Console,
    ) -> None:
        self.config = config
        self.bench = bench
        self.split = split
        self.examples = examples
        self.out_dir = out_dir
        self.models = models
        self.progress = progress
        self.console = console
        self.metric: Metric = bench.metric()
        self.extras = {name: factory() for name, factory in bench.extra_metrics.items()}
        self.ids_hash = _hash([str(ex["id"]) for ex in examples])
        self.model_name = config.model if models is None else model_label(models)
        if models is None and is_local_string(config.model):
            # "local" changed meaning (SmolLM2 until 2026-12-03): key and label by the file
            from ann_langgraph.models import init_model

            self.model_name = f"{config.model} ({model_label(init_model(config.model))})"
        self.cache = SQLiteLLMCache(out_dir / "cache.sqlite") if config.cache else None
        self.executor: Executor = resolve_executor(config.executor)
        self.owns_executor = True
        self.reused: set[str] = set()

    def method_dir(self, method: str) -> Path:
        return self.out_dir / "methods" / method

    def key(self, method: str, extra: Mapping[str, Any]) -> str:
        return _hash(
            {
                "method": method,
                "benchmark": self.bench.name,
                "split": self.split,
                "examples": self.ids_hash,
                "model": self.model_name,
                **extra,
            }
        )

    def reusable(self, method: str, key: str) -> RunSummary | None:
        """The finished run to reuse instead of running ``method`` (noted as reused)."""
        old = self.finished(method, key)
        if old is not None:
            self.reused.add(method)
        return old

    def summary_path(self, method: str) -> Path:
        return self.method_dir(method) / "summary.json"

    def finished(self, method: str, key: str) -> RunSummary | None:
        """The run of ``method`` saved in this folder, if it succeeded under ``key``."""
        path = self.summary_path(method)
        if not path.exists() or not (self.method_dir(method) / "results.jsonl").exists():
            return None
        try:
            old = RunSummary.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError:
            return None
        if old.status != "ok" or old.details.get("key") != key:
            return None
        return old

    def evaluate_spec(self, spec: GraphSpec, method: str) -> EvalReport:
        models = self.models if self.models is not None else self.config.model
        return evaluate(
            spec,
            self.examples,
            self.metric,
            models=models,
            concurrency=self.config.concurrency
            or self.executor.default_concurrency(spec, models, otherwise=4),
            timeout_s=self.config.timeout_s,
            cache=self.cache,
            progress=self.progress,
            metadata={"ann_compare_method": method},
            executor=self.executor,
        )

    def finish(self, method: str, report: EvalReport, details: dict[str, Any]) -> RunSummary:
        summary, rows = summarize(
            report,
            self.examples,
            method=method,
            extra_metrics=self.extras,
            breakdown=self.bench.breakdown,
            details=details,
        )
        folder = self.method_dir(method)
        write_jsonl(folder / "results.jsonl", rows)
        write_text(folder / "summary.json", summary.model_dump_json(indent=2) + "\n")
        return summary

    # -- methods -----------------------------------------------------------------------

    def baseline_spec(self, method: str) -> GraphSpec:
        options: dict[str, Any] = {}
        if method == "cot-sc":
            options = {"samples": self.config.samples, "temperature": self.config.temperature}
        return baseline_spec(method, self.bench, model=self.config.model, **options)

    def key_for(self, method: str) -> str:
        """The key a finished run of ``method`` must carry to be reused for this config."""
        if method in BASELINES:
            return self.key(method, {"spec": self.baseline_spec(method).fingerprint})
        options = self.train_options()
        if method == "dspy":  # no starter spec involved
            options = {**options, "optimizer": self.config.dspy_optimizer_for_model()}
            options.pop("optimizer_model")
            return self.key(method, options)
        start = self.starter().fingerprint
        if method == "ann":
            return self.key(method, {"spec": start})
        return self.key(method, {"spec": start, "train": options})

    def table(self, summaries: list[RunSummary]) -> list[RunSummary]:
        """The methods earlier commands finished in this folder for the same examples, model
        and options (canonical order), then this command's rows (in the order asked)."""
        asked = set(self.config.methods)
        # Only methods with a saved run: their keys may need files (the starter spec) that a
        # comparison of other methods does not.
        saved = [m for m in METHODS if m not in asked and self.summary_path(m).exists()]
        earlier = [self.finished(m, self.key_for(m)) for m in saved]
        return [row for row in earlier if row is not None] + list(summaries)

    def baseline(self, method: str) -> RunSummary:
        return self.spec_method(method, self.baseline_spec(method), {})

    def spec_method(self, method: str, spec: GraphSpec, details: dict[str, Any]) -> RunSummary:
        key = self.key_for(method)
        old = self.reusable(method, key)
        if old is not None:
            return old
        save_spec(spec, self.method_dir(method) / "spec.yaml")
        report = self.evaluate_spec(spec, method)
        return self.finish(
            method, report, {**details, "key": key, "spec_fingerprint": spec.fingerprint}
        )

    def ann(self) -> RunSummary:
        return self.spec_method("ann", self.starter(), {"spec_path": str(self.starter_path())})

    def starter_path(self) -> Path:
        """The spec the ``ann`` row scores and ``ann-trained`` starts from."""
        return Path(self.config.spec) if self.config.spec else self.bench.spec_path

    def starter(self) -> GraphSpec:
        return load_spec(self.starter_path())

    def split_rows(self, which: str) -> list[dict[str, Any]]:
        cfg = self.config
        split, limit = (
            (cfg.train_split, cfg.train_limit)
            if which == "train"
            else (cfg.val_split, cfg.val_limit)
        )
        rows = self.bench.load(split, data_dir=cfg.data_dir, limit=limit)
        overlap = {str(r["id"]) for r in rows} & {str(ex["id"]) for ex in self.examples}
        if overlap and self.bench.split_name(split) == self.split:
            raise ValueError(f"the {which} split {split!r} is the evaluation split")
        if not rows:
            raise ValueError(f"the {which} split {split!r} has no examples")
        return rows

    def train_options(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "train_split": cfg.train_split,
            "val_split": cfg.val_split,
            "train_limit": cfg.train_limit,
            "val_limit": cfg.val_limit,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "optimizer_model": cfg.optimizer_model,
            "seed": cfg.seed,
            "budget": [cfg.max_train_tokens, cfg.max_train_calls, cfg.max_train_usd],
        }

    def ann_trained(self) -> RunSummary:
        from ann_langgraph.optimize.graph import Budget, OptimizerConfig
        from ann_langgraph.train import train

        cfg = self.config
        start = self.starter()
        key = self.key_for("ann-trained")
        old = self.reusable("ann-trained", key)
        if old is not None:
            return old
        train_rows, val_rows = self.split_rows("train"), self.split_rows("val")
        run_dir = self.method_dir("ann-trained") / "run"
        model: Any = self.models if self.models is not None else cfg.model
        result = train(
            start,
            train=train_rows,
            val=val_rows,
            metric=self.metric,
            models=model,
            optimizer_model=cfg.optimizer_model or model,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            run_dir=run_dir,
            budget=Budget(
                max_tokens=cfg.max_train_tokens,
                max_calls=cfg.max_train_calls,
                max_usd=cfg.max_train_usd,
            ),
            resume=(run_dir / "run.json").exists(),
            cache=cfg.cache,
            config=OptimizerConfig(
                seed=cfg.seed, concurrency=cfg.concurrency, timeout_s=cfg.timeout_s
            ),
            progress=self.progress,
            executor=self.executor,
        )
        usage = result.usage
        training = {
            "run_dir": str(run_dir),
            "train_n": len(train_rows),
            "val_n": len(val_rows),
            "baseline_score": result.baseline_score,
            "best_score": result.best_score,
            "steps": len(result.history),
            "versions": len(result.versions),
            "stop_reason": result.stop_reason,
            "tokens": int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0)),
            "calls": int(usage.get("calls", 0)),
            "cached_calls": int(usage.get("cached_calls", 0)),
            "cost_usd": float(usage.get("cost_usd", 0.0)),
            "wall_time_s": result.wall_time_s,
        }
        save_spec(result.best_spec, self.method_dir("ann-trained") / "spec.yaml")
        report = self.evaluate_spec(result.best_spec, "ann-trained")
        return self.finish(
            "ann-trained",
            report,
            {
                "key": key,
                "spec_fingerprint": result.best_spec.fingerprint,
                "training": training,
            },
        )

    def dspy(self) -> RunSummary:
        from . import dspy_baseline

        cfg = self.config
        key = self.key_for("dspy")
        old = self.reusable("dspy", key)
        if old is not None:
            return old
        if self.models is not None and not isinstance(self.models, str):
            raise ValueError("the DSPy baseline needs a model string (e.g. local, openai:...)")
        outcome = dspy_baseline.run_dspy(
            self.bench,
            model=cfg.model,
            train=self.split_rows("train"),
            val=self.split_rows("val"),
            examples=self.examples,
            metric=self.metric,
            optimizer=cfg.dspy_optimizer_for_model(),
            seed=cfg.seed,
            concurrency=cfg.concurrency or (1 if is_local_string(cfg.model) else 4),
            out_dir=self.method_dir("dspy"),
            progress=self.progress,
        )
        return self.finish("dspy", outcome.report, {"key": key, **outcome.details})

    def run(self, method: str) -> RunSummary:
        if method in BASELINES:
            return self.baseline(method)
        runners: dict[str, Callable[[], RunSummary]] = {
            "ann": self.ann,
            "ann-trained": self.ann_trained,
            "dspy": self.dspy,
        }
        return runners[method]()

    def close(self) -> None:
        if self.owns_executor:
            self.executor.close()
        if self.cache is not None:
            self.cache.close()


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
    runner = _Runner(config, bench, split, examples, out, models, progress, console)
    if executor is not None:  # one the caller made (and closes): e.g. a RayExecutor with setup=
        runner.executor, runner.owns_executor = executor, False
    runner.executor.start()
    summaries: list[RunSummary] = []
    facts = {
        "benchmark": f"{bench.name}: {bench.description}",
        "split": f"{split} ({bench.splits.get(split, '')})",
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
                summary = RunSummary(method=method, status="error", error=_error_text(exc))
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
    md = write_text(
        out / "compare.md",
        compare_markdown(summaries, title=title, facts=facts, paired=paired),
    )
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
    dspy_optimizer: Annotated[
        str | None,
        typer.Option(
            "--dspy-optimizer",
            help="miprov2 (light), copro or bootstrap-rs (demos only); default: bootstrap-rs "
            "on local, miprov2 otherwise.",
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
