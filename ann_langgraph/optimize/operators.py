"""Operator candidates: structural rewrites known to help on a kind of task, offered to a blamed
layer with no model call (AFlow's operators, such as its code "Test" operator).

A small repairer rarely proposes a structural change that works as written: on HumanEval the
1.5B repairer restated failing problems as prompts, and never gave the coder a way to check its
code. An operator is a fixed, general rewrite of one layer (the same for every task of its kind,
written before any run, never tuned to a split); validation keeps it only if it is better, like
any candidate, and an operator is offered to a layer until it is committed or fails to beat
the spec it was scored against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..code_examples import defined_functions, stated_examples
from ..spec import GraphSpec, LayerSpec

__all__ = ["OPERATORS", "Operator", "OperatorCandidates", "operator_proposals"]


@dataclass(frozen=True)
class Operator:
    """A named rewrite: ``ops(spec, layer, train)`` returns its patch ops, or ``[]`` where it
    does not apply (wrong kind of task, or the layer already does what it adds)."""

    name: str
    rationale: str
    ops: Callable[[GraphSpec, LayerSpec, list[dict[str, Any]]], list[dict[str, Any]]]


def _states_examples(row: dict[str, Any]) -> bool:
    task = str(row.get("input", ""))
    return bool(stated_examples(task, defined_functions(task)))


def _test_revise(
    spec: GraphSpec, layer: LayerSpec, train: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The one-agent layer that writes the code answer runs the task's stated examples on its
    code and revises on a failure (``test_revise``: Self-Debugging, AFlow's Test operator).

    Offered only where it can act: a code answer, and at least half of the training tasks state
    examples with literal values (else the layer would cost the same and change nothing).
    """
    if spec.answer_format != "code_block" or layer.name != spec.layers[-1].name:
        return []
    if layer.aggregator != "sequential_cot" or len(layer.agents) != 1:
        return []  # a team's shape is the repairer's to change, not a fixed rewrite's
    if not train or 2 * sum(map(_states_examples, train)) < len(train):
        return []
    return [{"op": "set_aggregator", "layer": layer.name, "aggregator": "test_revise"}]


OPERATORS: tuple[Operator, ...] = (
    Operator(
        name="test_revise",
        rationale="Run the examples the task states on the written code and, when one fails, "
        "tell the coder what failed and let it try afresh (test, then revise).",
        ops=_test_revise,
    ),
)


def _tried(history: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(operator, layer) pairs an earlier step settled: committed, invalid, or no better than
    the spec it was scored against. One that beat that spec but lost to a sibling candidate
    of its step is offered again, against the new spec."""
    settled = set()
    for row in history:
        for c in row.get("candidates") or []:
            source = str(c.get("source", ""))
            if not source.startswith("operator:"):
                continue
            beat = (
                c.get("valid")
                and not c.get("early_stop")
                and c.get("val_score") is not None
                and c.get("before") is not None
                and c["val_score"] > c["before"]
            )
            if c.get("accepted") or not beat:
                settled.add((source.removeprefix("operator:"), str(c.get("layer"))))
    return settled


def operator_proposals(state: Mapping[str, Any], layers: list[str]) -> list[dict[str, Any]]:
    """One proposal per operator that applies to a blamed layer and is not settled for it."""
    spec = GraphSpec.model_validate(state["spec"])
    train = list(state.get("train") or [])
    tried = _tried(state.get("history") or [])
    out: list[dict[str, Any]] = []
    for name in layers:
        try:
            layer = spec.layer(name)
        except KeyError:
            continue
        for operator in OPERATORS:
            if (operator.name, name) in tried:
                continue
            ops = operator.ops(spec, layer, train)
            if ops:
                out.append(
                    {
                        "layer": name,
                        "patch": {"rationale": operator.rationale, "ops": ops},
                        "error": None,
                        "attempts": 0,
                        "source": f"operator:{operator.name}",
                    }
                )
    return out


class OperatorCandidates:
    """Passes the operator proposals the critic's route computed on to format validation."""

    def __call__(self, payload: Any) -> dict[str, Any]:
        return {"proposals": list(payload.get("proposals") or [])}
