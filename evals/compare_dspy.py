"""The DSPy rows of a comparison (bootstrap-rs, MIPROv2, COPRO, GEPA): compile a DSPy program on
the comparison's train and validation rows (``evals.dspy_baseline``) and score it; a compiled
program without demonstrations that an earlier sitting began to score carries over
(``evals.carry``), so the next machine scores the rest without compiling again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ann_langgraph.local.catalogue import is_local_string

from .carry import CarryWriter, file_fingerprint, join, load_carried
from .compare_config import DSPY_METHODS, CompareConfig
from .report import RunSummary

if TYPE_CHECKING:
    from .compare_methods import MethodRunner

__all__ = [
    "carried_program",
    "dspy_concurrency",
    "dspy_max_tokens",
    "dspy_optimizer",
    "gepa_rollouts",
    "run_dspy_method",
]


def dspy_concurrency(config: CompareConfig) -> int:
    """DSPy's threads: ``--concurrency``, else the engine's slots on ``local`` (as the other
    rows get), else 4."""
    if config.concurrency:
        return config.concurrency
    if is_local_string(config.model):
        from ann_langgraph.local.registry import planned_slots

        return planned_slots()
    return 4


def dspy_optimizer(runner: MethodRunner, method: str) -> str:
    return DSPY_METHODS.get(method) or runner.config.dspy_optimizer_for_model()


def dspy_max_tokens(runner: MethodRunner) -> int | None:
    """DSPy's answer cap: the one our chain-of-thought baseline gets on this benchmark
    (1024 before a code answer), else the model's own."""
    from .baselines import REASONED_CODE_MAX_TOKENS

    return REASONED_CODE_MAX_TOKENS if runner.bench.answer_format == "code_block" else None


def gepa_rollouts(runner: MethodRunner) -> int:
    """GEPA's ``max_metric_calls``: ``--rollout-budget``, else the training rollouts of the
    ann-trained row this folder holds (so both spend the same)."""
    if runner.config.rollout_budget:
        return runner.config.rollout_budget
    old = None
    if runner.summary_path("ann-trained").exists():
        old = runner.finished("ann-trained", runner.key_for("ann-trained"))
    training = (old.details.get("training") or {}) if old is not None else {}
    if training.get("rollouts"):
        return int(training["rollouts"])
    raise ValueError(
        "GEPA's rollout budget is the ann-trained row's: run --methods ann-trained into "
        "this folder first, or pass --rollout-budget N"
    )


def run_dspy_method(runner: MethodRunner, method: str = "dspy") -> RunSummary:
    from . import dspy_baseline

    cfg = runner.config
    key = runner.key_for(method)
    old = runner.reusable(method, key)
    if old is not None:
        return old
    optimizer = dspy_optimizer(runner, method)
    if runner.models is not None and not isinstance(runner.models, str):
        raise ValueError("the DSPy baseline needs a model string (e.g. local, openai:...)")
    folder = runner.method_dir(method)
    carried: dict[str, dict[str, Any]] = {}
    writer: CarryWriter | None = None

    def carry(program: Path, training: dict[str, Any]) -> Any:
        """Once the program is ready: the examples an earlier sitting scored with it."""
        nonlocal carried, writer
        fingerprint = file_fingerprint(program)
        previous, carried = load_carried(folder, key=key, fingerprint=fingerprint)
        carried = {k: v for k, v in carried.items() if k in runner.example_ids}
        writer = runner.carry_writer(method, key, fingerprint, previous, carried, training=training)
        return set(carried), writer.add

    outcome = dspy_baseline.run_dspy(
        runner.bench,
        model=cfg.model,
        train=runner.split_rows("train"),
        val=runner.split_rows("val"),
        examples=runner.examples,
        metric=runner.metric,
        optimizer=optimizer,
        seed=cfg.seed,
        concurrency=dspy_concurrency(cfg),
        out_dir=runner.method_dir(method),
        progress=runner.progress,
        rollouts=gepa_rollouts(runner) if optimizer == "gepa" else cfg.rollout_budget,
        max_tokens=dspy_max_tokens(runner),
        compiled_from=carried_program(runner, method, key),
        carry=carry,
    )
    report = outcome.report
    if writer is not None:
        writer.save()
        runner.carried[method] = (writer.meta, carried)
        report = join(
            report,
            carried,
            runner.examples,
            wall_time_s=writer.meta.wall_time_s,
            metric=report.metric,
        )
    return runner.finish(method, report, {"key": key, **outcome.details})


def carried_program(
    runner: MethodRunner, method: str, key: str
) -> tuple[Path, dict[str, Any]] | None:
    """The DSPy program an earlier sitting compiled under ``key`` and began to score, with
    its training numbers, when the record carried it (no demonstrations: ``evals.carry``)."""
    program = runner.method_dir(method) / "program.json"
    if not program.is_file():
        return None
    meta, _ = load_carried(
        runner.method_dir(method), key=key, fingerprint=file_fingerprint(program)
    )
    if meta is None or not meta.training:
        return None
    return program, dict(meta.training)
