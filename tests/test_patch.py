"""apply_patch: every op, order, all-or-nothing, immutability, and each error path."""

from __future__ import annotations

import pytest

import ann_langgraph as ann
from ann_langgraph.patch import Patch, PatchError, apply_patch

from .conftest import agent, make_spec


@pytest.fixture
def spec() -> ann.GraphSpec:
    return make_spec(
        [
            {"name": "understand", "agents": [agent("reader", "Reader", "Read.")]},
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "agents": [agent("a", "Solver A", "Solve."), agent("b", "Solver B", "Solve too.")],
            },
            {"name": "answer", "inputs": ["understand", "solve"], "agents": [agent("w", "Writer")]},
        ]
    )


def one(op: dict) -> dict:
    return {"rationale": "test", "ops": [op]}


def test_set_prompt_and_role(spec):
    new = apply_patch(
        spec, one({"op": "set_prompt", "layer": "solve", "agent": "b", "prompt": "Check units."})
    )
    assert new.layer("solve").agents[1].prompt == "Check units."
    new = apply_patch(
        new, one({"op": "set_role", "layer": "solve", "agent": "b", "role": "Unit checker"})
    )
    assert new.layer("solve").agents[1].role == "Unit checker"
    assert new.fingerprint != spec.fingerprint


def test_set_aggregator_with_candidates(spec):
    new = apply_patch(
        spec,
        one(
            {
                "op": "set_aggregator",
                "layer": "solve",
                "aggregator": "dynamic",
                "candidates": ["parallel_vote", "debate"],
            }
        ),
    )
    assert new.layer("solve").aggregator == "dynamic"
    assert new.layer("solve").candidates == ["parallel_vote", "debate"]


def test_add_and_remove_agent(spec):
    new = apply_patch(
        spec,
        one(
            {
                "op": "add_agent",
                "layer": "solve",
                "agent": {"id": "checker", "role": "Checker", "prompt": "Verify."},
            }
        ),
    )
    assert [a.id for a in new.layer("solve").agents] == ["a", "b", "checker"]
    new = apply_patch(
        spec,
        one(
            {
                "op": "add_agent",
                "layer": "solve",
                "position": 0,
                "agent": {"id": "first", "role": "F", "prompt": "P"},
            }
        ),
    )
    assert [a.id for a in new.layer("solve").agents] == ["first", "a", "b"]
    new = apply_patch(spec, one({"op": "remove_agent", "layer": "solve", "agent": "a"}))
    assert [a.id for a in new.layer("solve").agents] == ["b"]


def test_add_and_remove_layer(spec):
    layer = {"name": "verify", "aggregator": "sequential_cot", "agents": [agent("v", "Verifier")]}
    new = apply_patch(spec, one({"op": "add_layer", "after": "solve", "layer": layer}))
    assert [layer.name for layer in new.layers] == ["understand", "solve", "verify", "answer"]
    new = apply_patch(spec, one({"op": "add_layer", "after": None, "layer": layer}))
    assert new.layers[0].name == "verify"
    # a layer can be removed once nothing reads it explicitly
    unread = apply_patch(
        spec,
        {
            "ops": [
                {"op": "set_aggregator", "layer": "answer", "aggregator": "sequential_cot"},
                {"op": "remove_layer", "layer": "answer"},
            ]
        },
    )
    assert [layer.name for layer in unread.layers] == ["understand", "solve"]
    spec2 = make_spec(
        [{"name": "x", "agents": [agent("a")]}, {"name": "y", "agents": [agent("b")]}]
    )
    assert [
        layer.name for layer in apply_patch(spec2, one({"op": "remove_layer", "layer": "x"})).layers
    ] == ["y"]


def test_set_inputs_rewires_a_reader_so_the_layer_it_read_can_go(spec):
    assert spec.layer("answer").inputs == ["understand", "solve"]
    rewired = apply_patch(
        spec,
        {
            "ops": [
                {"op": "set_inputs", "layer": spec.layers[-1].name, "inputs": []},
                {"op": "set_inputs", "layer": spec.layers[-1].name, "inputs": None},
            ]
        },
    )
    assert rewired.layers[-1].inputs is None  # None restores the default (the previous layer)
    task_only = apply_patch(spec, one({"op": "set_inputs", "layer": "answer", "inputs": []}))
    assert (
        task_only.layer("answer").inputs == []
        and task_only.layer_inputs(len(spec.layers) - 1) == []
    )
    assert spec.layer("answer").inputs == ["understand", "solve"]  # the input is untouched
    # the removal that was refused while answer read solve now goes through
    gone = apply_patch(
        spec,
        {
            "ops": [
                {"op": "set_inputs", "layer": "answer", "inputs": ["understand"]},
                {"op": "remove_layer", "layer": "solve"},
            ]
        },
    )
    assert [x.name for x in gone.layers] == ["understand", "answer"]


def test_set_tools_and_agent_params(spec):
    new = apply_patch(spec, one({"op": "set_tools", "layer": "solve", "tools": ["calculator"]}))
    assert new.layer("solve").tools == ["calculator"]
    new = apply_patch(
        spec,
        one(
            {
                "op": "set_agent_param",
                "layer": "solve",
                "agent": "a",
                "param": "temperature",
                "value": 0.2,
            }
        ),
    )
    assert new.layer("solve").agents[0].temperature == 0.2
    new = apply_patch(
        new,
        one(
            {
                "op": "set_agent_param",
                "layer": "solve",
                "agent": "a",
                "param": "max_tokens",
                "value": 64,
            }
        ),
    )
    assert new.layer("solve").agents[0].max_tokens == 64


