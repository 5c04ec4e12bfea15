"""Operator candidates: structural rewrites offered to a blamed layer with no model call."""

from __future__ import annotations

import re
from typing import Any

import ann_langgraph as ann
from ann_langgraph.metrics import code_passes_tests
from ann_langgraph.optimize.operators import operator_proposals
from ann_langgraph.testing import ScriptedChatModel, agent_input
from ann_langgraph.train import train

from .conftest import REPAIRER_PATH, agent, make_spec

CRITIC = {
    "summary": "The functions are wrong.",
    "blame": [{"layer": "solve", "reason": "the solver's code is wrong"}],
}
WORSE = {
    "rationale": "worse",
    "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "BAD"}],
}


def _code_spec(**layer: Any) -> ann.GraphSpec:
    base = {"name": "solve", "agents": [agent("solver", "a programmer", "Write it.")], **layer}
    return make_spec([base], answer_format="code_block")


def _tasks(n: int, prefix: str, *, examples: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{i}",
            "input": f"def add{i}(x):\n    '''Return x plus {i}."
            + (f"\n    >>> add{i}(1)\n    {1 + i}" if examples else "")
            + "\n    '''",
            "tests": f"assert add{i}(1) == {1 + i}\nassert add{i}(5) == {5 + i}",
        }
        for i in range(n)
    ]


def _state(spec: ann.GraphSpec, history=None, train=None) -> dict[str, Any]:
    rows = _tasks(4, "t") if train is None else train
    return {"spec": spec.model_dump(mode="json"), "history": history or [], "train": rows}


def test_test_revise_switches_the_code_layer_to_run_the_stated_examples():
    spec = _code_spec()
    [proposal] = operator_proposals(_state(spec), ["solve"])
    assert proposal["source"] == "operator:test_revise" and proposal["layer"] == "solve"
    patched = ann.apply_patch(spec, proposal["patch"])
    layer = patched.layer("solve")
    assert layer.aggregator == "test_revise"
    assert layer.agents == spec.layer("solve").agents  # the writer is untouched


def test_test_revise_is_offered_only_where_it_can_act():
    # not a code answer
    plain = make_spec([{"name": "solve", "agents": [agent("s")]}])
    assert operator_proposals(_state(plain), ["solve"]) == []
    # a team keeps its shape
    team = _code_spec(agents=[agent("a"), agent("b")])
    assert operator_proposals(_state(team), ["solve"]) == []
    vote = _code_spec(aggregator="parallel_vote", agents=[agent("a"), agent("b"), agent("c")])
    assert operator_proposals(_state(vote), ["solve"]) == []
    # only the layer that writes the final answer; an unknown layer is skipped
    two = make_spec(
        [{"name": "plan", "agents": [agent("p")]}, {"name": "solve", "agents": [agent("s")]}],
        answer_format="code_block",
    )
    names = [p["layer"] for p in operator_proposals(_state(two), ["plan", "solve", "nope"])]
    assert names == ["solve"]
    # tasks that mostly state no examples: the layer would cost the same and change nothing
    spec = _code_spec()
    bare = _tasks(3, "b", examples=False) + _tasks(2, "e")
    assert operator_proposals(_state(spec, train=bare), ["solve"]) == []
    half = _tasks(2, "b", examples=False) + _tasks(2, "e")
    assert operator_proposals(_state(spec, train=half), ["solve"])
    # already there
    done = _code_spec(aggregator="test_revise")
    assert operator_proposals(_state(done), ["solve"]) == []


def test_an_operator_is_offered_again_only_if_it_won_but_a_sibling_won_more():
    spec = _code_spec()

    def offered(**cand: Any) -> bool:
        row = {"layer": "solve", "source": "operator:test_revise", "valid": True, **cand}
        return bool(operator_proposals(_state(spec, [{"candidates": [row]}]), ["solve"]))

    assert not offered(accepted=False, val_score=0.5, before=0.55)  # no better: settled
    assert not offered(accepted=False, val_score=0.5, before=0.5)
    assert not offered(accepted=True, val_score=0.7, before=0.55)  # committed
    assert not offered(accepted=False, valid=False)
    early = {"reason": "cannot win", "evaluated": 8}
    assert not offered(accepted=False, val_score=0.9, before=0.55, early_stop=early)
    assert offered(accepted=False, val_score=0.6, before=0.55)  # a sibling won more
    other = {"layer": "other", "source": "operator:test_revise", "accepted": False}
    assert operator_proposals(_state(spec, [{"candidates": [other]}]), ["solve"])


def _coder() -> ScriptedChatModel:
    """Writes an off-by-one function; shown the failing example, it writes the fix."""

    def respond(messages: list[Any], **kw: Any) -> Any:
        human = next(m for m in messages if m.type == "human")
        task = agent_input([human])
        i = int(re.search(r"add(\d+)", task).group(1))
        if "An earlier attempt was run" in human.content and f"returned {i + 2}" in human.content:
            return f"```python\ndef add{i}(x):\n    return x + {i}\n```"
        return f"```python\ndef add{i}(x):\n    return x + {i + 1}\n```"

    return ScriptedChatModel(respond=respond, model_name="coder")


def _train(tmp_path, **config: Any) -> Any:
    optimizer = ScriptedChatModel(
        rules=[(r"global critic", CRITIC), (r"repair one layer", WORSE)], model_name="optimizer"
    )
    return train(
        _code_spec(),
        train=_tasks(4, "t"),
        val=_tasks(12, "v"),
        metric=code_passes_tests(),
        models=_coder(),
        optimizer_model=optimizer,
        epochs=1,
        batch_size=4,
        run_dir=tmp_path / "run",
        progress=False,
        config=ann.OptimizerConfig(bootstrap_demos=False, **REPAIRER_PATH, **config),
    )


def test_training_commits_test_revise_when_running_the_examples_fixes_the_code(tmp_path):
    result = _train(tmp_path)
    cands = result.history[0]["candidates"]
    operator = next(c for c in cands if c["source"] == "operator:test_revise")
    assert operator["valid"] and operator["accepted"], cands
    assert operator["val_score"] == 1.0 and operator["before"] == 0.0
    assert result.best_spec.layer("solve").aggregator == "test_revise"


def test_operators_can_be_turned_off(tmp_path):
    result = _train(tmp_path, operators=False)
    assert [c["source"] for c in result.history[0]["candidates"]] == ["repairer"]
    assert result.best_spec.layer("solve").aggregator == "sequential_cot"
