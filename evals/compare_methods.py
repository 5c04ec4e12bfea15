"""One comparison's methods, run on the same examples with a shared response cache: each method
writes ``methods/<method>/`` (summary, per-example rows, spec) and a finished one is reused when
its key (examples, model, options) matches. The trained rows are in ``compare_train``, the DSPy
rows in ``compare_dspy``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from ann_langgraph.cache import SQLiteLLMCache
from ann_langgraph.evaluate import EvalReport, evaluate
from ann_langgraph.executors import Executor, resolve_executor
from ann_langgraph.local.catalogue import is_local_string
from ann_langgraph.metrics import Metric, metric_name
from ann_langgraph.models import ModelsArg, model_label
from ann_langgraph.spec import GraphSpec, load_spec, save_spec

from .base import Benchmark, code_version
from .baselines import BASELINES, baseline_spec
from .carry import (
    Carried,
    CarryWriter,
    discard,
    join,
    load_carried,
)
from .compare_config import ANN_VARIANTS, DSPY_METHODS, METHODS, CompareConfig
from .compare_dspy import (
    dspy_concurrency,
    dspy_max_tokens,
    dspy_optimizer,
    gepa_rollouts,
    run_dspy_method,
)
from .compare_train import run_ann_trained, train_options
from .report import RunSummary, result_row, summarize, write_jsonl, write_text

__all__ = ["MethodRunner", "dspy_concurrency", "error_text"]


def _hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 2000 else text[:2000] + "...[truncated]"


class MethodRunner:
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
        self.example_ids = {str(ex["id"]) for ex in examples}
        # per method scored this sitting: its carry meta and the rows carried into it
        self.carried: dict[str, tuple[Carried | None, dict[str, dict[str, Any]]]] = {}

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

    def evaluate_spec(
        self,
        spec: GraphSpec,
        method: str,
        *,
        key: str,
        training: dict[str, Any] | None = None,
    ) -> EvalReport:
        """Score ``spec`` on the examples an earlier sitting left unscored (``evals.carry``:
        every example is saved as it finishes), and join them with the carried ones."""
        models = self.models if self.models is not None else self.config.model
        folder = self.method_dir(method)
        previous, carried = load_carried(folder, key=key, fingerprint=spec.fingerprint)
        carried = {k: v for k, v in carried.items() if k in self.example_ids}
        if carried:
            self.console.print(
                f"{method}: {len(carried)} of {len(self.examples)} examples carried from "
                f"{previous.sittings if previous else 0} earlier sitting(s)"
            )
        writer = self.carry_writer(
            method, key, spec.fingerprint, previous, carried, training=training
        )
        todo = [ex for ex in self.examples if str(ex["id"]) not in carried]
        report = None
        if todo:
            report = evaluate(
                spec,
                todo,
                self.metric,
                models=models,
                concurrency=self.config.concurrency
                or self.executor.default_concurrency(spec, models, otherwise=4),
                timeout_s=self.config.timeout_s,
                cache=self.cache,
                progress=self.progress,
                metadata={"ann_compare_method": method},
                executor=self.executor,
                on_result=writer.add,
            )
        writer.save()
        self.carried[method] = (writer.meta, carried)
        return join(
            report,
            carried,
            self.examples,
            wall_time_s=writer.meta.wall_time_s,
            metric=metric_name(self.metric),
        )

    def carry_writer(
        self,
        method: str,
        key: str,
        fingerprint: str,
        previous: Carried | None,
        carried: dict[str, dict[str, Any]],
        *,
        training: dict[str, Any] | None = None,
    ) -> CarryWriter:
        """Saves each example of ``method`` as it is scored (``evals.carry``)."""
        by_id = {str(ex["id"]): ex for ex in self.examples}
        return CarryWriter(
            self.method_dir(method),
            key=key,
            fingerprint=fingerprint,
            code=code_version(),
            previous=previous,
            kept=carried,
            training=training,
            row=lambda r: result_row(
                r,
                by_id.get(r.id, {}),
                method=method,
                extras=self.extras,
                breakdown=self.bench.breakdown,
            ),
        )

    def finish(
        self,
        method: str,
        report: EvalReport,
        details: dict[str, Any],
        *,
        spec: GraphSpec | None = None,
    ) -> RunSummary:
        """Write the method's files, the spec with them: written when a run began, a record
        taken meanwhile (``evals.record``) paired a new spec with the old results."""
        meta, carried = self.carried.pop(method, (None, {}))
        if meta is not None and meta.sittings > 1:
            details = {**details, "sittings": meta.sittings, "codes": meta.codes}
        summary, rows = summarize(
            report,
            self.examples,
            method=method,
            extra_metrics=self.extras,
            breakdown=self.bench.breakdown,
            details={**details, "code": code_version(), **_engine_detail()},
            known_extra={k: v.get("extra") or {} for k, v in carried.items()},
        )
        folder = self.method_dir(method)
        if spec is not None:
            save_spec(spec, folder / "spec.yaml")
        write_jsonl(folder / "results.jsonl", rows)
        write_text(folder / "summary.json", summary.model_dump_json(indent=2) + "\n")
        discard(folder)  # results.jsonl holds every row now
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
        if method == "dspy" or method in DSPY_METHODS:  # no starter spec involved
            optimizer = dspy_optimizer(self, method)
            options = {**options, "optimizer": optimizer, "max_tokens": dspy_max_tokens(self)}
            options.pop("optimizer_model")
            options.pop("rollout_budget")
            if optimizer == "gepa":
                options["rollouts"] = gepa_rollouts(self)
            elif self.config.rollout_budget:  # sized to the budget (unbudgeted keys unchanged)
                options["rollouts"] = self.config.rollout_budget
            return self.key(method, options)
        start = self.starter().fingerprint
        if method == "ann":
            return self.key(method, {"spec": start})
        if method != "ann-trained":  # ablations: the key names what they leave out
            options = {**options, "variant": ANN_VARIANTS[method]}
        return self.key(method, {"spec": start, "train": options})

    def table(self, summaries: list[RunSummary]) -> list[RunSummary]:
        """The methods earlier commands finished in this folder for the same examples, model
        and options (canonical order), then this command's rows (in the order asked)."""
        asked = set(self.config.methods)
        # Only methods with a saved run: their keys may need files (the starter spec) that a
        # comparison of other methods does not.
        saved = [m for m in METHODS if m not in asked and self.summary_path(m).exists()]
        earlier = []
        for m in saved:
            try:
                earlier.append(self.finished(m, self.key_for(m)))
            except ValueError:  # its key needs what this folder lacks (GEPA's budget)
                continue
        return [row for row in earlier if row is not None] + list(summaries)

    def baseline(self, method: str) -> RunSummary:
        return self.spec_method(method, self.baseline_spec(method), {})

    def spec_method(self, method: str, spec: GraphSpec, details: dict[str, Any]) -> RunSummary:
        key = self.key_for(method)
        old = self.reusable(method, key)
        if old is not None:
            return old
        report = self.evaluate_spec(spec, method, key=key)
        return self.finish(
            method,
            report,
            {**details, "key": key, "spec_fingerprint": spec.fingerprint},
            spec=spec,
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
        same_split = self.bench.split_range(split)[0] == self.bench.split_range(self.split)[0]
        if overlap and same_split:
            raise ValueError(
                f"the {which} split {split!r} shares {len(overlap)} rows with the evaluation "
                f"split {self.split!r} (a row range keeps them apart, e.g. dev[40:80])"
            )
        if not rows:
            raise ValueError(f"the {which} split {split!r} has no examples")
        return rows

    def train_options(self) -> dict[str, Any]:
        return train_options(self.config)

    def run(self, method: str) -> RunSummary:
        if method in BASELINES:
            return self.baseline(method)
        if method in ANN_VARIANTS:
            return run_ann_trained(self, method)
        if method == "dspy" or method in DSPY_METHODS:
            return run_dspy_method(self, method)
        runners: dict[str, Callable[[], RunSummary]] = {"ann": self.ann}
        return runners[method]()

    def close(self) -> None:
        if self.owns_executor:
            self.executor.close()
        if self.cache is not None:
            self.cache.close()


def _engine_detail() -> dict[str, str]:
    """Which embedded engine served the row, when one did (``local``)."""
    from ann_langgraph.local.registry import live_engines

    engines = live_engines()
    return {"engine": ",".join(engines)} if engines else {}
