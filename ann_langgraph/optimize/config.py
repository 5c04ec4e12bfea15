"""The knobs of the backward phase and its hard spending caps (both recorded in the history)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Budget", "OptimizerConfig"]


class Budget(BaseModel):
    """Hard caps on what training may spend; checked at every step boundary."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=0)
    max_calls: int | None = Field(default=None, ge=0)
    max_usd: float | None = Field(default=None, ge=0)
    max_rollouts: int | None = Field(
        default=None,
        ge=0,
        description="Examples evaluated (training, validation and dry runs, cached or not): "
        "the budget unit optimizers are compared in.",
    )

    def exceeded(self, usage: dict[str, Any]) -> str | None:
        tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"token budget reached ({tokens} >= {self.max_tokens})"
        if self.max_calls is not None and int(usage.get("calls", 0)) >= self.max_calls:
            return f"call budget reached ({usage.get('calls')} >= {self.max_calls})"
        if self.max_usd is not None and float(usage.get("cost_usd", 0.0)) >= self.max_usd:
            return f"cost budget reached (${usage.get('cost_usd', 0):.4f} >= ${self.max_usd})"
        rollouts = int(usage.get("rollouts", 0))
        if self.max_rollouts is not None and rollouts >= self.max_rollouts:
            return f"rollout budget reached ({rollouts} >= {self.max_rollouts})"
        return None

    def short_of(self, need: int, *usages: Mapping[str, Any] | None) -> int | None:
        """The rollouts left after ``usages`` when they are fewer than ``need``, else None (no
        rollout budget, or it fits). A step spends only what fits, so a run never ends above
        ``max_rollouts``."""
        if self.max_rollouts is None:
            return None
        spent = sum(int((u or {}).get("rollouts", 0)) for u in usages)
        left = max(0, self.max_rollouts - spent)
        return left if left < need else None