def test_ops_apply_in_order(spec):
    patch = {
        "ops": [
            {"op": "add_agent", "layer": "solve", "agent": {"id": "c", "role": "C", "prompt": "P"}},
            {"op": "set_prompt", "layer": "solve", "agent": "c", "prompt": "Refined."},
            {"op": "remove_agent", "layer": "solve", "agent": "a"},
        ]
    }
    new = apply_patch(spec, patch)
    assert [(a.id, a.prompt) for a in new.layer("solve").agents] == [
        ("b", "Solve too."),
        ("c", "Refined."),
    ]


def test_all_or_nothing_and_input_never_mutated(spec):
    before = spec.model_dump()
    fp = spec.fingerprint
    patch = {
        "ops": [
            {"op": "set_prompt", "layer": "solve", "agent": "a", "prompt": "changed"},
            {"op": "remove_agent", "layer": "solve", "agent": "ghost"},
        ]
    }
    with pytest.raises(PatchError) as err:
        apply_patch(spec, patch)
    assert err.value.op_index == 1 and err.value.op == "remove_agent"
    assert spec.model_dump() == before and spec.fingerprint == fp
    new = apply_patch(
        spec, one({"op": "set_prompt", "layer": "solve", "agent": "a", "prompt": "x"})
    )
    assert spec.layer("solve").agents[0].prompt == "Solve." and new is not spec


@pytest.mark.parametrize(
    ("op", "needle"),
    [
        ({"op": "set_prompt", "layer": "nope", "agent": "a", "prompt": "p"}, "no layer 'nope'"),
        ({"op": "set_prompt", "layer": "solve", "agent": "zz", "prompt": "p"}, "no agent 'zz'"),
        ({"op": "set_role", "layer": "solve", "agent": "zz", "role": "r"}, "no agent 'zz'"),
        (
            {"op": "set_aggregator", "layer": "solve", "aggregator": "telepathy"},
            "unknown aggregator",
        ),
        ({"op": "set_aggregator", "layer": "solve", "aggregator": "dynamic"}, "needs candidates"),
        (
            {"op": "add_agent", "layer": "solve", "agent": {"id": "a", "role": "r", "prompt": "p"}},
            "already has",
        ),
        (
            {
                "op": "add_agent",
                "layer": "solve",
                "position": 9,
                "agent": {"id": "n", "role": "r", "prompt": "p"},
            },
            "out of range",
        ),
        (
            {
                "op": "add_agent",
                "layer": "solve",
                "agent": {"id": "n", "role": "r", "prompt": "p", "model": "gpt-9"},
            },
            "unknown model name",
        ),
        ({"op": "remove_agent", "layer": "understand", "agent": "reader"}, "last agent"),
        (
            {
                "op": "add_layer",
                "after": "solve",
                "layer": {"name": "solve", "agents": [{"id": "a", "role": "r", "prompt": "p"}]},
            },
            "already exists",
        ),
        (
            {
                "op": "add_layer",
                "after": "ghost",
                "layer": {"name": "new", "agents": [{"id": "a", "role": "r", "prompt": "p"}]},
            },
            "no layer 'ghost'",
        ),
        (
            {
                "op": "add_layer",
                "after": None,
                "layer": {
                    "name": "new",
                    "inputs": ["answer"],
                    "agents": [{"id": "a", "role": "r", "prompt": "p"}],
                },
            },
            "later layer",
        ),
        ({"op": "remove_layer", "layer": "solve"}, "read it"),
        ({"op": "remove_layer", "layer": "ghost"}, "no layer 'ghost'"),
        ({"op": "set_inputs", "layer": "answer", "inputs": ["answer"]}, "cannot read itself"),
        ({"op": "set_inputs", "layer": "ghost", "inputs": None}, "no layer 'ghost'"),
        ({"op": "set_tools", "layer": "solve", "tools": ["rm_rf"]}, "unknown tool"),
        (
            {
                "op": "set_agent_param",
                "layer": "solve",
                "agent": "a",
                "param": "temperature",
                "value": 9,
            },
            "temperature",
        ),
        (
            {
                "op": "set_agent_param",
                "layer": "solve",
                "agent": "a",
                "param": "model",
                "value": "nope",
            },
            "unknown model name",
        ),
    ],
)
def test_each_failure_names_op_and_reason(spec, op, needle):
    with pytest.raises(PatchError) as err:
        apply_patch(
            spec, {"ops": [{"op": "set_role", "layer": "solve", "agent": "a", "role": "ok"}, op]}
        )
    assert err.value.op_index == 1
    assert needle in str(err.value)
    assert str(err.value).startswith(f"op 1 ({op['op']})")


def test_only_layer_cannot_be_removed():
    spec = make_spec([{"name": "x", "agents": [agent("a")]}])
    with pytest.raises(PatchError, match="only layer"):
        apply_patch(spec, one({"op": "remove_layer", "layer": "x"}))


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        '{"ops": []}',
        '{"ops": [{"op": "delete_everything"}]}',
        '{"ops": [{"op": "set_prompt", "layer": "solve"}]}',
        '{"ops": [{"op": "set_prompt", "layer": "solve", "agent": "a", "prompt": "p", "extra": 1}]}',
        '{"ops": [{"op": "set_agent_param", "layer": "solve", "agent": "a", "param": "api_key", "value": "x"}]}',
    ],
)
def test_malformed_patches_raise_patch_error(spec, bad):
    with pytest.raises(PatchError) as err:
        apply_patch(spec, bad)
    assert err.value.op_index is None and "invalid patch" in str(err.value)


def test_patch_json_round_trip():
    text = (
        '{"rationale": "r", "ops": [{"op": "set_role", "layer": "l", "agent": "a", "role": "x"}]}'
    )
    patch = Patch.model_validate_json(text)
    assert Patch.model_validate_json(patch.model_dump_json()) == patch
    assert patch.ops[0].op == "set_role"
