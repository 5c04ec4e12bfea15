"""Property tests of ``apply_patch``: thousands of random and mutated patches on random specs.

Specs: 200 random valid specs (built once from a seeded generator) and the starter specs.
Patches: random documents (all op types, real and wrong names, junk fields, wrong types, as a
dict, JSON text, damaged JSON or a ``Patch``), valid patches of the starter specs broken in small
ways, and ``Patch`` objects edited after validation or built with ``model_construct``.

Properties, for any spec and any patch:
- the result is a valid ``GraphSpec``, or ``PatchError`` is raised: never anything else;
- neither the spec nor the patch given is mutated (dump and fingerprint are unchanged);
- it is all-or-nothing and names the failing op: the ops before op ``i`` apply, op ``i`` fails;
- applying the ops one patch at a time gives the same spec as applying them together.
"""

from __future__ import annotations

import copy
import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ann_langgraph import GraphSpec, aggregator_names, tool_names
from ann_langgraph.patch import Patch, PatchError, apply_patch
from ann_langgraph.spec import RESERVED_LAYER_NAMES

ROOT = Path(__file__).resolve().parent.parent
AGGREGATORS = sorted(aggregator_names())
PLAIN_AGGREGATORS = [a for a in AGGREGATORS if a != "dynamic"]
TOOLS = sorted(tool_names())
OPS = [
    "set_prompt",
    "set_role",
    "set_aggregator",
    "add_agent",
    "remove_agent",
    "add_layer",
    "remove_layer",
    "set_tools",
    "set_agent_param",
    "set_inputs",
]


def _starter_specs() -> list[GraphSpec]:
    out = []
    for path in sorted((ROOT / "graphs").glob("*.yaml")):
        try:  # other people edit these files: use those that load
            out.append(GraphSpec.model_validate(yaml.safe_load(path.read_text("utf-8"))))
        except Exception:
            continue
    return out


STARTERS = _starter_specs()


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- values ----------------------------------------------------------------------------------

junk_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
junk = st.one_of(
    junk_scalar,
    st.lists(junk_scalar, max_size=2),
    st.dictionaries(st.sampled_from(["", "id", "x", "layer"]), junk_scalar, max_size=2),
)
_NAME_CHARS = string.ascii_letters + string.digits + "_-"
pattern_names = st.tuples(
    st.sampled_from(string.ascii_letters), st.text(alphabet=_NAME_CHARS, max_size=6)
).map("".join)
bad_names = st.sampled_from(
    [*sorted(RESERVED_LAYER_NAMES), "", " a", "a b", "1x", "_x", "x" * 70, "Solve", "solve "]
)
texts = st.one_of(
    st.sampled_from(["Solve it.", "", " ", "line\nbreak", "é 中文 🙂", "x" * 500, "null"]),
    st.text(max_size=12),
)


# -- specs -----------------------------------------------------------------------------------


def _random_agent(rng: random.Random, agent_id: str, models: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": agent_id,
        "role": rng.choice(["a solver", "a reader", "Judge"]),
        "prompt": rng.choice(["Do it.", "Solve step by step.", "Check the answer."]),
    }
    if rng.random() < 0.5:
        doc["temperature"] = round(rng.uniform(0, 2), 2)
    if rng.random() < 0.5:
        doc["max_tokens"] = rng.randint(1, 32768)
    if len(models) > 1 and rng.random() < 0.5:
        doc["model"] = rng.choice(models)
    return doc


def _random_spec(rng: random.Random) -> GraphSpec:
    """A valid spec: 1-4 layers, 1-3 agents each, random wiring, aggregators, tools, params."""
    models = ["default"] + (["fast"] if rng.random() < 0.5 else [])
    names = rng.sample(["understand", "solve", "answer", "plan", "check", "L5"], rng.randint(1, 4))
    layers = []
    for i, name in enumerate(names):
        ids = rng.sample(["a", "b", "c", "solver", "w"], rng.randint(1, 3))
        layer: dict[str, Any] = {
            "name": name,
            "aggregator": rng.choice(AGGREGATORS),
            "agents": [_random_agent(rng, x, models) for x in ids],
        }
        if layer["aggregator"] == "dynamic":
            layer["candidates"] = rng.sample(PLAIN_AGGREGATORS, rng.randint(1, 3))
        if i > 0 and rng.random() < 0.5:
            layer["inputs"] = rng.sample(names[:i], rng.randint(1, i))
        if rng.random() < 0.5:
            layer["tools"] = rng.sample(TOOLS, rng.randint(0, len(TOOLS)))
        if rng.random() < 0.3:
            layer["judge"] = _random_agent(rng, "judge", models)
        layers.append(layer)
    return GraphSpec.model_validate(
        {
            "name": "fuzz",
            "description": rng.choice(["", "Solve math."]),
            "answer_format": rng.choice(["raw", "last_number"]),
            "models": {m: "local" if m == "default" else "openai:gpt-4o-mini" for m in models},
            "layers": layers,
        }
    )


