"""Property tests: thousands of random and mutated spec documents.

Properties:
- ``parse_spec`` (YAML and JSON text) returns a ``GraphSpec`` or raises ``SpecError``, never
  anything else;
- every spec that loads compiles with a scripted model, and survives a YAML and a JSON round
  trip with the same fingerprint;
- specs that are valid by construction are accepted (validation is not over-strict).
"""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ann_langgraph import GraphSpec, SpecError, aggregator_names, parse_spec, tool_names
from ann_langgraph.compile import compile_graph
from ann_langgraph.spec import ANSWER_FORMATS, RESERVED_LAYER_NAMES
from ann_langgraph.testing import ScriptedChatModel

ROOT = Path(__file__).resolve().parent.parent
STARTER_TEXTS = {
    p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "graphs").glob("*.yaml"))
}
STARTER_DOCS = {name: yaml.safe_load(text) for name, text in STARTER_TEXTS.items()}

AGGREGATORS = sorted(aggregator_names())
TOOLS = sorted(tool_names())
MODEL = ScriptedChatModel(default="ok")


def fuzz(max_examples: int) -> settings:
    """Many examples, no per-example deadline (compiling takes tens of milliseconds)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# -- building blocks -----------------------------------------------------------------------------
# Every field is valid most of the time and wrong (bad value, wrong type, missing, duplicated,
# dangling reference, stray key) a small part of the time, so that a good share of the documents
# load (and get compiled) while the rest explore one or a few problems at a time.

RARE = 60  # one field in RARE is wrong


def one_in(odds: int) -> st.SearchStrategy[bool]:
    """True about one time in ``odds``. (Hypothesis favours the ends of integer ranges, so the
    rare outcome is a value from the middle of the range.)"""
    return st.integers(0, odds - 1).map(lambda i: i == odds // 2)


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = RARE
) -> st.SearchStrategy[Any]:
    """``good``, but one time in ``odds`` ``bad``."""
    return one_in(odds).flatmap(lambda rare: bad if rare else good)


VALID_NAMES = [
    "a",
    "b",
    "c",
    "solve",
    "plan",
    "x1",
    "layer-2",
    "Agent_3",
    "judge",
    "steps",
    "input2",
]
junk_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
junk = st.recursive(
    junk_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def maybe_junk(strategy: st.SearchStrategy[Any], odds: int = RARE) -> st.SearchStrategy[Any]:
    """Mostly ``strategy``; one time in ``odds`` a random value of any type."""
    return mostly(strategy, junk, odds)


bad_names = st.one_of(
    st.sampled_from([*sorted(RESERVED_LAYER_NAMES), "", " a", "a b", "1x", "a:b", "_x", "x" * 70]),
    st.text(max_size=10),
)
# Cheaper than st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,8}").
_NAME_CHARS = string.ascii_letters + string.digits + "_-"
pattern_names = st.tuples(
    st.sampled_from(string.ascii_letters), st.text(alphabet=_NAME_CHARS, max_size=8)
).map("".join)
good_names = mostly(st.sampled_from(VALID_NAMES), pattern_names, odds=4)
names = mostly(good_names, bad_names)
aggregator_names_st = mostly(
    st.sampled_from(AGGREGATORS), st.sampled_from(["junk", "", "Dynamic", "parallel-vote", "vote"])
)
candidate_lists = mostly(
    st.lists(
        st.sampled_from([a for a in AGGREGATORS if a != "dynamic"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    st.lists(aggregator_names_st, max_size=3),  # may be empty, hold 'dynamic', duplicates, junk
    odds=RARE // 3,
)
tool_lists = mostly(
    st.lists(st.sampled_from(TOOLS), max_size=2, unique=True),
    st.lists(st.sampled_from([*TOOLS, "shell", "", "Calculator"]), max_size=3),
)
model_strings = mostly(st.sampled_from(["local", "openai:gpt-4o-mini"]), st.sampled_from(["", " "]))
model_names = mostly(st.sampled_from(["default", "fast"]), st.sampled_from(["gpt5", "", "Default"]))
# Strings that YAML and JSON treat specially, as roles/prompts/descriptions (one draw each).
TRICKY_TEXT = [
    "Solve it.",
    "null",
    "~",
    "yes",
    "no",
    "on",
    "1e3",
    "0x1F",
    "-",
    "- x",
    ": x",
    "a: b",
    "#x",
    "&a",
    "*a",
    "!!int 3",
    "'",
    '"',
    "{}",
    "[]",
    "|",
    ">",
    "%YAML",
    "---",
    "...",
    " lead",
    "trail ",
    "line\nbreak",
    "a\r\nb",
    "tab\tx",
    "\x85nel",
    "\u2028ls",
    "\ufeffbom",
    "é ü ß 中文 🙂",
    "\x1b[31m",
    "\\boxed{1}",
    "{{var}}",
    "x" * 300,
]
text_values = mostly(st.sampled_from(TRICKY_TEXT), st.text(max_size=8), odds=4)
nonempty_text = mostly(text_values.filter(bool), st.just(""))


@st.composite
def loose_dict(
    draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]], required: set[str]
) -> dict[str, Any]:
    """A mapping in random key order with random optional keys; rarely a required key is
    missing or a stray key (typo) is added."""
    out: dict[str, Any] = {}
    for key, strategy in fields.items():
        keep = not draw(one_in(RARE)) if key in required else draw(st.booleans())
        if keep:
            out[key] = draw(strategy)
    if draw(one_in(RARE)):
        out[draw(st.sampled_from(["agent", "layer", "temprature", "x", ""]))] = draw(junk)
    keys = draw(st.permutations(list(out)))
    return {k: out[k] for k in keys}


agents = loose_dict(
    {
        "id": maybe_junk(names),
        "role": maybe_junk(nonempty_text),
        "prompt": maybe_junk(nonempty_text),
        "model": maybe_junk(model_names),
        "temperature": maybe_junk(mostly(st.floats(0, 2), st.floats(-1, 3))),
        "max_tokens": maybe_junk(mostly(st.integers(1, 32768), st.integers(-5, 40000))),
    },
    {"id", "role", "prompt"},
)


def _unique_ids(agent_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for i, agent in enumerate(agent_list):
        if isinstance(agent.get("id"), str):
            if agent["id"] in seen:
                agent["id"] = f"{agent['id'][:50]}{i}"
            seen.add(agent["id"])
    return agent_list


agent_lists = mostly(
    st.lists(agents, min_size=1, max_size=3).map(_unique_ids),
    st.lists(agents, max_size=3),  # may be empty or repeat ids
    odds=RARE // 3,
)


@st.composite
def layers(draw: st.DrawFn, pool: list[str], index: int) -> dict[str, Any]:
    """Layer ``index`` of a document whose layer names are mostly ``pool``."""
    own = pool[index] if index < len(pool) else draw(names)
    earlier = pool[:index]
    inputs = mostly(
        st.lists(st.sampled_from(earlier), max_size=len(earlier), unique=True)
        if earlier
        else st.just([]),
        st.lists(st.sampled_from([*pool, "ghost", own]), max_size=3),  # forward, self, unknown, dup
        odds=RARE // 3,
    )
    aggregator = draw(maybe_junk(aggregator_names_st))
    fields = {
        "name": maybe_junk(mostly(st.just(own), st.sampled_from(pool))),
        "aggregator": st.just(aggregator),
        "agents": maybe_junk(agent_lists),
        "inputs": maybe_junk(inputs),
        "candidates": maybe_junk(candidate_lists),
        "tools": maybe_junk(tool_lists),
        "max_tool_calls": maybe_junk(mostly(st.integers(0, 32), st.integers(-1, 40))),
        "rounds": maybe_junk(mostly(st.integers(1, 10), st.integers(0, 12))),
        "judge": maybe_junk(agents),
    }
    layer = draw(loose_dict(fields, {"name", "agents"}))
    if aggregator == "dynamic" and "candidates" not in layer and not draw(one_in(RARE)):
        layer["candidates"] = draw(candidate_lists)
    return layer


@st.composite
def spec_docs(draw: st.DrawFn) -> dict[str, Any]:
    """Structurally plausible spec documents; many load, the rest are wrong in a few places."""
    pool = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    n = draw(mostly(st.just(len(pool)), st.integers(0, 5)))
    fields = {
        "name": maybe_junk(nonempty_text),
        "description": maybe_junk(text_values),
        "answer_format": maybe_junk(mostly(st.sampled_from(ANSWER_FORMATS), st.just("essay"))),
        "models": maybe_junk(
            st.tuples(
                st.dictionaries(model_names, model_strings, max_size=2),
                mostly(st.just({"default": "local"}), st.just({})),
            ).map(lambda pair: {**pair[1], **pair[0]})
        ),
        "layers": maybe_junk(st.tuples(*(layers(pool, i) for i in range(n))).map(list)),
    }
    return draw(loose_dict(fields, {"name", "layers"}))


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Specs that follow every rule: the validator must accept them and they must compile."""
    n = draw(st.integers(1, 5))
    layer_names = draw(
        st.lists(
            pattern_names.filter(lambda s: s not in RESERVED_LAYER_NAMES),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    models = {"default": "local", **({"fast": "openai:gpt-4o-mini"} if draw(st.booleans()) else {})}
    model_choice = st.sampled_from([None, *models])

    def agent_list(min_size: int = 1) -> st.SearchStrategy[list[dict[str, Any]]]:
        ids = st.lists(pattern_names, min_size=min_size, max_size=4, unique=True)
        return ids.map(lambda xs: [{"id": x, "role": f"r {x}", "prompt": f"p {x}"} for x in xs])

    out_layers = []
    for i, name in enumerate(layer_names):
        layer: dict[str, Any] = {"name": name, "agents": draw(agent_list())}
        for agent in layer["agents"]:
            model = draw(model_choice)
            if model is not None:
                agent["model"] = model
            if draw(st.booleans()):
                agent["temperature"] = draw(st.floats(0, 2))
            if draw(st.booleans()):
                agent["max_tokens"] = draw(st.integers(1, 32768))
        agg = draw(st.sampled_from(AGGREGATORS))
        layer["aggregator"] = agg
        if agg == "dynamic" or draw(st.integers(0, 3)) == 0:
            pool = [a for a in AGGREGATORS if a != "dynamic"]
            layer["candidates"] = draw(
                st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True)
            )
        if draw(st.booleans()):
            layer["tools"] = draw(
                st.lists(st.sampled_from(TOOLS), max_size=len(TOOLS), unique=True)
            )
        if i > 0 and draw(st.booleans()):
            layer["inputs"] = draw(
                st.lists(st.sampled_from(layer_names[:i]), max_size=i, unique=True)
            )
        elif i == 0 and draw(st.integers(0, 4)) == 0:
            layer["inputs"] = []
        if draw(st.booleans()):
            layer["rounds"] = draw(st.integers(1, 10))
        if draw(st.booleans()):
            layer["max_tool_calls"] = draw(st.integers(0, 32))
        if draw(st.integers(0, 3)) == 0:
            layer["judge"] = {"id": "judge", "role": "judge", "prompt": "pick"}
        out_layers.append(layer)
    return {
        "name": draw(st.text(min_size=1, max_size=30)),
        "description": draw(st.text(max_size=40)),
        "answer_format": draw(st.sampled_from(ANSWER_FORMATS)),
        "models": models,
        "layers": out_layers,
    }


# -- mutations of the starter specs --------------------------------------------------------------


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out = [(path, value)] if isinstance(value, dict | list) else []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_containers(v, (*path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_containers(v, (*path, i)))
    return out


def _swap_type(value: Any) -> Any:
    if isinstance(value, str):
        return [value] if value else 0
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return "none"


@st.composite
def mutated_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(STARTER_DOCS[draw(st.sampled_from(sorted(STARTER_DOCS)))])
    for _ in range(draw(st.integers(1, 4))):
        containers = _containers(doc)
        _, target = containers[draw(st.integers(0, len(containers) - 1))]
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        op = draw(st.sampled_from(["drop", "junk", "swap", "dup", "insert", "rename", "steal"]))
        if not keys:
            op = "insert"
        key = draw(st.sampled_from(keys)) if keys else None
        if op == "drop":
            del target[key]
        elif op == "junk":
            target[key] = draw(junk)
        elif op == "swap":
            target[key] = _swap_type(target[key])
        elif op == "dup":
            if isinstance(target, list):
                target.insert(key, copy.deepcopy(target[key]))
            else:
                target[key + "_copy"] = copy.deepcopy(target[key])
        elif op == "insert":
            if isinstance(target, list):
                target.append(draw(junk))
            else:
                target[draw(st.text(max_size=8))] = draw(junk)
        elif op == "rename" and isinstance(target, dict):
            target[draw(names)] = target.pop(key)
        elif op == "steal":  # a value from elsewhere in the document, e.g. a layer name as a tool
            _, donor = containers[draw(st.integers(0, len(containers) - 1))]
            values = list(donor.values()) if isinstance(donor, dict) else list(donor)
            if values:
                target[key] = copy.deepcopy(draw(st.sampled_from(values)))
    return doc


@st.composite
def corrupted_texts(draw: st.DrawFn) -> tuple[str, str]:
    """A starter spec as YAML or JSON text, with random character-level damage."""
    fmt = draw(st.sampled_from(["yaml", "json"]))
    name = draw(st.sampled_from(sorted(STARTER_TEXTS)))
    text = STARTER_TEXTS[name] if fmt == "yaml" else json.dumps(STARTER_DOCS[name], indent=2)
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 30)))
        op = draw(
            st.sampled_from(["delete", "insert", "replace", "dup_line", "swap_lines", "indent"])
        )
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            piece = draw(
                st.one_of(
                    st.text(max_size=10),
                    st.sampled_from(
                        [
                            ":",
                            "- ",
                            "\n",
                            "  ",
                            "\t",
                            "{",
                            "}",
                            "[",
                            "]",
                            '"',
                            "'",
                            "&a ",
                            "*a",
                            "!!str ",
                            "#",
                            "---\n",
                            "? ",
                            "|\n",
                            "\x00",
                            "\\u0000",
                            "<<: *a\n",
                            ",",
                            "null",
                            "1e999",
                        ]
                    ),
                )
            )
            text = text[:i] + piece + text[i:]
        elif op == "replace":
            text = text[:i] + draw(st.text(max_size=5)) + text[j:]
        else:
            lines = text.split("\n")
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(a, lines[a])
            elif op == "swap_lines":
                lines[a], lines[b] = lines[b], lines[a]
            else:
                lines[a] = "  " + lines[a]
            text = "\n".join(lines)
    return fmt, text


