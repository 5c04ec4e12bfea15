"""The spec format: round trips, fingerprint, file io, precise errors, starter specs, CLI, schema."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from ann_langgraph import GraphSpec, SpecError, load_spec, parse_spec, save_spec
from ann_langgraph.cli import app
from ann_langgraph.spec import RESERVED_LAYER_NAMES

ROOT = Path(__file__).resolve().parent.parent
STARTER_SPECS = sorted((ROOT / "graphs").glob("*.yaml"))

runner = CliRunner()


def _agent(agent_id: str, **kw: Any) -> dict[str, Any]:
    return {"id": agent_id, "role": f"role of {agent_id}", "prompt": f"prompt of {agent_id}", **kw}


def base_doc() -> dict[str, Any]:
    """A valid spec using every feature: inputs, dynamic routing, tools, models, judge."""
    return {
        "name": "base",
        "description": "A task.",
        "answer_format": "last_number",
        "models": {"default": "local", "fast": "openai:gpt-4o-mini"},
        "layers": [
            {"name": "understand", "aggregator": "sequential_cot", "agents": [_agent("reader")]},
            {
                "name": "solve",
                "aggregator": "parallel_vote",
                "tools": ["calculator"],
                "agents": [_agent("a", temperature=0.7), _agent("b", model="fast", max_tokens=64)],
                "judge": _agent("judge"),
            },
            {
                "name": "answer",
                "inputs": ["understand", "solve"],
                "aggregator": "dynamic",
                "candidates": ["sequential_cot", "parallel_vote"],
                "agents": [_agent("writer")],
            },
        ],
    }


def _reorder(value: Any) -> Any:
    """The same content with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(v) for v in value]
    return value


def _has_error(errors: list[tuple[str, str]], path: str, reason: str) -> bool:
    return any(p == path and re.search(reason, r, re.IGNORECASE) for p, r in errors)


# -- round trips and the fingerprint -----------------------------------------------------------


def test_base_doc_is_valid():
    spec = GraphSpec.model_validate(base_doc())
    assert [layer.name for layer in spec.layers] == ["understand", "solve", "answer"]
    assert spec.layer_inputs(0) == [] and spec.layer_inputs(1) == ["understand"]
    assert spec.layer_inputs(2) == ["understand", "solve"]


@pytest.mark.parametrize("path", STARTER_SPECS, ids=lambda p: p.name)
def test_yaml_json_yaml_round_trip_keeps_fingerprint(path):
    spec = parse_spec(path.read_text(encoding="utf-8"))
    as_json = spec.to_json()
    assert isinstance(json.loads(as_json), dict)
    from_json = parse_spec(as_json, format="json")
    as_yaml = from_json.to_yaml()
    again = parse_spec(as_yaml)
    assert from_json == spec and again == spec
    assert spec.fingerprint == from_json.fingerprint == again.fingerprint
    # And the text is stable after one round trip.
    assert again.to_yaml() == as_yaml and again.to_json() == as_json


def test_fingerprint_is_a_short_stable_hex_string():
    spec = GraphSpec.model_validate(base_doc())
    assert re.fullmatch(r"[0-9a-f]{16}", spec.fingerprint)
    assert GraphSpec.model_validate(base_doc()).fingerprint == spec.fingerprint


def test_fingerprint_ignores_key_order():
    doc = base_doc()
    reordered = _reorder(doc)
    assert list(reordered) != list(doc)  # really reordered
    assert list(reordered["models"]) == ["fast", "default"]
    a, b = GraphSpec.model_validate(doc), GraphSpec.model_validate(reordered)
    assert a.fingerprint == b.fingerprint
    # Same through text: YAML keeps the document's key order, the fingerprint does not care.
    text_b = yaml.safe_dump(reordered, sort_keys=False)
    assert text_b != yaml.safe_dump(doc, sort_keys=False)
    assert parse_spec(text_b).fingerprint == a.fingerprint


