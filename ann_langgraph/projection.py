"""Projected cost of a training run, computed from the spec and dataset sizes without any call."""

from __future__ import annotations

import math

from pydantic import BaseModel

from .pricing import cost_usd
from .spec import GraphSpec, LayerSpec

__all__ = ["Projection", "calls_per_example", "project_training"]

_CHARS_PER_TOKEN = 4


def _layer_calls(layer: LayerSpec, aggregator: str | None = None) -> int:
    agg = aggregator or layer.aggregator
    n = len(layer.agents)
    if agg == "tool_pipeline":
        return n * (layer.max_tool_calls + 1)
    if agg == "debate":
        return n * layer.rounds
    if agg == "self_refine":
        return (layer.rounds + 1) + max(1, n - 1) * layer.rounds
    if agg in ("test_revise", "execute_code"):
        return 1 + layer.rounds
    if agg == "dynamic":
        return 1 + max(_layer_calls(layer, c) for c in layer.candidates or ["sequential_cot"])
    return n + (1 if agg == "parallel_vote" and layer.judge else 0)


def calls_per_example(spec: GraphSpec) -> int:
    """Upper bound on LLM calls one forward pass of ``spec`` makes."""
    return sum(_layer_calls(layer) for layer in spec.layers)


def _tokens_per_example(spec: GraphSpec, input_chars: int) -> tuple[int, int]:
    """Rough (input, output) tokens of one forward pass: prompts, inputs and upstream outputs."""
    tin = tout = 0
    for layer in spec.layers:
        calls = _layer_calls(layer)
        per_agent_out = max((a.max_tokens or 256) for a in layer.agents)
        prompt = max(len(a.prompt) + len(a.role) for a in layer.agents) + len(spec.description)
        upstream = sum(
            (max((a.max_tokens or 256) for a in spec.layer(name).agents)) * _CHARS_PER_TOKEN
            for name in spec.layer_inputs(spec.layers.index(layer))
        )
        tin += calls * (prompt + input_chars + upstream) // _CHARS_PER_TOKEN
        tout += calls * per_agent_out
    return tin, tout


class Projection(BaseModel):
    """What a run may cost at most (every step runs the backward phase on every blamed layer)."""

    steps: int
    forward_calls: int
    optimizer_calls: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    assumptions: list[str]


def project_training(
    spec: GraphSpec,
    *,
    n_train: int,
    n_val: int,
    epochs: int,
    batch_size: int,
    max_blamed_layers: int = 3,
    structured_retries: int = 1,
    avg_input_chars: int = 200,
    model_label: str = "local",
    optimizer_label: str = "local",
    prices: dict[str, tuple[float, float]] | None = None,
) -> Projection:
    steps = epochs * math.ceil(n_train / batch_size)
    per_ex = calls_per_example(spec)
    k = min(max_blamed_layers, len(spec.layers))
    forward_examples = n_val + steps * (batch_size + k * (1 + n_val))  # baseline, batch, dry, val
    forward_calls = forward_examples * per_ex
    tries = 1 + structured_retries
    optimizer_calls = steps * (1 + k) * tries
    tin_ex, tout_ex = _tokens_per_example(spec, avg_input_chars)
    opt_in = 2500  # critic/repair prompts: spec outline + trimmed evidence
    opt_out = 300
    input_tokens = forward_examples * tin_ex + optimizer_calls * opt_in
    output_tokens = forward_examples * tout_ex + optimizer_calls * opt_out
    cost = cost_usd(
        model_label, forward_examples * tin_ex, forward_examples * tout_ex, prices=prices
    )
    cost += cost_usd(
        optimizer_label, optimizer_calls * opt_in, optimizer_calls * opt_out, prices=prices
    )
    return Projection(
        steps=steps,
        forward_calls=forward_calls,
        optimizer_calls=optimizer_calls,
        calls=forward_calls + optimizer_calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=round(cost, 6),
        assumptions=[
            f"{per_ex} LLM calls per example at most (tool loops and rounds at their limits)",
            f"every step blames {k} layer(s) and each patch is dry-run and validated on all "
            f"{n_val} validation examples",
            f"structured output retried {structured_retries} time(s); no cache hits counted",
            f"~{avg_input_chars} input characters per example, {_CHARS_PER_TOKEN} chars per token",
        ],
    )
