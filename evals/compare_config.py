"""What a comparison runs: its methods, its options (``CompareConfig``, recorded in
``compare.json`` and keying reuse), and the command line that reproduces it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ann_langgraph.local.catalogue import is_local_string

from .baselines import DEFAULT_SAMPLES, DEFAULT_SC_TEMPERATURE

__all__ = [
    "ANN_VARIANTS",
    "DEFAULT_METHODS",
    "DSPY_METHODS",
    "METHODS",
    "CompareConfig",
    "check_methods",
    "config_command",
]

METHODS = (
    "io",
    "cot",
    "cot-sc",
    "ann",
    "ann-trained",
    "ann-textual",
    "ann-demos",
    "dspy",
    "dspy-bootstrap-rs",
    "dspy-miprov2",
    "dspy-gepa",
)
DEFAULT_METHODS = ("io", "cot", "cot-sc", "ann", "ann-trained")
# Ablations of ann-trained: which of its candidate sources the optimizer may use.
ANN_VARIANTS: dict[str, dict[str, Any]] = {
    "ann-trained": {},
    # the textual gradient alone: the repairers' patches, no bootstrapped demos, no operators
    "ann-textual": {"bootstrap_demos": False, "operators": False},
    # DSPy's lever alone: bootstrapped demos, no repairer patches, no operators
    "ann-demos": {"textual_patches": False, "operators": False},
}
# A DSPy row per optimizer (``dspy`` itself takes ``--dspy-optimizer``).
DSPY_METHODS = {
    "dspy-bootstrap-rs": "bootstrap-rs",
    "dspy-miprov2": "miprov2",
    "dspy-gepa": "gepa",
}


class CompareConfig(BaseModel):
    """Everything that decides what a comparison runs (recorded in ``compare.json``)."""

    benchmark: str
    model: str = "local"
    split: str | None = Field(default=None, description="Eval split (default: the benchmark's).")
    limit: int | None = Field(default=40, ge=1)
    data_dir: str | None = None
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    spec: str | None = Field(
        default=None,
        description="Starting spec of the ann and ann-trained rows (default: the benchmark's).",
    )
    seed: int = 0
    concurrency: int | None = Field(
        default=None, ge=1, description="Examples at once (default: 1 on local, else 4)."
    )
    timeout_s: float = Field(default=300.0, gt=0)
    cache: bool = True
    executor: str = Field(
        default="local", description="Where examples run: local, ray, ray:HOST:PORT (not DSPy's)."
    )
    samples: int = Field(default=DEFAULT_SAMPLES, ge=1)
    temperature: float = Field(default=DEFAULT_SC_TEMPERATURE, ge=0, le=2)
    train_split: str = "train"
    val_split: str = "val"
    train_limit: int | None = Field(default=24, ge=1)
    # 40 validation rows from the benchmark's training side: with 10 a one-patch "gain" was
    # noise; 40 lets the paired sign test (on by default from 12) and early rejection work
    val_limit: int | None = Field(default=40, ge=1)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=8, ge=1)
    optimizer_model: str | None = None
    max_train_tokens: int | None = Field(default=None, ge=0)
    max_train_calls: int | None = Field(default=None, ge=0)
    max_train_usd: float | None = Field(default=None, ge=0)
    rollout_budget: int | None = Field(
        default=None,
        ge=1,
        description="Training rollouts (examples evaluated) every optimizer row may spend: "
        "the ann rows' Budget.max_rollouts and GEPA's max_metric_calls. None: the ann rows are "
        "unbudgeted and GEPA gets the rollouts the ann-trained row in this folder used.",
    )
    objective: Literal["accuracy", "cost"] = Field(
        default="accuracy",
        description="What the ann rows' training optimises (ann train --objective); cost also "
        "commits a cheaper version at non-inferior accuracy.",
    )
    margin: float = Field(default=0.02, ge=0, le=1, description="--objective cost: its margin.")
    min_saving: float = Field(
        default=0.10, ge=0, lt=1, description="--objective cost: the token saving it needs."
    )
    # None: bootstrap-rs on the embedded model (MIPROv2's and COPRO's instruction proposers
    # crash on its unparseable answers), MIPROv2 light elsewhere
    dspy_optimizer: str | None = None

    def dspy_optimizer_for_model(self) -> str:
        if self.dspy_optimizer:
            return self.dspy_optimizer
        return "bootstrap-rs" if is_local_string(self.model) else "miprov2"


def check_methods(methods: Sequence[str]) -> list[str]:
    out: list[str] = []
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        if method not in out:
            out.append(method)
    if not out:
        raise ValueError("no methods to run")
    return out


_FLAGS = {
    "split": "--split",
    "limit": "--limit",
    "data_dir": "--data-dir",
    "spec": "--spec",
    "seed": "--seed",
    "concurrency": "--concurrency",
    "timeout_s": "--timeout",
    "executor": "--executor",
    "samples": "--samples",
    "temperature": "--temperature",
    "train_split": "--train-split",
    "val_split": "--val-split",
    "train_limit": "--train-limit",
    "val_limit": "--val-limit",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "optimizer_model": "--optimizer-model",
    "max_train_tokens": "--max-train-tokens",
    "max_train_calls": "--max-train-calls",
    "max_train_usd": "--max-train-usd",
    "rollout_budget": "--rollout-budget",
    "objective": "--objective",
    "margin": "--margin",
    "min_saving": "--min-saving",
    "dspy_optimizer": "--dspy-optimizer",
}


def config_command(config: CompareConfig, out: Path) -> str:
    """The ``python -m evals.compare`` command line that runs ``config`` into ``out``."""
    args = ["python", "-m", "evals.compare", "--benchmark", config.benchmark]
    args += ["--model", config.model]
    defaults = CompareConfig(benchmark=config.benchmark)
    for name, flag in _FLAGS.items():
        value = getattr(config, name)
        if value != getattr(defaults, name) and value is not None:
            args += [flag, str(value)]
    if config.methods != defaults.methods:
        args += ["--methods", ",".join(config.methods)]
    if not config.cache:
        args.append("--no-cache")
    return shlex.join([*args, "--out", str(out)])
