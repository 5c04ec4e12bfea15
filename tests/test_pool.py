"""The candidate pool: per-example Pareto front, parent choice, merge, and resume mid-pool."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

import ann_langgraph as ann
from ann_langgraph.optimize.config import Budget, OptimizerConfig
from ann_langgraph.optimize.context import OptimizerContext
from ann_langgraph.optimize.graph import create_optimizer
from ann_langgraph.optimize.pool import (
    SelectParent,
    front_members,
    merge_patch,
    merge_proposals,
    pareto_front,
    pool_entry,
    step_spec,
)
from ann_langgraph.patch import apply_patch
from ann_langgraph.testing import ScriptedChatModel

from .conftest import agent, make_spec


def spec(prompt: str = "Add one.", **kw: Any) -> dict[str, Any]:
    return make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", prompt, **kw)]}],
        answer_format="last_number",
    ).model_dump(mode="json")


def member(i: int, val: list[float], *, parent: int | None = 0, **spec_kw: Any) -> dict[str, Any]:
    scores = {f"v{k}": s for k, s in enumerate(val)}
    return pool_entry(i, spec(**spec_kw), scores, parent=parent, global_step=i, source="repairer")


def ctx(**cfg: Any) -> OptimizerContext:
    return OptimizerContext(
        cfg=OptimizerConfig(**cfg),
        budget=Budget(),
        metric=ann.get_metric("numeric_match"),
        models=None,
        opt_model=ScriptedChatModel(default="x"),
        opt_label="scripted",
    )


# -- front and parent choice -------------------------------------------------------------------


def test_the_front_keeps_a_member_that_wins_an_example_the_best_mean_loses():
    pool = [
        member(0, [1, 0, 0, 0], parent=None),
        member(1, [1, 1, 1, 0], prompt="A"),  # best mean
        member(2, [0, 0, 0, 1], prompt="B"),  # worse mean, but the only one right on v3
        member(3, [1, 1, 0, 0], prompt="C"),  # dominated by 1 everywhere
    ]
    front = pareto_front(pool)
    assert front["v3"] == {2} and front["v1"] == {1} and front["v2"] == {1}
    assert front["v0"] == {1}  # 0 and 3 tie there but are dominated by 1
    assert front_members(pool) == [1, 2]


def test_the_parent_is_drawn_from_the_front_by_how_many_examples_each_wins():
    pool = [
        member(0, [1, 0, 0, 0], parent=None),
        member(1, [1, 1, 1, 0], prompt="A"),
        member(2, [0, 0, 0, 1], prompt="B"),
        member(3, [1, 1, 0, 0], prompt="C"),
    ]
    node = SelectParent(ctx())
    drawn = Counter(
        node({"pool": pool, "global_step": s, "version": 1})["parent"] for s in range(200)
    )
    assert set(drawn) == {1, 2}  # never a dominated member
    assert drawn[1] > drawn[2] > 20  # weights 3 : 1
    # seeded by step: a resumed run draws the same parent
    assert (
        node({"pool": pool, "global_step": 7})["parent"]
        == node({"pool": pool, "global_step": 7})["parent"]
    )


def test_without_pareto_parents_the_best_spec_is_the_parent():
    pool = [member(0, [1, 0], parent=None), member(1, [0, 1], prompt="B")]
    pool[0]["version"] = 0
    out = SelectParent(ctx(pareto_parents=False))({"pool": pool, "global_step": 3, "version": 0})
    assert out == {"parent": 0}
    state = {"pool": pool, "parent": 1, "spec": spec()}
    assert step_spec(state)["layers"][0]["agents"][0]["prompt"] == "B"
    assert step_spec({"spec": spec("S")})["layers"][0]["agents"][0]["prompt"] == "S"


# -- merge ---------------------------------------------------------------------------------------

DEMOS = [{"input": "What is 2 plus one?", "output": "Answer: 3", "source": "train:t2"}]


def test_merge_takes_each_part_from_the_member_that_changed_it():
    pool = [
        member(0, [0, 0, 0, 0], parent=None),
        member(1, [1, 1, 0, 0], prompt="Add one, carefully."),  # changed the prompt
        member(2, [0, 0, 1, 0], demos=DEMOS, max_tokens=512),  # changed demos and the cap
    ]
    patch = merge_patch(pool, 1, 2)
    assert patch is not None
    merged = apply_patch(ann.GraphSpec.model_validate(pool[1]["spec"]), patch)
    solver = merged.layers[0].agents[0]
    assert solver.prompt == "Add one, carefully."  # from 1
    assert [d.source for d in solver.demos] == ["train:t2"] and solver.max_tokens == 512  # from 2
    assert "common ancestor 0" in patch["rationale"]


def test_merge_of_a_part_both_changed_takes_the_member_winning_more_examples():
    pool = [
        member(0, [0, 0, 0, 0], parent=None),
        member(1, [1, 0, 0, 0], prompt="P1", max_tokens=300),
        member(2, [0, 1, 1, 0], prompt="P2", demos=DEMOS),
    ]
    patch = merge_patch(pool, 1, 2)
    assert patch is not None
    merged = apply_patch(ann.GraphSpec.model_validate(pool[1]["spec"]), patch)
    solver = merged.layers[0].agents[0]
    # both changed the prompt: 2 wins 2 examples to 1's 1; the cap only 1 changed; demos only 2
    assert solver.prompt == "P2" and solver.max_tokens == 300 and len(solver.demos) == 1


def test_no_merge_when_one_descends_from_the_other_or_it_equals_a_member():
    pool = [
        member(0, [0, 0], parent=None),
        member(1, [1, 0], prompt="P1"),
        member(2, [1, 1], parent=1, prompt="P2"),  # a child of 1
        member(3, [0, 1], prompt="P3"),  # changed only the prompt, as 1 did
    ]
    assert merge_patch(pool, 1, 2) is None  # 1 is 2's ancestor
    # both changed only the prompt: the merge is one of them
    assert merge_patch(pool, 1, 3) is None


def test_merge_proposals_offer_a_new_merge_once():
    pool = [
        member(0, [0, 0, 0], parent=None),
        member(1, [1, 1, 0], prompt="Add one, carefully."),
        member(2, [0, 0, 1], demos=DEMOS),
    ]
    state: dict[str, Any] = {"pool": pool, "history": []}
    (proposal,) = merge_proposals(state)
    assert proposal["source"] == "merge" and proposal["merged"] == [1, 2]
    assert proposal["base"] == 1
    state["history"] = [{"candidates": [{"source": "merge", "merged": [1, 2]}]}]
    assert merge_proposals(state) == []


# -- in the graph, and a resume in the middle of a pool -----------------------------------------


def data(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "input": f"What is {i} plus one?", "target": str(i + 1)}
        for i in range(n)
    ]


def executor() -> ScriptedChatModel:
    """Right on n % 3 == 0; ODD makes odd n right, EVEN even n; DEMO-shown agents right on 1."""

    def respond(messages: list[BaseMessage], **kw: Any) -> str:
        system, question = str(messages[0].content), str(messages[-1].content)
        n = int(re.search(r"What is (\d+)", question).group(1))  # type: ignore[union-attr]
        right = n % 3 == 0 or ("ODD" in system and n % 2) or ("EVEN" in system and not n % 2)
        return f"Answer: {n + 1}" if right else f"Answer: {n}"

    return ScriptedChatModel(respond=respond, model_name="executor")


def optimizer() -> ScriptedChatModel:
    """The repairer proposes ODD first, EVEN next (each wins different examples)."""
    critic = {"summary": "low", "blame": [{"layer": "solve", "reason": "one too low"}]}

    def repair(messages: list[BaseMessage], **kw: Any) -> dict[str, Any]:
        text = "\n".join(str(m.content) for m in messages)
        word = "EVEN" if "ODD" in text else "ODD"
        return {
            "rationale": word,
            "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": word}],
        }

    return ScriptedChatModel(
        rules=[(r"global critic", critic), (r"repair one layer", repair)], model_name="optimizer"
    )


def _graph(**cfg: Any) -> Any:
    options = {
        "epochs": 2,
        "batch_size": 4,
        "bootstrap_demos": False,
        "early_rejection": False,
        "reflection": False,
        "screening": False,
        "operators": False,
        "paired_test": False,
        **cfg,
    }
    return create_optimizer(
        metric="numeric_match",
        models=executor(),
        optimizer_model=optimizer(),
        config=OptimizerConfig(**options),
    )


INPUT = {"spec": spec("Add one."), "train": data(8, "t"), "val": data(12, "v")}


def test_every_fully_validated_candidate_joins_the_pool_with_its_lineage():
    final = _graph().compile().invoke(INPUT, {"recursion_limit": 200})
    pool = final["pool"]
    assert pool[0]["source"] == "start" and pool[0]["version"] == 0
    assert len(pool) >= 3 and all(set(m["val"]) == {f"v{i}" for i in range(12)} for m in pool)
    # each member's parent is a member that existed before it
    assert all(m["parent"] is None or m["parent"] < m["id"] for m in pool)
    committed = [m for m in pool if m["version"]]
    assert committed and committed[0]["parent"] == 0
    rows = [h for h in final["history"] if not h["skipped"]]
    assert all("front" in h and "parent" in h for h in rows)


def test_a_resume_in_the_middle_of_a_pool_ends_as_an_uninterrupted_run():
    whole = _graph().compile().invoke(INPUT, {"recursion_limit": 200})
    graph = _graph().compile(checkpointer=InMemorySaver(), interrupt_after=["decide"])
    thread = {"configurable": {"thread_id": "p"}, "recursion_limit": 200}
    graph.invoke(INPUT, thread)
    stops = 1
    while graph.get_state(thread).next:
        mid = graph.get_state(thread).values
        assert mid["pool"]  # the pool is in the checkpoint
        graph.invoke(None, thread)
        stops += 1
    final = graph.get_state(thread).values
    assert stops > 1
    assert [m["val"] for m in final["pool"]] == [m["val"] for m in whole["pool"]]
    assert [h.get("parent") for h in final["history"]] == [
        h.get("parent") for h in whole["history"]
    ]
    assert final["spec"] == whole["spec"] and final["best_score"] == whole["best_score"]
