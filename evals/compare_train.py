"""The trained rows of a comparison (``ann-trained`` and its ablations): train the starter
with ``ann.train`` on the comparison's train and validation rows, then score the best spec; or,
when an earlier sitting trained it and its record carried the spec (``evals.carry``), score the
rest without training again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ann_langgraph.spec import GraphSpec, load_spec, save_spec

from .carry import TRAINED, load_carried
from .compare_config import ANN_VARIANTS, CompareConfig
from .report import RunSummary

if TYPE_CHECKING:
    from .compare_methods import MethodRunner

__all__ = ["carried_training", "run_ann_trained", "train_options"]


def train_options(cfg: CompareConfig) -> dict[str, Any]:
    """The training options that key an ann row (and the DSPy rows' shared ones)."""
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
        "rollout_budget": cfg.rollout_budget,
        # only when asked for, so the keys of accuracy runs recorded before stay valid
        **(
            {"objective": [cfg.objective, cfg.margin, cfg.min_saving]}
            if cfg.objective != "accuracy"
            else {}
        ),
    }


def run_ann_trained(runner: MethodRunner, method: str = "ann-trained") -> RunSummary:
    """Train the starter (``method``: ann-trained, or an ablation of ``ANN_VARIANTS``)
    and score the best spec."""
    from ann_langgraph.optimize.graph import Budget, OptimizerConfig
    from ann_langgraph.train import RunDirError, train

    cfg = runner.config
    start = runner.starter()
    key = runner.key_for(method)
    old = runner.reusable(method, key)
    if old is not None:
        return old
    train_rows, val_rows = runner.split_rows("train"), runner.split_rows("val")
    run_dir = runner.method_dir(method) / "run"
    carried = None if (run_dir / "run.json").exists() else carried_training(runner, method, key)
    if carried is not None:  # trained in an earlier sitting, scoring cut off: score on
        best, training = carried
        report = runner.evaluate_spec(best, method, key=key, training=training)
        return runner.finish(
            method,
            report,
            {"key": key, "spec_fingerprint": best.fingerprint, "training": training},
            spec=best,
        )
    model: Any = runner.models if runner.models is not None else cfg.model

    def run() -> Any:
        return train(
            start,
            train=train_rows,
            val=val_rows,
            metric=runner.metric,
            models=model,
            optimizer_model=cfg.optimizer_model or model,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            run_dir=run_dir,
            budget=Budget(
                max_tokens=cfg.max_train_tokens,
                max_calls=cfg.max_train_calls,
                max_usd=cfg.max_train_usd,
                max_rollouts=cfg.rollout_budget,
            ),
            resume=(run_dir / "run.json").exists(),
            cache=cfg.cache,
            config=OptimizerConfig(
                seed=cfg.seed,
                concurrency=cfg.concurrency,
                timeout_s=cfg.timeout_s,
                objective=cfg.objective,
                margin=cfg.margin,
                min_saving=cfg.min_saving,
                **ANN_VARIANTS[method],
            ),
            progress=runner.progress,
            executor=runner.executor,
        )

    try:
        result = run()
    except RunDirError as exc:
        if not (run_dir / "run.json").exists():
            raise
        # a killed run of other options (e.g. --val-limit changed): keep it, start afresh
        aside = run_dir.with_name(f"run.stale-{time.strftime('%Y%m%dT%H%M%S')}")
        run_dir.rename(aside)
        runner.console.print(f"[yellow]{exc}; moved it to {aside} and training afresh[/]")
        result = run()
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
        "rollouts": int(usage.get("rollouts", 0)),
        "rollout_budget": cfg.rollout_budget,
        "wall_time_s": result.wall_time_s,
    }
    save_spec(result.best_spec, runner.method_dir(method) / TRAINED)
    report = runner.evaluate_spec(result.best_spec, method, key=key, training=training)
    return runner.finish(
        method,
        report,
        {
            "key": key,
            "spec_fingerprint": result.best_spec.fingerprint,
            "training": training,
        },
        spec=result.best_spec,
    )


def carried_training(
    runner: MethodRunner, method: str, key: str
) -> tuple[GraphSpec, dict[str, Any]] | None:
    """The spec an earlier sitting trained under ``key`` and began to score, with its
    training numbers, when the record carried it whole (``evals.carry``)."""
    folder = runner.method_dir(method)
    if not (folder / TRAINED).is_file():
        return None
    try:
        spec = load_spec(folder / TRAINED)
    except (OSError, ValueError):
        return None
    meta, _ = load_carried(folder, key=key, fingerprint=spec.fingerprint)
    if meta is None or not meta.training:
        return None
    return spec, dict(meta.training)