# -- the properties ------------------------------------------------------------------------------


Outcome = GraphSpec | list[tuple[str, str]]


def _parse(text: str, fmt: str) -> Outcome:
    """The spec, or the SpecError's errors; any other exception fails the test."""
    try:
        spec = parse_spec(text, format=fmt)  # type: ignore[arg-type]
    except SpecError as exc:
        assert exc.errors, "a SpecError must say what is wrong"
        for path, reason in exc.errors:
            assert isinstance(path, str) and isinstance(reason, str) and reason
        return exc.errors
    assert isinstance(spec, GraphSpec)
    return spec


def _check_loaded(spec: GraphSpec, graph: Any = None) -> None:
    """A spec that loads must compile and round-trip through YAML and JSON unchanged."""
    if graph is None:
        graph = compile_graph(spec, models=MODEL)
    assert set(dict(graph.get_subgraphs())) == {layer.name for layer in spec.layers}
    for text, fmt in ((spec.to_yaml(), "yaml"), (spec.to_json(), "json")):
        again = parse_spec(text, format=fmt)  # type: ignore[arg-type]
        assert again == spec
        assert again.fingerprint == spec.fingerprint


def _to_texts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    # allow_unicode=False: PyYAML's unicode output does not read back NEL (U+0085) unchanged.
    return [(yaml.safe_dump(doc, sort_keys=False), "yaml"), (json.dumps(doc), "json")]


