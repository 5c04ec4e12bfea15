"""Per-layer tokens and answers from minibatch records: the evidence behind a shrink."""

from __future__ import annotations

import json
from typing import Any

import ann_langgraph as ann
from ann_langgraph.layer_usage import first_agent_agreement, layer_answers, layer_usage, usage_lines

from .conftest import agent, make_spec


def _spec() -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "read", "agents": [agent("reader", "a reader", "Restate.")]},
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "agents": [agent(f"s{i}", f"solver {i}", "Solve.") for i in range(3)],
            },
            {"name": "check", "agents": [agent("checker", "a checker", "Check.")]},
        ],
        answer_format="last_number",
    )


def _llm(layer: str, agent_id: str, example: str, output: str, tokens: int) -> dict[str, Any]:
    return {"layer": layer, "agent_id": agent_id, "kind": "llm", "example_id": example,
            "output": output, "error": None, "input_tokens": tokens, "output_tokens": 0}  # fmt: skip


def _records() -> list[dict[str, Any]]:
    out = []
    for e, (votes, winner, checked) in {
        "e1": (["3", "3", "4"], "3", "3"),  # the checker keeps the vote
        "e2": (["5", "6", "6"], "6", "7"),  # the checker changes it
    }.items():
        out.append(_llm("read", "reader", e, "It asks for a total.", 100))
        out += [_llm("solve", f"s{i}", e, f"Answer: {v}", 200) for i, v in enumerate(votes)]
        decision = {"kind": "vote", "answer": winner}
        out.append({"layer": "solve", "agent_id": "", "kind": "decision", "example_id": e,
                    "output": json.dumps(decision), "error": None})  # fmt: skip
        out.append(_llm("check", "checker", e, f"Looks right.\nAnswer: {checked}", 100))
    return out


def test_a_layers_answer_is_its_votes_winner_else_its_last_calls_answer() -> None:
    records = _records()
    assert layer_answers(records, "solve", "last_number") == {"e1": "3", "e2": "6"}
    assert layer_answers(records, "check", "last_number") == {"e1": "3", "e2": "7"}
    assert layer_answers(records, "read", "last_number") == {"e1": None, "e2": None}
    # a failed call says nothing about the layer's answer
    failed = [{**_llm("check", "checker", "e3", "Answer: 9", 1), "error": "timeout"}]
    assert layer_answers(failed, "check", "last_number") == {}


def test_layer_usage_shows_where_tokens_go_and_whether_the_answer_changes() -> None:
    rows = {r.layer: r for r in layer_usage(_spec(), _records())}
    assert rows["solve"].calls_per_example == 3.0 and rows["solve"].tokens_per_example == 600
    assert rows["read"].tokens_per_example == 100 and rows["check"].tokens_per_example == 100
    assert abs(rows["solve"].share - 600 / 800) < 1e-9
    # the restatement holds no answer, so the final answer never comes from it
    assert (rows["read"].answered, rows["read"].same_as_final) == (0, 0)
    # the checker kept the vote's answer once in two
    assert rows["check"].input_layer == "solve" and rows["check"].same_as_input == 1
    assert rows["solve"].same_as_final == 1 and rows["check"].same_as_final == 2
    table = "\n".join(usage_lines(list(rows.values()), title="v0"))
    assert "| solve | parallel_vote | 3.0 | 600 | 75% | 2/2 | 1/2 | 0/2 (read) |" in table
    assert "| check | sequential_cot | 1.0 | 100 | 12% | 2/2 | 2/2 | 1/2 (solve) |" in table


def test_first_agent_agreement_counts_where_the_team_answered_as_its_first_member() -> None:
    records = _records()
    assert first_agent_agreement(records, "solve", "s0", "last_number") == (1, 2)
    assert first_agent_agreement(records, "solve", "s2", "last_number") == (1, 2)
    assert first_agent_agreement([], "solve", "s0", "last_number") == (0, 0)
