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

from ..aggregators.execute_code import python_program
from ..code_examples import defined_functions, stated_examples
from ..spec import GraphSpec, LayerSpec

__all__ = [
    "CHECK_LAYER",
    "CHECK_PROMPT",
    "GROWING",
    "OPERATORS",
    "Operator",
    "OperatorCandidates",
    "agent_calls",
    "cut_off",
    "operator_proposals",
    "unrun_programs",
]


@dataclass(frozen=True)
class Operator:
    """A named rewrite: ``ops(spec, layer, train, records)`` returns its patch ops, or ``[]``
    where it does not apply (wrong kind of task, or the layer already does what it adds);
    ``records`` are the step's minibatch records (compact form)."""

    name: str
    rationale: str
    ops: Callable[
        [GraphSpec, LayerSpec, list[dict[str, Any]], list[dict[str, Any]]], list[dict[str, Any]]
    ]


def _states_examples(row: dict[str, Any]) -> bool:
    task = str(row.get("input", ""))
    return bool(stated_examples(task, defined_functions(task)))


def _lone_answer_agent(spec: GraphSpec, layer: LayerSpec) -> bool:
    """The layer writes the answer with one agent in a plain chain: the shape a fixed rewrite
    may change (a team's shape is the repairer's to change)."""
    return (
        layer.name == spec.layers[-1].name
        and layer.aggregator == "sequential_cot"
        and len(layer.agents) == 1
    )