def test_fingerprint_ignores_whether_defaults_are_spelled_out():
    doc = base_doc()
    explicit = copy.deepcopy(doc)
    explicit["layers"][0].update(tools=[], max_tool_calls=3, rounds=2, inputs=None)
    assert (
        GraphSpec.model_validate(explicit).fingerprint == GraphSpec.model_validate(doc).fingerprint
    )


@pytest.mark.parametrize(
    ("edit", "value"),
    [
        (("layers", 1, "agents", 0, "prompt"), "A different prompt."),
        (("layers", 1, "agents", 0, "role"), "another role"),
        (("layers", 1, "agents", 0, "temperature"), 0.2),
        (("layers", 1, "aggregator"), "debate"),
        (("description",), "Another task."),
        (("models", "fast"), "openai:gpt-4o"),
    ],
)
def test_fingerprint_changes_with_content(edit, value):
    doc = base_doc()
    before = GraphSpec.model_validate(doc).fingerprint
    target: Any = doc
    for key in edit[:-1]:
        target = target[key]
    target[edit[-1]] = value
    assert GraphSpec.model_validate(doc).fingerprint != before


def test_fingerprint_changes_when_a_prompt_changes_via_model_copy():
    spec = GraphSpec.model_validate(base_doc())
    layers = [layer.model_copy(deep=True) for layer in spec.layers]
    layers[0].agents[0] = layers[0].agents[0].model_copy(update={"prompt": "Changed."})
    changed = spec.model_copy(update={"layers": layers})
    assert changed.fingerprint != spec.fingerprint
    assert spec.layers[0].agents[0].prompt == "prompt of reader"  # original untouched


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".YAML", ".JSON"])
def test_save_and_load_by_suffix(tmp_path, suffix):
    spec = GraphSpec.model_validate(base_doc())
    path = save_spec(spec, tmp_path / "nested" / f"spec{suffix}")
    assert path.exists()
    text = path.read_text(encoding="utf-8")
    if suffix.lower() == ".json":
        assert json.loads(text)["name"] == "base"
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        assert yaml.safe_load(text)["name"] == "base"
        assert text.startswith("name: base\n")  # name first: readable
    loaded = load_spec(path)
    assert loaded == spec
    assert loaded.fingerprint == spec.fingerprint


def test_load_reads_json_by_suffix_not_by_content(tmp_path):
    spec = GraphSpec.model_validate(base_doc())
    path = tmp_path / "spec.json"
    path.write_text(spec.to_yaml(), encoding="utf-8")  # YAML text in a .json file
    with pytest.raises(SpecError, match="malformed JSON"):
        load_spec(path)
    # ... and any other suffix is read as YAML (JSON is YAML, so that works too).
    other = tmp_path / "spec.txt"
    other.write_text(spec.to_json(), encoding="utf-8")
    assert load_spec(other).fingerprint == spec.fingerprint


TRICKY_STRINGS = [
    "next\x85line",  # NEL: PyYAML's unicode output used to turn it into a space
    "line\u2028separator\u2029paragraph",
    "null",
    "yes",
    "1e3",
    "- item",
    "key: value",
    "# not a comment",
    "&anchor *alias",
    "  leading and trailing  ",
    "multi\nline\n\n  indented\n",
    "tab\there",
    "crlf\r\nx",
    "quotes ' and \"",
    "é ü 中文 🙂",
    "\ufeffbom",
    "\x1b[31mansi",
    "\\boxed{1}",
]


@pytest.mark.parametrize("text", TRICKY_STRINGS, ids=repr)
def test_yaml_and_json_round_trip_keep_every_string_exactly(tmp_path, text):
    doc = base_doc()
    doc["description"] = text
    doc["layers"][0]["agents"][0]["prompt"] = text
    doc["layers"][0]["agents"][0]["role"] = text
    spec = GraphSpec.model_validate(doc)
    again = parse_spec(spec.to_yaml())
    assert again.layers[0].agents[0].prompt == text and again.description == text
    assert again.fingerprint == spec.fingerprint
    assert parse_spec(spec.to_json(), format="json").fingerprint == spec.fingerprint
    assert load_spec(save_spec(spec, tmp_path / "s.yaml")).fingerprint == spec.fingerprint


