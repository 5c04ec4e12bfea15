"""Shrink operators (``objective="cost"``): each rewrite's spec compiles and passes the sense
checks, the checks refuse the unsafe shrinks, and a cost run commits a shrink that keeps
accuracy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import ann_langgraph as ann
from ann_langgraph.compile import compile_graph
from ann_langgraph.optimize.shrink import SHRINKS, shrink_proposals
from ann_langgraph.optimize.validate import sense_reason
from ann_langgraph.testing import ScriptedChatModel

from .conftest import REPAIRER_PATH, agent, make_spec


def _spec(voters: int = 3) -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "read", "agents": [agent("reader", "a reader", "Restate.")]},
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "agents": [agent(f"s{i}", f"solver {i}", "Add one.") for i in range(voters)],
            },
            {"name": "answer", "agents": [agent("writer", "a writer", "Answer.")]},
        ],
        answer_format="last_number",
    )


def _records(spec: ann.GraphSpec, *, out: int = 40, cap: int = 512, cut: bool = False) -> list:
    return [
        {"layer": layer.name, "agent_id": a.id, "kind": "llm", "error": None, "output_tokens": out,
         "max_tokens": cap, "truncated": "cut off" if cut else ""}
        for layer in spec.layers for a in layer.agents
    ]  # fmt: skip


def _proposals(spec: ann.GraphSpec, records: list) -> dict[str, dict[str, Any]]:
    state = {"spec": spec.model_dump(mode="json"), "batch": {"records": records}, "history": []}
    return {f"{p['source']}@{p['layer']}": p for p in shrink_proposals(state)}


def test_each_shrink_compiles_and_passes_the_sense_checks() -> None:
    spec = _spec()
    found = _proposals(spec, _records(spec))
    assert set(found) >= {
        "operator:vote_to_one@solve",
        "operator:drop_voter@solve",
        "operator:remove_layer@read",
        "operator:remove_layer@solve",
        "operator:lower_cap@answer",
    }
    assert not any(k.startswith("operator:remove_layer@answer") for k in found)
    for key, proposal in found.items():
        after = ann.apply_patch(spec, proposal["patch"])
        assert sense_reason(spec, after, proposal["patch"], _records(spec)) is None, key
        compile_graph(after, models=ScriptedChatModel(default="Answer: 1"))
    one = ann.apply_patch(spec, found["operator:vote_to_one@solve"]["patch"])
    assert one.layer("solve").aggregator == "sequential_cot"
    assert [a.id for a in one.layer("solve").agents] == ["s0"]
    fewer = ann.apply_patch(spec, found["operator:drop_voter@solve"]["patch"])
    assert (
        fewer.layer("solve").aggregator == "parallel_vote" and len(fewer.layer("solve").agents) == 2
    )
    capped = found["operator:lower_cap@answer"]["patch"]["ops"][0]
    assert capped["param"] == "max_tokens" and capped["value"] == 128  # 1.5 x 40, floor 128


def test_the_gsm8k_starter_shrinks_its_routed_team_and_drops_a_layer_others_read() -> None:
    """graphs/gsm8k.yaml: understand -> solve (dynamic: vote | calculator pipeline) -> answer,
    which reads [understand, solve]: each shrink applies, compiles and rewires its readers."""
    spec = ann.load_spec(Path(__file__).parents[1] / "graphs" / "gsm8k.yaml")
    found = _proposals(spec, _records(spec))
    assert {"operator:vote_to_one@solve", "operator:remove_layer@understand"} <= set(found)
    for key, proposal in found.items():
        after = ann.apply_patch(spec, proposal["patch"])
        assert sense_reason(spec, after, proposal["patch"], _records(spec)) is None, key
        compile_graph(after, models=ScriptedChatModel(default="Answer: 1"))
    one = ann.apply_patch(spec, found["operator:vote_to_one@solve"]["patch"])
    solve = one.layer("solve")
    assert solve.aggregator == "sequential_cot" and solve.candidates is None
    assert [a.id for a in solve.agents] == ["solver_a"]
    # the answer layer read [understand, solve]; without understand it reads solve (what
    # understand read was the task alone), and solve, now first, reads the task
    gone = ann.apply_patch(spec, found["operator:remove_layer@understand"]["patch"])
    assert [x.name for x in gone.layers] == ["solve", "answer"]
    assert gone.layer("answer").inputs == ["solve"] and gone.layer_inputs(0) == []
    # a middle layer read by default: its reader reads the removed layer's own input
    middle = ann.apply_patch(spec, found["operator:remove_layer@solve"]["patch"])
    assert middle.layer("answer").inputs == ["understand"]


def test_removing_a_layer_with_explicit_inputs_gives_its_default_reader_those_inputs() -> None:
    spec = make_spec(
        [
            {"name": "a", "agents": [agent("x", "r", "A.")]},
            {"name": "b", "agents": [agent("y", "r", "B.")]},
            {"name": "c", "inputs": ["a"], "agents": [agent("z", "r", "C.")]},
            {"name": "d", "agents": [agent("w", "r", "D.")]},
        ],
        answer_format="last_number",
    )
    found = _proposals(spec, _records(spec))
    after = ann.apply_patch(spec, found["operator:remove_layer@c"]["patch"])
    assert after.layer("d").inputs == ["a"]  # d read c by default; c read a
    plain = ann.apply_patch(spec, found["operator:remove_layer@b"]["patch"])
    assert found["operator:remove_layer@b"]["patch"]["ops"] == [
        {"op": "remove_layer", "layer": "b"}
    ]  # nobody read b (c reads a): nothing to rewire
    assert [x.name for x in plain.layers] == ["a", "c", "d"]


def test_a_two_agent_vote_is_not_left_with_one_voter_and_cut_answers_keep_their_cap() -> None:
    spec = _spec(voters=2)
    found = _proposals(spec, _records(spec, cut=True))
    assert "operator:drop_voter@solve" not in found
    assert not any(k.startswith("operator:lower_cap") for k in found)  # answers were cut
    assert "operator:vote_to_one@solve" in found


def test_the_sense_checks_refuse_the_unsafe_shrinks() -> None:
    spec = _spec(voters=2)
    drop = {"ops": [{"op": "remove_agent", "layer": "solve", "agent": "s1"}]}
    assert "over one agent" in sense_reason(spec, ann.apply_patch(spec, drop), drop)
    last = {"ops": [{"op": "remove_layer", "layer": "answer"}]}
    assert "writes the answer" in sense_reason(spec, ann.apply_patch(spec, last), last)
    lower = {"ops": [{"op": "set_agent_param", "layer": "read", "agent": "reader",
                      "param": "max_tokens", "value": 200}]}  # fmt: skip
    cut = _records(spec, cap=512, cut=True)  # the calls ran with the model's own 512
    assert "already cut off" in sense_reason(spec, ann.apply_patch(spec, lower), lower, cut)


def _voting_executor() -> ScriptedChatModel:
    def respond(messages: list[Any], **kw: Any) -> str:
        question = messages[-1].content
        n = int(re.search(r"What is (\d+)", question).group(1))
        return f"Answer: {n + 1}"

    return ScriptedChatModel(respond=respond, model_name="executor")


@pytest.mark.parametrize("objective", ["cost", "accuracy"])
def test_a_cost_run_commits_a_shrink_that_keeps_accuracy(tmp_path: Path, objective: str) -> None:
    spec = make_spec(
        [{"name": "solve", "aggregator": "parallel_vote",
          "agents": [agent(f"s{i}", f"solver {i}", "Add one.") for i in range(3)]}],
        answer_format="last_number",
    )  # fmt: skip
    opt = ScriptedChatModel(default="{}", model_name="optimizer")
    rows = [
        {"id": f"r{i}", "input": f"What is {i} plus one?", "target": str(i + 1)} for i in range(12)
    ]
    result = ann.train(
        spec,
        train=rows[:4],
        val=rows,
        metric="numeric_match",
        models=_voting_executor(),
        optimizer_model=opt,
        epochs=1,
        batch_size=4,
        run_dir=tmp_path / objective,
        progress=False,
        objective=objective,  # type: ignore[arg-type]
        config=ann.OptimizerConfig(bootstrap_demos=False, early_rejection=False, **REPAIRER_PATH),
    )
    assert opt.calls == []  # the minibatch was perfect: no critic, no repairer
    if objective == "accuracy":
        assert len(result.versions) == 1 and result.history[0]["skipped"]
        return
    first = result.history[0]
    assert not first["skipped"]
    assert {c["source"] for c in first["candidates"]} >= {
        "operator:vote_to_one",
        "operator:drop_voter",
    }
    assert first["decision"]["accepted"] and first["decision"]["committed_for"] == "cost"
    solve = result.best_spec.layer("solve")
    assert solve.aggregator == "sequential_cot" and len(solve.agents) == 1  # the cheapest
    assert result.versions[1]["tokens_per_example"] < result.versions[0]["tokens_per_example"] / 2
    # the evidence from the minibatch records rides in the rationale, and the report's table
    why = next(c for c in first["candidates"] if c["source"] == "operator:vote_to_one")
    assert (
        "the team's answer was its first agent's own in 4 of 4 examples"
        in (why["patch"]["rationale"])
    )
    report = (tmp_path / objective / "report.md").read_text()
    assert "## Where the tokens go" in report
    assert "| solve | parallel_vote | 3.0 |" in report  # v0 on step 1: three calls an example


def test_the_shrinks_are_named_and_documented() -> None:
    assert set(SHRINKS) == {"vote_to_one", "drop_voter", "remove_layer", "lower_cap"}
    assert all(rationale for _, rationale in SHRINKS.values())


def _offered(spec: ann.GraphSpec, layer: str, operator: str, *, grow: bool = True) -> list:
    """The proposals of ``operator:<operator>`` for ``layer`` of ``spec`` (growing ones with
    ``grow``, as under the cost objective)."""
    from ann_langgraph.optimize.operators import operator_proposals

    state = {"spec": spec.model_dump(mode="json"), "train": [], "batch": {"records": []}}
    return [
        p
        for p in operator_proposals(state, [layer], grow=grow)
        if p["source"] == f"operator:{operator}"
    ]


def _code_spec() -> ann.GraphSpec:
    return make_spec(
        [{"name": "code", "agents": [agent("coder", "a coder", "Write it.")]}],
        answer_format="code_block",
    )


def test_the_vote_grows_a_one_agent_answer_layer_only_under_cost() -> None:
    spec = make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", "Add one.", temperature=0.0)]}],
        answer_format="last_number",
    )
    assert not _offered(spec, "solve", "vote", grow=False)
    (vote,) = _offered(spec, "solve", "vote")
    after = ann.apply_patch(spec, vote["patch"])
    layer = after.layer("solve")
    assert layer.aggregator == "parallel_vote"
    assert [(a.id, a.temperature) for a in layer.agents] == [
        ("solver", 0.0),  # the agent as it was: ties go to it
        ("solver_2", 0.7),
        ("solver_3", 0.7),
    ]
    assert {a.prompt for a in layer.agents} == {"Add one."}
    assert sense_reason(spec, after, vote["patch"]) is None
    compile_graph(after, models=ScriptedChatModel(default="Answer: 1"))
    assert not _offered(_code_spec(), "code", "vote")  # code answers cannot be tallied


def test_the_checker_grows_a_layer_after_the_answer_once_and_only_under_cost() -> None:
    from ann_langgraph.optimize.operators import CHECK_LAYER

    spec = make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", "Add one.", max_tokens=300)]}],
        answer_format="last_number",
    )
    assert not _offered(spec, "solve", "checker", grow=False)
    (check,) = _offered(spec, "solve", "checker")
    after = ann.apply_patch(spec, check["patch"])
    assert [x.name for x in after.layers] == ["solve", CHECK_LAYER]
    checker = after.layer(CHECK_LAYER).agents[0]
    assert checker.max_tokens == 300 and checker.temperature == 0.0
    assert checker.prompt.endswith("End with the line 'Answer: <number>' (digits only).")
    assert after.layer_inputs(1) == ["solve"]  # it reads the proposed solution (and the task)
    assert sense_reason(spec, after, check["patch"]) is None
    compile_graph(after, models=ScriptedChatModel(default="Answer: 1"))
    # once: a graph that already ends in a checker, or a layer before the answer, gets none
    for name in ("solve", CHECK_LAYER):
        assert not _offered(after, name, "checker")
    assert not _offered(_code_spec(), "code", "checker")  # a checker cannot restate code exactly