def _test_revise(
    spec: GraphSpec,
    layer: LayerSpec,
    train: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The one-agent layer that writes the code answer runs the task's stated examples on its
    code and revises on a failure (``test_revise``: Self-Debugging, AFlow's Test operator).

    Offered only where it can act: a code answer, and at least half of the training tasks state
    examples with literal values (else the layer would cost the same and change nothing).
    """
    if spec.answer_format != "code_block" or not _lone_answer_agent(spec, layer):
        return []
    if not train or 2 * sum(map(_states_examples, train)) < len(train):
        return []
    return [{"op": "set_aggregator", "layer": layer.name, "aggregator": "test_revise"}]


# Where at least this share of the answer agent's minibatch answers hold a Python program, the
# layer runs them (execute_code).
PROGRAM_SHARE = 0.25


def _execute_code(
    spec: GraphSpec,
    layer: LayerSpec,
    train: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The one-agent answer layer runs the Python its answers hold and answers with what it
    printed (``execute_code``: PAL, Program of Thoughts). Offered where the model already
    writes programs it cannot run, at least ``PROGRAM_SHARE`` of its minibatch answers (a coder
    model then makes up their output), and never where the answer is the code itself."""
    if not _lone_answer_agent(spec, layer):
        return []
    if not unrun_programs(spec, records, layer.name).get(layer.agents[0].id):
        return []
    return [{"op": "set_aggregator", "layer": layer.name, "aggregator": "execute_code"}]


def unrun_programs(
    spec: GraphSpec, records: list[dict[str, Any]], layer: str
) -> dict[str, tuple[int, int]]:
    """Per agent of ``layer`` whose minibatch answers hold a Python program nobody ran, at least
    ``PROGRAM_SHARE`` of them: (answers with a program, answers). Empty where the layer runs its
    programs already (``execute_code``) or the answer is the code itself: the evidence the
    repairer is shown, and the trigger of the ``execute_code`` operator."""
    if spec.answer_format == "code_block" or spec.layer(layer).aggregator == "execute_code":
        return {}
    out: dict[str, tuple[int, int]] = {}
    for agent_id, calls in agent_calls(records, layer).items():
        n = sum(1 for r in calls if python_program(str(r.get("output") or "")) is not None)
        if calls and n >= max(1, PROGRAM_SHARE * len(calls)):
            out[agent_id] = (n, len(calls))
    return out


# Where at least this share of an agent's minibatch answers hit their cap, the cap is raised.
CUT_SHARE = 0.25
MAX_RAISED_CAP = 4096


def agent_calls(records: list[dict[str, Any]], layer: str) -> dict[str, list[dict[str, Any]]]:
    """Per agent of ``layer``: its model calls on the minibatch that did not fail (compact
    records), in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("layer") != layer or r.get("kind", "llm") != "llm" or r.get("error"):
            continue
        out.setdefault(r["agent_id"], []).append(r)
    return out


def cut_off(records: list[dict[str, Any]], layer: str) -> dict[str, tuple[int, int, int]]:
    """Per agent of ``layer``: (answers cut off at the cap, answers, the cap they had)."""
    out: dict[str, tuple[int, int, int]] = {}
    for agent_id, calls in agent_calls(records, layer).items():
        cut = [r for r in calls if r.get("truncated")]
        cap = max((int(r.get("max_tokens") or 0) for r in cut), default=0)
        out[agent_id] = (len(cut), len(calls), cap)
    return out


def _raise_cap(
    spec: GraphSpec,
    layer: LayerSpec,
    train: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Double the output cap of each agent of the layer whose answers were cut off on the
    minibatch (at least ``CUT_SHARE`` of them; at least 512, at most ``MAX_RAISED_CAP``): an
    unfinished answer scores 0 whatever its prompt says, and the critique says so."""
    ops = []
    cuts = cut_off(records, layer.name)
    for agent in layer.agents:
        cut, total, cap = cuts.get(agent.id, (0, 0, 0))
        cap = agent.max_tokens or cap
        if not cut or not cap or cut < CUT_SHARE * total or cap >= MAX_RAISED_CAP:
            continue
        raised = min(MAX_RAISED_CAP, max(512, 2 * cap))
        ops.append(
            {
                "op": "set_agent_param",
                "layer": layer.name,
                "agent": agent.id,
                "param": "max_tokens",
                "value": raised,
            }
        )
    return ops


# Answer formats a vote can tally (an extracted answer, not code or free text).
VOTABLE_FORMATS = ("last_number", "choice_letter", "boxed", "last_line")
VOTE_SAMPLES = 3
VOTE_TEMPERATURE = 0.7


def _vote(
    spec: GraphSpec,
    layer: LayerSpec,
    train: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The one-agent answer layer becomes a vote of ``VOTE_SAMPLES``: the agent as it is, plus
    copies sampled at ``VOTE_TEMPERATURE`` (self-consistency inside the graph; ties go to the
    first, the agent as it was). Offered only where the answer can be tallied; it costs about
    ``VOTE_SAMPLES`` times the layer's tokens, which the report's cost columns show."""
    if spec.answer_format not in VOTABLE_FORMATS or not _lone_answer_agent(spec, layer):
        return []
    agent = layer.agents[0]
    taken = {a.id for other in spec.layers for a in other.agents}
    ops: list[dict[str, Any]] = [
        {"op": "set_aggregator", "layer": layer.name, "aggregator": "parallel_vote"}
    ]
    for i in range(2, VOTE_SAMPLES + 1):
        new_id = f"{agent.id}_{i}"
        while new_id in taken:
            new_id += "x"
        taken.add(new_id)
        copy = agent.model_dump(mode="json", exclude_none=True)
        copy.update(id=new_id, temperature=max(VOTE_TEMPERATURE, agent.temperature or 0.0))
        ops.append({"op": "add_agent", "layer": layer.name, "agent": copy})
    return ops


# How the checker ends, per answer format (the formats a checker can restate exactly).
_CHECK_ENDINGS = {
    "last_number": "End with the line 'Answer: <number>' (digits only).",
    "choice_letter": "End with the line 'Answer: <letter>'.",
    "boxed": "Put the final answer in \\boxed{}.",
    "last_line": "Write the final answer alone on the last line.",
}
CHECK_LAYER = "check"
CHECK_PROMPT = (
    "You are shown a task and a proposed solution. Work the task out again yourself, step by "
    "step, then compare: keep the proposed answer if it is right, correct it if it is wrong."
)


def _checker(
    spec: GraphSpec,
    layer: LayerSpec,
    train: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """A checker layer after the answer layer: one agent that re-derives the answer from the
    task and the proposed solution, and corrects it (a verifier, as in AFlow's ScEnsemble and
    review operators). Offered for answers a checker can restate exactly, once: not after a
    layer that already is one."""
    ending = _CHECK_ENDINGS.get(spec.answer_format)
    if ending is None or layer.name != spec.layers[-1].name or layer.name == CHECK_LAYER:
        return []
    if any(other.name == CHECK_LAYER for other in spec.layers):
        return []
    cap = max((a.max_tokens or 0) for a in layer.agents) or None
    checker: dict[str, Any] = {
        "id": "checker",
        "role": "a careful checker of the proposed answer",
        "prompt": f"{CHECK_PROMPT} {ending}",
        "temperature": 0.0,
    }
    if cap:
        checker["max_tokens"] = cap
    return [
        {
            "op": "add_layer",
            "after": layer.name,
            "layer": {
                "name": CHECK_LAYER,
                "aggregator": "sequential_cot",
                "agents": [checker],
            },
        }
    ]


OPERATORS: tuple[Operator, ...] = (
    Operator(
        name="raise_cap",
        rationale="Many answers were cut off at their output cap before they finished; give "
        "the agents room to finish (the extra tokens are counted in the cost).",
        ops=_raise_cap,
    ),
    Operator(
        name="test_revise",
        rationale="Run the examples the task states on the written code and, when one fails, "
        "tell the coder what failed and let it try afresh (test, then revise).",
        ops=_test_revise,
    ),
    Operator(
        name="execute_code",
        rationale="The answers hold Python programs whose output the model wrote itself, as it "
        "cannot run them; run each program and answer with what it really prints.",
        ops=_execute_code,
    ),
)


# Growing operators: under objective="cost" only, where accuracy is missing (a blamed layer),
# beside the shrinks (optimize.shrink); the cost rule weighs what they add.
GROWING: tuple[Operator, ...] = (
    Operator(
        name="vote",
        rationale="Answers vary between samples; a vote of the agent and two sampled copies "
        "keeps the answer most of them reach (self-consistency), at about three times the "
        "layer's cost.",
        ops=_vote,
    ),
    Operator(
        name="checker",
        rationale="The answer layer's answers are often wrong; a checker that works the task "
        "out again from the proposed solution and corrects it costs one more call per example.",
        ops=_checker,
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


def _tried_ops(state: Mapping[str, Any], name: str) -> list[list[dict[str, Any]]]:
    """The ops of every earlier candidate of operator ``name`` that was not committed."""
    return [
        list((c.get("patch") or {}).get("ops") or [])
        for row in state.get("history") or []
        for c in row.get("candidates") or []
        if c.get("source") == f"operator:{name}" and not c.get("accepted")
    ]


def operator_proposals(
    state: Mapping[str, Any], layers: list[str], *, grow: bool = False
) -> list[dict[str, Any]]:
    """One proposal per operator that applies to a blamed layer and is not settled for it
    (``raise_cap`` is never settled: each step whose answers are cut off may raise it again);
    ``grow``: the growing operators too (``GROWING``, under the cost objective)."""
    spec = GraphSpec.model_validate(state["spec"])
    train = list(state.get("train") or [])
    records = list((state.get("batch") or {}).get("records") or [])
    tried = _tried(state.get("history") or [])
    out: list[dict[str, Any]] = []
    for name in layers:
        try:
            layer = spec.layer(name)
        except KeyError:
            continue
        for operator in (*OPERATORS, *(GROWING if grow else ())):
            if (operator.name, name) in tried and operator.name != "raise_cap":
                continue
            ops = operator.ops(spec, layer, train, records)
            if operator.name == "raise_cap" and ops in _tried_ops(state, operator.name):
                continue  # this very raise was scored already: a rerun is no news
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
    """Passes proposals the critic's route computed (operators, merges) on to format
    validation: they need no model call."""

    def __call__(self, payload: Any) -> dict[str, Any]:
        return {"proposals": list(payload.get("proposals") or [])}