def test_to_yaml_omits_defaults():
    spec = GraphSpec.model_validate(
        {"name": "m", "layers": [{"name": "l", "agents": [_agent("a")]}]}
    )
    data = yaml.safe_load(spec.to_yaml())
    assert data == {"name": "m", "layers": [{"name": "l", "agents": [_agent("a")]}]}


# -- errors: path + reason ---------------------------------------------------------------------


def _set(*path_and_value: Any):
    *path, value = path_and_value

    def edit(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _drop(*path: Any):
    def edit(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


def _dup_agent(doc: dict[str, Any]) -> None:
    doc["layers"][1]["agents"].append(_agent("a"))


# (case id, edit of base_doc(), expected path, reason regex)
SEMANTIC_CASES = [
    (
        "unknown aggregator",
        _set("layers", 1, "aggregator", "magic"),
        "layers[1].aggregator",
        r"unknown aggregator 'magic'.*parallel_vote",
    ),
    (
        "unknown candidate",
        _set("layers", 2, "candidates", ["sequential_cot", "wizard"]),
        "layers[2].candidates[1]",
        r"unknown aggregator 'wizard'",
    ),
    (
        "dynamic as candidate",
        _set("layers", 2, "candidates", ["dynamic"]),
        "layers[2].candidates[0]",
        r"'dynamic' cannot be a candidate",
    ),
    (
        "dynamic without candidates",
        _drop("layers", 2, "candidates"),
        "layers[2].candidates",
        r"dynamic layer needs candidates",
    ),
    (
        "dynamic with empty candidates",
        _set("layers", 2, "candidates", []),
        "layers[2].candidates",
        r"dynamic layer needs candidates",
    ),
    (
        "unknown tool",
        _set("layers", 1, "tools", ["calculator", "shell"]),
        "layers[1].tools[1]",
        r"unknown tool 'shell'.*calculator",
    ),
    (
        "duplicate layer name",
        _set("layers", 2, "name", "understand"),
        "layers[2].name",
        r"duplicate layer name 'understand'",
    ),
    ("duplicate agent id", _dup_agent, "layers[1].agents[2].id", r"duplicate agent id 'a'"),
    (
        "forward reference",
        _set("layers", 0, "inputs", ["answer"]),
        "layers[0].inputs[0]",
        r"'answer' is a later layer",
    ),
    (
        "self reference",
        _set("layers", 1, "inputs", ["understand", "solve"]),
        "layers[1].inputs[1]",
        r"cannot read itself",
    ),
    (
        "unknown input layer",
        _set("layers", 2, "inputs", ["ghost"]),
        "layers[2].inputs[0]",
        r"unknown layer 'ghost'",
    ),
    (
        "duplicate inputs",
        _set("layers", 2, "inputs", ["solve", "solve"]),
        "layers[2].inputs",
        r"duplicate input",
    ),
    (
        "unknown model",
        _set("layers", 0, "agents", 0, "model", "gpt5"),
        "layers[0].agents[0].model",
        r"unknown model name 'gpt5'",
    ),
    (
        "unknown judge model",
        _set("layers", 1, "judge", "model", "gpt5"),
        "layers[1].judge.model",
        r"unknown model name 'gpt5'",
    ),
    ("missing default model", _set("models", {"fast": "local"}), "models", r"no 'default' model"),
    ("empty model string", _set("models", "fast", "  "), "models.fast", r"non-empty"),
    *[
        (
            f"reserved layer name {name}",
            _set("layers", 0, "name", name),
            "layers[0].name",
            r"reserved",
        )
        for name in sorted(RESERVED_LAYER_NAMES)
    ],
]

# Problems pydantic's field types catch.
FIELD_CASES = [
    ("empty layers", _set("layers", []), "layers", r"at least 1 item"),
    ("missing layers", _drop("layers"), "layers", r"field required"),
    ("empty agents", _set("layers", 1, "agents", []), "layers[1].agents", r"at least 1 item"),
    (
        "temperature as a word",
        _set("layers", 1, "agents", 0, "temperature", "hot"),
        "layers[1].agents[0].temperature",
        r"valid number",
    ),
    (
        "temperature too high",
        _set("layers", 1, "agents", 0, "temperature", 5),
        "layers[1].agents[0].temperature",
        r"less than or equal to 2",
    ),
    (
        "negative max_tokens",
        _set("layers", 1, "agents", 1, "max_tokens", -1),
        "layers[1].agents[1].max_tokens",
        r"greater than or equal to 1",
    ),
    (
        "max_tokens as float",
        _set("layers", 1, "agents", 1, "max_tokens", 1.5),
        "layers[1].agents[1].max_tokens",
        r"valid integer",
    ),
    (
        "agents as a mapping",
        _set("layers", 0, "agents", {"id": "x"}),
        "layers[0].agents",
        r"valid list",
    ),
    ("layer as a string", _set("layers", 0, "just a string"), "layers[0]", r"valid dictionary"),
    (
        "tools as a string",
        _set("layers", 1, "tools", "calculator"),
        "layers[1].tools",
        r"valid list",
    ),
    ("name as a list", _set("name", ["x"]), "name", r"valid string"),
    ("empty name", _set("name", ""), "name", r"at least 1 character"),
    (
        "missing prompt",
        _drop("layers", 0, "agents", 0, "prompt"),
        "layers[0].agents[0].prompt",
        r"field required",
    ),
    (
        "empty role",
        _set("layers", 0, "agents", 0, "role", ""),
        "layers[0].agents[0].role",
        r"at least 1 character",
    ),
    ("unknown answer format", _set("answer_format", "essay"), "answer_format", r"last_number"),
    ("model table value not a string", _set("models", "fast", 3), "models.fast", r"valid string"),
    (
        "typo agent: for agents:",
        lambda d: d["layers"][0].update(agent=d["layers"][0].pop("agents")),
        "layers[0].agent",
        r"extra inputs are not permitted",
    ),
    (
        "typo layer: for layers:",
        lambda d: d.update(layer=d.pop("layers")),
        "layer",
        r"extra inputs are not permitted",
    ),
    (
        "unknown agent key",
        _set("layers", 0, "agents", 0, "temprature", 0.1),
        "layers[0].agents[0].temprature",
        r"extra inputs are not permitted",
    ),
    (
        "id with spaces",
        _set("layers", 0, "agents", 0, "id", "solver a"),
        "layers[0].agents[0].id",
        r"pattern",
    ),
    ("layer name with spaces", _set("layers", 0, "name", "my layer"), "layers[0].name", r"pattern"),
    (
        "id starting with a digit",
        _set("layers", 0, "agents", 0, "id", "1st"),
        "layers[0].agents[0].id",
        r"pattern",
    ),
    ("layer name with a colon", _set("layers", 0, "name", "a:b"), "layers[0].name", r"pattern"),
]

ALL_DOC_CASES = SEMANTIC_CASES + FIELD_CASES


def _bad_doc(edit) -> dict[str, Any]:
    doc = base_doc()
    edit(doc)
    return doc


@pytest.mark.parametrize(
    ("case", "edit", "path", "reason"), ALL_DOC_CASES, ids=[c[0] for c in ALL_DOC_CASES]
)
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_invalid_document_gives_spec_error_with_path_and_reason(case, edit, path, reason, fmt):
    doc = _bad_doc(edit)
    text = json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(SpecError) as info:
        parse_spec(text, format=fmt, source="bad.spec")
    exc = info.value
    assert isinstance(exc, ValueError)
    assert _has_error(exc.errors, path, reason), exc.errors
    # The message names the source, the path and the reason on one line.
    message = str(exc)
    assert message.startswith("bad.spec: ") and "\n" not in message
    assert f"{path}: " in message
    assert exc.source == "bad.spec"


@pytest.mark.parametrize(
    ("case", "edit", "path", "reason"), ALL_DOC_CASES, ids=[c[0] for c in ALL_DOC_CASES]
)
def test_model_validate_raises_validation_error_mapped_to_the_same_paths(case, edit, path, reason):
    doc = _bad_doc(edit)
    with pytest.raises(ValidationError) as info:
        GraphSpec.model_validate(doc)
    mapped = SpecError.from_validation_error(info.value, source="x")
    assert _has_error(mapped.errors, path, reason), mapped.errors
    with pytest.raises(SpecError) as via_parse:
        parse_spec(json.dumps(doc), format="json")
    assert via_parse.value.errors == mapped.errors


def test_semantic_errors_are_a_single_typed_pydantic_error():
    with pytest.raises(ValidationError) as info:
        GraphSpec.model_validate(_bad_doc(_set("layers", 1, "aggregator", "magic")))
    [err] = info.value.errors()
    assert err["type"] == "spec_semantic"
    assert "layers[1].aggregator: unknown aggregator 'magic'" in err["msg"]


def test_all_problems_are_reported_at_once():
    doc = base_doc()
    doc["layers"][1]["aggregator"] = "magic"
    doc["layers"][1]["tools"] = ["shell"]
    doc["layers"][2]["inputs"] = ["ghost"]
    with pytest.raises(SpecError) as info:
        parse_spec(json.dumps(doc), format="json")
    paths = [p for p, _ in info.value.errors]
    assert paths == ["layers[1].aggregator", "layers[1].tools[0]", "layers[2].inputs[0]"]


def test_same_agent_id_in_different_layers_is_fine():
    doc = base_doc()
    for layer in doc["layers"]:
        layer["agents"][0]["id"] = "worker"
    spec = GraphSpec.model_validate(doc)
    assert {layer.agents[0].id for layer in spec.layers} == {"worker"}


def test_default_model_may_be_missing_when_every_agent_names_one():
    doc = {
        "name": "m",
        "models": {"fast": "local"},
        "layers": [
            {"name": "l", "agents": [_agent("a", model="fast")], "judge": _agent("j", model="fast")}
        ],
    }
    assert GraphSpec.model_validate(doc).models == {"fast": "local"}
    doc["layers"][0]["judge"].pop("model")  # the judge needs 'default' too
    with pytest.raises(SpecError) as info:
        parse_spec(json.dumps(doc), format="json")
    assert _has_error(info.value.errors, "models", "no 'default' model")


@pytest.mark.parametrize(
    ("text", "fmt", "reason"),
    [
        (
            "name: x\nlayers:\n  - name: [unclosed\n",
            "yaml",
            r"malformed YAML: line \d+, column \d+",
        ),
        ("name: x\nlayers:\n\t- name: a\n", "yaml", r"malformed YAML: line 3, column 1"),
        ("name: x\n  bad: indent\n", "yaml", r"malformed YAML: line 2"),
        ("name: x\ndescription: a\x00b\n", "yaml", r"malformed YAML: line 2, column 15.*#x0000"),
        (
            "name: !!python/object/apply:os.system ['true']\n",
            "yaml",
            r"malformed YAML: line 1.*constructor",
        ),
        ("---\nname: a\n---\nname: b\n", "yaml", r"malformed YAML: line 3"),
        ('{"name": "x",}', "json", r"malformed JSON: .*line 1 column 14"),
        ("name: x", "json", r"malformed JSON"),
        ("", "json", r"malformed JSON"),
        ("- a\n- b\n", "yaml", r"mapping at the top level, got a list"),
        ("42\n", "yaml", r"mapping at the top level, got .*int"),
        ("just some words\n", "yaml", r"mapping at the top level, got .*str"),
        ("", "yaml", r"mapping at the top level, got empty document"),
        ("# only a comment\n", "yaml", r"empty document"),
        ("~\n", "yaml", r"empty document"),
        ("[1, 2]", "json", r"mapping at the top level, got a list"),
        ('"text"', "json", r"mapping at the top level, got .*str"),
        ("null", "json", r"empty document"),
        ("[" * 100_000 + "]" * 100_000, "json", r"malformed JSON|nested too deeply"),
        ("[" * 100_000 + "]" * 100_000, "yaml", r"malformed YAML|nested too deeply"),
    ],
    ids=lambda v: v[:30] if isinstance(v, str) else None,
)
def test_unparseable_documents(text, fmt, reason):
    with pytest.raises(SpecError) as info:
        parse_spec(text, format=fmt)
    [(path, message)] = info.value.errors
    assert path == ""
    assert re.search(reason, message), message


def test_yaml_is_read_with_a_safe_loader(tmp_path):
    marker = tmp_path / "pwned"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\nlayers: []\n"
    with pytest.raises(SpecError, match="malformed YAML"):
        parse_spec(text)
    assert not marker.exists()


def test_load_spec_missing_file_names_the_file(tmp_path):
    missing = tmp_path / "does-not-exist.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(missing)
    assert str(missing) in str(info.value)
    assert info.value.source == str(missing)
    assert "no such file" in info.value.errors[0][1]


def test_load_spec_on_a_directory_or_binary_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path)
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"name: \xff\xfe\x00\x81")
    with pytest.raises(SpecError, match=re.escape(str(binary))):
        load_spec(binary)


