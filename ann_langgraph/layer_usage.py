"""Where a graph's tokens go, layer by layer, and whether each layer changes the answer.

The evidence behind a shrink: a layer that costs a large share of the tokens while the graph's
answer is the one the layer before it already gave (a checker that never changes the vote), or
whose own output holds no answer at all (a restatement the answer layer may not need), is the
candidate to remove; validation then says whether accuracy holds without it. Read from a step's
minibatch records (``records/step-NNNN.jsonl``: one forward pass of the step's parent spec).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .answers import extract_answer, normalize_answer
from .spec import GraphSpec

__all__ = ["LayerUsage", "first_agent_agreement", "layer_answers", "layer_usage", "usage_lines"]


class LayerUsage(BaseModel):
    """One layer on one forward pass of a minibatch (counts are over its examples)."""

    layer: str
    aggregator: str
    examples: int
    calls_per_example: float
    tokens_per_example: float
    share: float
    answered: int
    same_as_final: int
    input_layer: str | None = None
    same_as_input: int | None = None


def layer_answers(
    records: Iterable[Mapping[str, Any]], layer: str, answer_format: str
) -> dict[str, str | None]:
    """Per example: the layer's answer, i.e. its vote's winner where a decision names one,
    else the answer in its last model call's output (``None`` where it holds none)."""
    out: dict[str, str | None] = {}
    for r in records:
        if r.get("layer") != layer or r.get("error"):
            continue
        example = str(r.get("example_id"))
        if r.get("kind") == "decision":
            try:
                decision = json.loads(str(r.get("output") or "") or "{}")
            except ValueError:
                continue
            if isinstance(decision, dict) and decision.get("answer") is not None:
                out[example] = normalize_answer(str(decision["answer"]))
        elif r.get("kind", "llm") == "llm":
            out[example] = normalize_answer(extract_answer(r.get("output"), answer_format))
    return out


def first_agent_agreement(
    records: Iterable[Mapping[str, Any]], layer: str, agent: str, answer_format: str
) -> tuple[int, int]:
    """(examples where ``agent``'s own answer was the layer's answer, examples with both): how
    much a team adds over its first member alone."""
    records = list(records)
    team = layer_answers(records, layer, answer_format)
    own = layer_answers(
        [r for r in records if r.get("agent_id") == agent and r.get("kind", "llm") == "llm"],
        layer,
        answer_format,
    )
    both = [e for e in own if own[e] is not None and team.get(e) is not None]
    return sum(1 for e in both if own[e] == team[e]), len(both)


def layer_usage(spec: GraphSpec, records: Sequence[Mapping[str, Any]]) -> list[LayerUsage]:
    """Per layer of ``spec``: model calls and tokens (input + output) per example, its share of
    the graph's tokens, and how often its answer (in the graph's answer format) is the graph's
    final answer, and the answer of the last layer it reads (a checker after a vote: how often
    it kept the vote's answer)."""
    n = max(1, len({str(r.get("example_id")) for r in records}))
    answers = {
        layer.name: layer_answers(records, layer.name, spec.answer_format) for layer in spec.layers
    }
    final = answers[spec.layers[-1].name]
    calls = [r for r in records if r.get("kind", "llm") == "llm"]
    total = sum(map(_tokens, calls))
    rows = []
    for index, layer in enumerate(spec.layers):
        mine = [r for r in calls if r.get("layer") == layer.name]
        tokens = sum(map(_tokens, mine))
        answered = {e: a for e, a in answers[layer.name].items() if a is not None}
        inputs = spec.layer_inputs(index)
        same_as_input = None
        if inputs:
            given = answers[inputs[-1]]
            same_as_input = sum(
                1 for e, a in answered.items() if given.get(e) is not None and given[e] == a
            )
        rows.append(
            LayerUsage(
                layer=layer.name,
                aggregator=layer.aggregator,
                examples=len({str(r.get("example_id")) for r in mine}),
                calls_per_example=len(mine) / n,
                tokens_per_example=tokens / n,
                share=tokens / total if total else 0.0,
                answered=len(answered),
                same_as_final=sum(1 for e, a in answered.items() if final.get(e) == a),
                input_layer=inputs[-1] if inputs else None,
                same_as_input=same_as_input,
            )
        )
    return rows


def _tokens(record: Mapping[str, Any]) -> int:
    """What a call cost: its input plus output tokens."""
    return int(record.get("input_tokens") or 0) + int(record.get("output_tokens") or 0)


def usage_lines(rows: list[LayerUsage], *, title: str) -> list[str]:
    """A markdown table of ``rows`` under ``title``."""
    lines = [
        f"### {title}",
        "",
        "| layer | aggregator | calls/example | tokens/example | share | holds an answer | "
        "same as the final answer | same as the layer it reads |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        same_input = (
            "-" if r.same_as_input is None else f"{r.same_as_input}/{r.answered} ({r.input_layer})"
        )
        lines.append(
            f"| {r.layer} | {r.aggregator} | {r.calls_per_example:.1f} | "
            f"{r.tokens_per_example:,.0f} | {100 * r.share:.0f}% | {r.answered}/{r.examples} | "
            f"{r.same_as_final}/{r.answered} | {same_input} |"
        )
    return lines