# Random valid specs, built once (drawing whole specs with hypothesis costs more than the
# property itself), plus the starter specs.
_rng = random.Random(20240601)
SPECS = [*STARTERS, *(_random_spec(_rng) for _ in range(200))]


# -- patches ---------------------------------------------------------------------------------
# Strategies are built once (module level, or once per spec): hypothesis validates and labels
# every new strategy object, which costs more than the property being tested.


def one_in(odds: int) -> st.SearchStrategy[bool]:
    """True about one time in ``odds``. (Hypothesis favours the ends of integer ranges, so the
    rare outcome is a value from the middle of the range.)"""
    return st.integers(0, odds - 1).map(lambda i: i == odds // 2)


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int
) -> st.SearchStrategy[Any]:
    """``good``, but one time in ``odds`` ``bad``."""
    return one_in(odds).flatmap(lambda rare: bad if rare else good)


RARE20, RARE15, RARE10, RARE6, RARE4 = (one_in(n) for n in (20, 15, 10, 6, 4))
AGENTS_PER_LAYER = mostly(st.integers(1, 2), st.just(0), 8)
OPS_PER_PATCH = mostly(st.integers(1, 2), st.integers(3, 5), 4)
# field of an op: usually drawn from its strategy, sometimes missing or of a wrong type
FIELD_FATE = st.integers(0, 39).map(lambda i: {19: "missing", 20: "junk"}.get(i, "drawn"))
# the patch: usually a dict, sometimes JSON text (maybe damaged), a Patch, or junk
PATCH_FORM = st.integers(0, 19).map(
    lambda i: {8: "junk", 9: "json", 10: "damaged_json", 11: "model"}.get(i, "dict")
)
texts_or_junk = mostly(texts, junk, 15)
# Single draws from weighted lists where possible: each draw costs more than the property.
prose = st.sampled_from(
    ["Solve it.", "Check units.", "é 中文 🙂", "x" * 500, "null", "line\nbreak"] * 3 + ["", " "]
)
WRONG_NAMES: list[Any] = [
    "zz9",
    "Solve",
    "solve ",
    "",
    " a",
    "a b",
    "1x",
    "input",
    "x" * 70,
    None,
    3,
    [],
    {},
]
AGENT_IDS = mostly(st.one_of(st.sampled_from(["a", "b", "solver"]), pattern_names), bad_names, 8)
AGENT_EXTRAS = (
    ("temperature", st.one_of(st.floats(-1, 3), junk)),
    ("max_tokens", st.one_of(st.integers(-5, 40000), junk)),
    ("model", st.sampled_from(["default", "fast", "nope", ""])),
)
AGGREGATOR_VALUES = mostly(st.sampled_from(AGGREGATORS), texts, 8)
LAYER_TOOLS = st.lists(mostly(st.sampled_from(TOOLS), texts, 8), max_size=2)
LAYER_CANDIDATES = st.lists(mostly(st.sampled_from(PLAIN_AGGREGATORS), st.just("x"), 8), max_size=3)
LAYER_INT_FIELDS = st.sampled_from(["rounds", "max_tool_calls"])
LAYER_INTS = st.one_of(st.integers(-2, 40), junk)
CANDIDATE_LISTS = st.one_of(
    st.none(), st.lists(st.sampled_from([*AGGREGATORS, "nope"]), max_size=3)
)
TOOL_LISTS = st.lists(mostly(st.sampled_from(TOOLS), texts, 8), max_size=3)
POSITIONS = st.one_of(st.none(), st.integers(-2, 5))
PARAMS = mostly(
    st.sampled_from(["temperature", "max_tokens", "model"]), st.sampled_from(["top_p", ""]), 8
)
PARAM_VALUES = st.one_of(
    st.floats(-1, 3),
    st.integers(-5, 40000),
    st.sampled_from(["default", "fast", "nope"]),
    st.none(),
    junk,
)
OP_NAMES = st.sampled_from(OPS * 7 + ["", "set-prompt", "SetPrompt"])
JUNK_OP_KEYS = st.sampled_from(["agents", "prompts", "x", "op2"])
JUNK_PATCH_KEYS = st.sampled_from(["op", "Ops", "extra"])
DAMAGE = st.sampled_from(["", "}", "]", ",", "\x00", "NaN"])