def test_load_spec_error_carries_the_file_and_path(tmp_path):
    doc = _bad_doc(_set("layers", 1, "tools", ["shell"]))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: layers[1].tools[0]: unknown tool 'shell'")


# -- starter specs -----------------------------------------------------------------------------


def test_there_are_starter_specs():
    assert len(STARTER_SPECS) >= 2


@pytest.mark.parametrize("path", STARTER_SPECS, ids=lambda p: p.name)
def test_starter_spec_loads(path):
    spec = load_spec(path)
    assert spec.layers and spec.name
    assert spec == GraphSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


# -- CLI ---------------------------------------------------------------------------------------

BAD_FILES = [
    (
        "unknown-aggregator.yaml",
        yaml.safe_dump(_bad_doc(_set("layers", 1, "aggregator", "magic"))),
        "layers[1].aggregator",
        "unknown aggregator 'magic'",
    ),
    (
        "forward.json",
        json.dumps(_bad_doc(_set("layers", 0, "inputs", ["answer"]))),
        "layers[0].inputs[0]",
        "later layer",
    ),
    (
        "typo.yml",
        yaml.safe_dump(_bad_doc(_set("layers", 0, "agents", 0, "temprature", 1))),
        "layers[0].agents[0].temprature",
        "Extra inputs are not permitted",
    ),
    ("broken.yaml", "name: x\nlayers: [\n", "", "malformed YAML: line"),
    ("list.yaml", "- 1\n- 2\n", "", "got a list"),
]