def _check_document(doc: dict[str, Any]) -> None:
    """The same document as YAML text, JSON text and a dict: one outcome, never a crash."""
    outcomes = [_parse(text, fmt) for text, fmt in _to_texts(doc)]
    assert outcomes[0] == outcomes[1], "YAML and JSON disagree about the same document"
    try:
        graph = compile_graph(doc, models=MODEL)
    except SpecError as exc:
        assert exc.errors == outcomes[0]
        return
    spec = outcomes[0]
    assert isinstance(spec, GraphSpec), "compile_graph accepted a document parse_spec rejects"
    _check_loaded(spec, graph)


@fuzz(300)
@given(spec_docs())
def test_random_documents_parse_or_raise_spec_error(doc):
    _check_document(doc)


@fuzz(500)
@given(mutated_docs())
def test_mutated_starter_specs_parse_or_raise_spec_error(doc):
    _check_document(doc)


@fuzz(1000)
@given(corrupted_texts())
def test_corrupted_starter_texts_parse_or_raise_spec_error(fmt_and_text):
    fmt, text = fmt_and_text
    spec = _parse(text, fmt)
    if isinstance(spec, GraphSpec):
        _check_loaded(spec)


@fuzz(1500)
@given(st.text(max_size=200), st.sampled_from(["yaml", "json"]))
def test_arbitrary_text_parses_or_raises_spec_error(text, fmt):
    spec = _parse(text, fmt)
    if isinstance(spec, GraphSpec):
        _check_loaded(spec)


@fuzz(100)
@given(valid_specs())
def test_valid_by_construction_specs_load_and_compile(doc):
    outcomes = [_parse(text, fmt) for text, fmt in _to_texts(doc)]
    spec = outcomes[0]
    assert isinstance(spec, GraphSpec), f"a valid spec was rejected: {spec}"
    assert outcomes[1] == spec
    assert [layer.name for layer in spec.layers] == [layer["name"] for layer in doc["layers"]]
    _check_loaded(spec)
    # Key order never matters to the fingerprint.
    shuffled = json.loads(json.dumps(doc), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert (
        GraphSpec.model_validate(shuffled).fingerprint == GraphSpec.model_validate(doc).fingerprint
    )


@pytest.mark.parametrize("name", sorted(STARTER_DOCS))
def test_mutation_strategies_start_from_valid_specs(name):
    # Sanity check of the fuzzing base: unmutated starters load and compile.
    spec = parse_spec(STARTER_TEXTS[name])
    _check_loaded(spec)
    assert _containers(STARTER_DOCS[name])