class Names:
    """A spec's names as strategies: mostly real names, sometimes plausible or invalid ones."""

    def __init__(self, spec: GraphSpec) -> None:
        layers = [layer.name for layer in spec.layers]
        agents = sorted({a.id for layer in spec.layers for a in layer.agents})
        self.layer = st.sampled_from(layers * (40 // len(layers)) + WRONG_NAMES)
        self.agent = st.sampled_from(agents * (40 // len(agents)) + WRONG_NAMES)
        self.new_layer = st.one_of(pattern_names, self.layer)
        self.after = st.one_of(st.none(), self.layer)
        self.inputs = st.lists(self.layer, max_size=2)


NAMES: dict[str, Names] = {}


def names_of(spec: GraphSpec) -> Names:
    key = spec.fingerprint
    if key not in NAMES:
        NAMES[key] = Names(spec)
    return NAMES[key]


def new_agent(draw: st.DrawFn) -> Any:
    doc: dict[str, Any] = {
        "id": draw(AGENT_IDS),
        "role": draw(prose),
        "prompt": draw(prose),
    }
    for key, values in AGENT_EXTRAS:
        if draw(RARE4):
            doc[key] = draw(values)
    return draw(junk) if draw(RARE10) else doc


def new_layer(draw: st.DrawFn, names: Names) -> Any:
    doc: dict[str, Any] = {
        "name": draw(names.new_layer),
        "aggregator": draw(AGGREGATOR_VALUES),
        "agents": [new_agent(draw) for _ in range(draw(AGENTS_PER_LAYER))],
    }
    if draw(RARE4):
        doc["inputs"] = draw(names.inputs)
    if draw(st.booleans()):
        doc["tools"] = draw(LAYER_TOOLS)
    if draw(RARE4):
        doc["candidates"] = draw(LAYER_CANDIDATES)
    if draw(RARE6):
        doc[draw(LAYER_INT_FIELDS)] = draw(LAYER_INTS)
    return draw(junk) if draw(RARE10) else doc


def new_op(draw: st.DrawFn, spec: GraphSpec) -> Any:
    """One op: mostly well-formed with names from the spec; often wrong in one way or more."""
    kind = draw(OP_NAMES)
    n = names_of(spec)
    by_kind: dict[str, dict[str, st.SearchStrategy[Any] | Callable[[], Any]]] = {
        "set_prompt": {"layer": n.layer, "agent": n.agent, "prompt": prose},
        "set_role": {"layer": n.layer, "agent": n.agent, "role": prose},
        "set_aggregator": {
            "layer": n.layer,
            "aggregator": AGGREGATOR_VALUES,
            "candidates": CANDIDATE_LISTS,
        },
        "add_agent": {"layer": n.layer, "agent": lambda: new_agent(draw), "position": POSITIONS},
        "remove_agent": {"layer": n.layer, "agent": n.agent},
        "add_layer": {"after": n.after, "layer": lambda: new_layer(draw, n)},
        "remove_layer": {"layer": n.layer},
        "set_tools": {"layer": n.layer, "tools": TOOL_LISTS},
        "set_inputs": {
            "layer": n.layer,
            "inputs": st.one_of(st.none(), st.lists(n.layer, max_size=3)),
        },
        "set_agent_param": {
            "layer": n.layer,
            "agent": n.agent,
            "param": PARAMS,
            "value": PARAM_VALUES,
        },
    }
    fields = by_kind.get(kind, {"layer": n.layer})
    doc: dict[str, Any] = {"op": kind}
    for key, value in fields.items():
        fate = draw(FIELD_FATE)
        if fate == "junk":
            doc[key] = draw(junk)
        elif fate == "drawn":
            doc[key] = value() if callable(value) else draw(value)
    if draw(RARE15):
        doc[draw(JUNK_OP_KEYS)] = draw(junk)  # a junk field
    return doc


def new_patch(draw: st.DrawFn, spec: GraphSpec) -> Any:
    """A patch document in one of several forms, occasionally of the wrong type altogether."""
    n_ops = 0 if draw(RARE20) else draw(OPS_PER_PATCH)
    doc: dict[str, Any] = {"ops": [new_op(draw, spec) for _ in range(n_ops)]}
    if draw(st.booleans()):
        doc["rationale"] = draw(texts_or_junk)
    if draw(RARE15):
        doc[draw(JUNK_PATCH_KEYS)] = draw(junk)
    form = draw(PATCH_FORM)
    if form == "junk":
        return draw(junk)  # not a patch at all
    if form in ("json", "damaged_json"):
        try:
            text = json.dumps(doc)
        except ValueError:
            return doc
        if form == "damaged_json":
            cut = draw(st.integers(0, len(text)))
            text = text[:cut] + draw(DAMAGE)
        return text
    if form == "model":
        try:
            return Patch.model_validate(doc)
        except ValueError:
            return doc
    return doc


# -- the properties ------------------------------------------------------------------------


def check(spec: GraphSpec, patch: Any) -> GraphSpec | PatchError:
    """Apply, check the contract, and return the result or the error."""
    before, fingerprint = spec.model_dump(mode="json"), spec.fingerprint
    # (a Patch's repr shows every field; dumping one that was edited badly can fail)
    patch_before = repr(patch) if isinstance(patch, Patch) else copy.deepcopy(patch)
    try:
        out: GraphSpec | PatchError = apply_patch(spec, patch)
    except PatchError as exc:
        out = exc
        assert str(exc) and exc.reason
        if exc.op_index is not None:
            assert exc.op is not None and str(exc).startswith(f"op {exc.op_index} ({exc.op})")
    # anything else propagates and fails the test
    assert spec.model_dump(mode="json") == before and spec.fingerprint == fingerprint
    after = repr(patch) if isinstance(patch, Patch) else patch
    assert _same(after, patch_before), "apply_patch mutated the patch it was given"
    if isinstance(out, GraphSpec):
        assert out is not spec
        assert GraphSpec.model_validate(out.model_dump(mode="json")) == out
    return out


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself (junk holds NaNs)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(
        b, sort_keys=True, default=repr
    )


def check_composition(spec: GraphSpec, patch: Any, out: GraphSpec | PatchError) -> None:
    """All-or-nothing and op-by-op composition, for patches that parsed."""
    try:
        parsed = patch if isinstance(patch, Patch) else Patch.model_validate(patch)
    except ValueError:
        return
    if isinstance(out, PatchError):
        index = out.op_index
        if index is None:  # only a patch that does not parse fails as a whole
            raise AssertionError(f"a parsed patch failed without an op index: {out}")
        if index > 0:
            apply_patch(spec, Patch(ops=parsed.ops[:index]))  # the prefix applies
        try:
            apply_patch(spec, Patch(ops=parsed.ops[: index + 1]))
        except PatchError as again:
            assert again.op_index == index and again.reason == out.reason
        else:
            raise AssertionError("the op named by PatchError applies after its prefix")
        return
    current = spec
    for op in parsed.ops:
        current = apply_patch(current, Patch(ops=[op]))
    assert current == out and current.fingerprint == out.fingerprint


@st.composite
def random_cases(draw: st.DrawFn) -> tuple[GraphSpec, Any]:
    # one composite for the whole case: its `draw` is cheaper than `st.data()`'s
    spec = draw(st.sampled_from(SPECS))
    return spec, new_patch(draw, spec)


@fuzz(1500)
@given(case=random_cases())
def test_random_patches_on_random_specs_give_a_valid_spec_or_patch_error(case):
    spec, patch = case
    out = check(spec, patch)
    check_composition(spec, patch, out)


def mutated_patch(draw: st.DrawFn, spec: GraphSpec) -> Any:
    """A valid patch of ``spec``, then broken in small ways."""
    layer = draw(st.sampled_from(spec.layers))
    agent = draw(st.sampled_from(layer.agents))
    good: list[dict[str, Any]] = [
        {"op": "set_prompt", "layer": layer.name, "agent": agent.id, "prompt": "New."},
        {"op": "set_role", "layer": layer.name, "agent": agent.id, "role": "New role"},
        {"op": "set_aggregator", "layer": layer.name, "aggregator": "parallel_vote"},
        {
            "op": "add_agent",
            "layer": layer.name,
            "agent": {"id": "extra", "role": "r", "prompt": "p"},
        },
        {"op": "remove_agent", "layer": layer.name, "agent": agent.id},
        {
            "op": "add_layer",
            "after": layer.name,
            "layer": {"name": "verify", "agents": [{"id": "v", "role": "r", "prompt": "p"}]},
        },
        {"op": "remove_layer", "layer": layer.name},
        {"op": "set_tools", "layer": layer.name, "tools": TOOLS[:1]},
        {
            "op": "set_agent_param",
            "layer": layer.name,
            "agent": agent.id,
            "param": "temperature",
            "value": 0.3,
        },
    ]
    picked = draw(st.lists(st.sampled_from(good), min_size=1, max_size=4))
    ops_: list[dict[str, Any]] = [copy.deepcopy(op) for op in picked]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(ops_))
        if not op:
            continue
        key = draw(st.sampled_from(sorted(op)))
        how = draw(st.integers(0, 4))
        if how == 0:
            del op[key]
        elif how == 1:
            op[key] = draw(junk)
        elif how == 2:
            op[draw(st.sampled_from(["x", "agents", key + "s"]))] = draw(junk)
        elif how == 3 and isinstance(op[key], str):
            op[key] = draw(st.sampled_from([op[key].upper(), op[key] + " ", "", "nope"]))
        elif how == 4 and isinstance(op[key], dict) and op[key]:
            inner = op[key]
            inner[draw(st.sampled_from(sorted(inner)))] = draw(junk)
    return {"rationale": "mutated", "ops": ops_}


@st.composite
def mutated_cases(draw: st.DrawFn) -> tuple[GraphSpec, Any]:
    spec = draw(st.sampled_from(STARTERS or SPECS))
    return spec, mutated_patch(draw, spec)


@fuzz(1000)
@given(case=mutated_cases())
def test_mutated_patches_on_the_starter_specs_give_a_valid_spec_or_patch_error(case):
    spec, patch = case
    out = check(spec, patch)
    check_composition(spec, patch, out)
    if isinstance(out, GraphSpec):  # the JSON form of the same document gives the same spec
        try:
            text = json.dumps(patch, allow_nan=False)
        except ValueError:
            return
        assert check(spec, text) == out


@st.composite
def edited_patches(draw: st.DrawFn) -> tuple[GraphSpec, Any]:
    """``Patch`` objects changed after validation (pydantic does not check assignments) or
    built with ``model_construct``: what a review callback editing a patch might hand back."""
    spec = draw(st.sampled_from(SPECS))
    doc = new_patch(draw, spec) if draw(RARE4) else mutated_patch(draw, spec)
    try:
        patch = doc if isinstance(doc, Patch) else Patch.model_validate(doc)
    except ValueError:
        return spec, Patch.model_construct(ops=draw(st.lists(junk, max_size=2)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.integers(0, 3))
        if how == 0 or not patch.ops:
            cast(list[Any], patch.ops).append(draw(junk))
        elif how == 1:
            setattr(patch, "rationale", draw(junk))  # noqa: B010 - bypasses the type on purpose
        else:
            op = draw(st.sampled_from(patch.ops))
            if isinstance(op, BaseModel):
                field = draw(st.sampled_from(sorted(type(op).model_fields)))
                setattr(op, field, draw(st.one_of(junk, prose, WRONG_NAMES_ST)))
    return spec, patch


WRONG_NAMES_ST = st.sampled_from(WRONG_NAMES)


@fuzz(500)
@given(case=edited_patches())
def test_edited_patch_objects_give_a_valid_spec_or_patch_error(case):
    spec, patch = case
    out = check(spec, patch)
    if isinstance(out, GraphSpec):  # it applied: the edit left a valid patch behind
        assert apply_patch(spec, Patch.model_validate(patch.model_dump())) == out