def _output(result: Any) -> str:
    return result.output + (
        result.stderr if result.stderr and result.stderr not in result.output else ""
    )


@pytest.mark.parametrize(
    ("name", "text", "path", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_cli_validate_bad_spec_exits_2_with_one_line(tmp_path, name, text, path, reason):
    spec_file = tmp_path / name
    spec_file.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(spec_file)])
    out = _output(result)
    assert result.exit_code == 2, out
    assert "Traceback" not in out
    assert str(spec_file) in out and reason in out
    if path:
        assert f"{path}: " in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, lines


def test_cli_validate_missing_file_exits_2(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = runner.invoke(app, ["validate", str(missing)])
    out = _output(result)
    assert result.exit_code == 2
    assert str(missing) in out and "no such file" in out and "Traceback" not in out


def test_cli_validate_mixed_files_reports_each_and_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(_bad_doc(_set("layers", 1, "tools", ["shell"]))), encoding="utf-8"
    )
    result = runner.invoke(app, ["validate", str(STARTER_SPECS[0]), str(bad)])
    out = _output(result)
    assert result.exit_code == 2
    assert str(STARTER_SPECS[0]) in out and "unknown tool 'shell'" in out


@pytest.mark.parametrize("command", ["run", "show"])
def test_cli_other_commands_report_bad_specs_with_exit_2(tmp_path, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(_bad_doc(_set("layers", 1, "aggregator", "magic"))), encoding="utf-8"
    )
    args = [command, str(bad)] + (["--input", "x"] if command == "run" else [])
    result = runner.invoke(app, args)
    out = _output(result)
    assert result.exit_code == 2, out
    assert "unknown aggregator 'magic'" in out and "Traceback" not in out