class OptimizerConfig(BaseModel):
    """Knobs of the backward phase (all recorded in the history)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=8, ge=1)
    seed: int = 0
    min_delta: float = Field(default=0.0, ge=0.0)
    paired_test: bool | None = Field(
        default=None,
        description="Require a one-sided sign test (candidate vs current, per validation "
        "example) at `alpha` to commit. None: on when the validation set has at least "
        "`paired_min_n` examples, where the test can tell a real gain from luck.",
    )
    paired_min_n: int = Field(default=12, ge=1)
    alpha: float = Field(default=0.1, gt=0, lt=1)
    objective: Literal["accuracy", "cost"] = Field(
        default="accuracy",
        description="What a commit is for. accuracy: a higher validation score. cost: that, "
        "or a candidate whose accuracy is not worse (`margin`) at `min_saving` fewer tokens "
        "per validation example (optimize.objective).",
    )
    margin: float = Field(
        default=0.02,
        ge=0.0,
        lt=1.0,
        description="Non-inferiority margin (objective=cost): the lower confidence bound (at "
        "`alpha`) of the paired accuracy difference must stay above -margin.",
    )
    min_saving: float = Field(
        default=0.10,
        gt=0.0,
        lt=1.0,
        description="Least fall in validation tokens per example (objective=cost): 0.10 = 10%.",
    )
    early_rejection: bool = Field(
        default=True,
        description="Score candidates on the validation set in chunks and stop once even a "
        "perfect rest could not make them win (never rejects a candidate that would win).",
    )
    early_chunk: int = Field(default=8, ge=1, description="Validation examples per chunk.")
    bootstrap_demos: bool = Field(
        default=True,
        description="Each step, also try setting the blamed layers' demonstrations from their "
        "own successful training traces (DSPy's bootstrap, as one more candidate).",
    )
    textual_patches: bool = Field(
        default=True,
        description="Ask the local repairers for patches written from the critique (the "
        "textual gradient). Off: only demos and operators are tried (an ablation).",
    )
    reflection: bool = Field(
        default=True,
        description="With textual_patches, also sample whole-instruction rewrites of each "
        "blamed layer's agents from the minibatch's inputs, outputs, finish reasons and metric "
        "feedback (GEPA's reflective mutation, its prompt and parsing).",
    )
    reflection_samples: int = Field(
        default=2, ge=0, le=8, description="Reflective proposals per blamed layer per step."
    )
    reflection_temperature: float = Field(
        default=1.0, ge=0.0, le=2.0, description="Sampling temperature of those proposals."
    )
    reflection_examples: int = Field(
        default=3,
        ge=1,
        le=16,
        description="Minibatch examples each reflection is shown (failing first; GEPA: 3).",
    )
    reflection_max_tokens: int | None = Field(
        default=768,
        ge=64,
        description="Output cap of each reflective proposal (lowers the optimizer model's own "
        "cap, never raises it; None keeps it). A new instruction fits; what a small model "
        "writes after it is dropped by the parsing anyway.",
    )
    parallel_samples: bool = Field(
        default=True,
        description="Send the reflective proposals' first draws at once (a server with "
        "parallel slots decodes them in one batch); replies are judged in sample order either "
        "way, so the proposals are the same.",
    )
    reflection_retries: int = Field(
        default=2,
        ge=0,
        description="Fresh samples drawn for a proposal that repeats a rejected or sibling "
        "instruction or restates a training example (it never costs a validation run).",
    )
    screening: bool = Field(
        default=True,
        description="Score each model-written candidate on the minibatch it was written from "
        "first; only one that beats its parent there (whose scores are already paid for) goes "
        "on to validation (GEPA's minibatch acceptance).",
    )
    pareto_parents: bool = Field(
        default=True,
        description="Keep every fully validated candidate in a pool and draw each step's "
        "parent from the per-example Pareto front of the pool (GEPA), not only the best mean.",
    )
    merge: bool = Field(
        default=True,
        description="When the front holds two specs from one ancestor, also try their merge: "
        "each differing part from the one that changed it, else from the one that wins more "
        "validation examples.",
    )
    max_demos: int = Field(default=3, ge=1, le=8, description="Demonstrations per agent.")
    operators: bool = Field(
        default=True,
        description="Also try the structural rewrites that fit a blamed layer's kind of task "
        "(``optimize.operators``: e.g. ``test_revise`` for code answers to tasks that state "
        "examples), each until it is committed or fails to beat the spec it was scored against.",
    )
    threshold: float = Field(
        default=1.0,
        description="Run the backward step when the minibatch "
        "mean is below this (default: any failure).",
    )
    patience: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many epochs without a committed improvement.",
    )
    max_blamed_layers: int = Field(default=3, ge=1)
    # a critic that blames no layer, or gives no parseable answer, while examples fail (small
    # models do both often) wastes the step; blame the output layer with the metric's feedback
    fallback_blame: bool = True
    local_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of a repairer's "
        "evidence budget given to the global critique (rest: the layer's "
        "own records).",
    )
    momentum_beta: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Decay of a layer's earlier critiques when smoothing its gradient.",
    )
    evidence_chars: int = Field(default=6000, ge=500, description="Trace budget per prompt.")
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Examples evaluated at once (default: 1 on the embedded model, else 4).",
    )
    timeout_s: float = Field(default=300.0, gt=0)
    structured_retries: int = Field(default=1, ge=0)
    revisions: int = Field(
        default=1,
        ge=0,
        description="Times a repairer is shown why its patch fails the checks that need no "
        "model call (a restated training example, a placeholder, a vote over one agent...) and "
        "asked for another, before format validation sees it.",
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=64,
        description="Output cap of the critic's and repairers' answers; None: the embedded "
        "model's optimizer cap (sized for the schemas), the provider's default elsewhere. A cap "
        "that cuts the JSON makes the answer unparseable.",
    )
    review: bool = False