def test_cli_validate_starter_specs_exits_0():
    result = runner.invoke(app, ["validate", *map(str, STARTER_SPECS)])
    assert result.exit_code == 0, _output(result)
    for path in STARTER_SPECS:
        spec = load_spec(path)
        assert spec.fingerprint in result.output


def _schema_from_cli() -> dict[str, Any]:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, _output(result)
    return json.loads(result.stdout)


def test_cli_schema_is_valid_json_schema_with_layers():
    schema = _schema_from_cli()
    assert {"name", "layers", "models", "answer_format"} <= set(schema["properties"])
    assert "layers" in schema["required"]
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", STARTER_SPECS, ids=lambda p: p.name)
def test_starter_specs_validate_against_the_json_schema(path):
    schema = _schema_from_cli()
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
    # What the library writes validates too.
    jsonschema.validate(json.loads(load_spec(path).to_json()), schema)


@pytest.mark.parametrize(
    "edit",
    [
        _set("layers", 0, "agents", 0, "temprature", 0.1),
        _set("layers", []),
        _set("layers", 1, "agents", 0, "temperature", "hot"),
        _set("layers", 0, "agents", 0, "id", "solver a"),
        _set("answer_format", "essay"),
        _drop("name"),
    ],
)
def test_json_schema_rejects_what_the_model_rejects(edit):
    schema = _schema_from_cli()
    doc = _bad_doc(edit)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    with pytest.raises(ValidationError):
        GraphSpec.model_validate(doc)


def test_cli_schema_out_writes_the_file(tmp_path):
    out = tmp_path / "schema.json"
    result = runner.invoke(app, ["schema", "--out", str(out)])
    assert result.exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8")) == _schema_from_cli()


def test_duplicate_yaml_keys_are_errors_with_a_line():
    text = "name: x\nlayers:\n  - name: a\n    agents: [{id: a, role: r, prompt: p, prompt: q}]\n"
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    assert "duplicate key 'prompt'" in str(err.value) and "line 4" in str(err.value)
    with pytest.raises(SpecError, match="duplicate key 'layers'"):
        parse_spec(
            "name: x\nlayers: []\nlayers:\n  - name: a\n    agents: [{id: a, role: r, prompt: p}]\n"
        )


def test_the_spec_module_imports_no_runtime():
    """spec.py validates names against ann_langgraph.names only: no aggregators, tools, models
    or LangGraph (the old import circle spec -> aggregators -> models -> spec)."""
    import ast
    from pathlib import Path

    import ann_langgraph.spec as spec_module

    tree = ast.parse(Path(spec_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    local = {name for name in imported if name.startswith(".")}
    assert local == {".names"}, local
    assert not any(name.startswith(("langgraph", "langchain")) for name in imported)


def test_declared_names_match_the_runtime_registries():
    from ann_langgraph import names
    from ann_langgraph.aggregators.registry import aggregator_names
    from ann_langgraph.tools import tool_names

    assert set(names.BUILTIN_AGGREGATORS) <= aggregator_names() <= names.aggregator_names()
    assert set(names.BUILTIN_TOOLS) <= tool_names() <= names.tool_names()
    import ann_langgraph.aggregators.builtins as builtins  # noqa: F401
    from ann_langgraph.aggregators import registry

    builtin_runtime = {n for n in registry._REGISTRY if n in names.BUILTIN_AGGREGATORS}
    assert builtin_runtime == set(names.BUILTIN_AGGREGATORS)
