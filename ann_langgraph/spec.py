"""The graph spec: the readable, versionable "weights" of an agentic neural network.

A spec is plain data (pydantic v2). It compiles to a LangGraph ``StateGraph`` with
``ann_langgraph.compile_graph`` and is what the optimizer edits with patches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .names import aggregator_names, tool_names

__all__ = [
    "ANSWER_FORMATS",
    "AgentSpec",
    "Demo",
    "GraphSpec",
    "LayerSpec",
    "ModelConfig",
    "SpecError",
    "load_spec",
    "parse_spec",
    "save_spec",
]

AnswerFormat = Literal["raw", "last_line", "last_number", "boxed", "choice_letter", "code_block"]
ANSWER_FORMATS: tuple[str, ...] = (
    "raw",
    "last_line",
    "last_number",
    "boxed",
    "choice_letter",
    "code_block",
)

# Names become LangGraph node names and state keys: keep them boring.
_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$"
# Layer names are parent-graph node names, so they must not collide with state keys.
RESERVED_LAYER_NAMES = frozenset({"input", "output", "layer_outputs", "routes", "messages"})


class SpecError(ValueError):
    """A spec document is invalid. ``errors`` holds ``(path, reason)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], *, source: str | None = None) -> None:
        self.errors = errors
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{path}: {reason}" if path else reason for path, reason in errors]
        super().__init__(where + "; ".join(lines))

    @classmethod
    def from_validation_error(cls, exc: ValidationError, *, source: str | None = None) -> SpecError:
        errors: list[tuple[str, str]] = []
        for err in exc.errors():
            if err["type"] == "spec_semantic":
                ctx = err.get("ctx") or {}
                for path, reason in ctx.get("errors", []):
                    errors.append((path, reason))
                continue
            loc = tuple(err["loc"])
            # A models-table entry is a tagged union (string or mapping): hide the tag.
            if len(loc) >= 3 and loc[0] == "models" and loc[2] in _MODEL_ENTRY_TAGS:
                loc = loc[:2] + loc[3:]
            errors.append((_format_loc(loc), err["msg"]))
        return cls(errors or [("", str(exc))], source=source)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Demo(_Base):
    """A few-shot demonstration: an input the agent saw and the output it should give.

    Demonstrations are weights too: the optimizer can set them from the layer's own successful
    training traces (``set_demos``), to teach format and brevity by example.
    """

    input: str = Field(min_length=1, description="What the agent was given (its user message).")
    output: str = Field(min_length=1, description="The answer to imitate.")
    source: str | None = Field(
        default=None,
        description="Where it came from, e.g. 'train:train-3' (a training example's id).",
    )


MAX_DEMOS = 8


class AgentSpec(_Base):
    """One LLM agent: a role, a prompt and optional model settings."""

    id: str = Field(pattern=_NAME_PATTERN, description="Unique within its layer.")
    role: str = Field(min_length=1, description="Who the agent is, e.g. 'Careful solver'.")
    prompt: str = Field(min_length=1, description="What the agent must do.")
    model: str | None = Field(
        default=None, description="A name from the spec's `models` table (default: 'default')."
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    demos: list[Demo] = Field(
        default_factory=list,
        max_length=MAX_DEMOS,
        description="Few-shot demonstrations shown before the input, in order.",
    )


StructuredOutputMethod = Literal["function_calling", "json_schema", "json_mode"]


class ModelConfig(_Base):
    """A models-table entry with connection settings (the plain string form is the short one).

    Secrets never go in a spec: name the environment variable that holds the key.
    """

    model: str = Field(
        min_length=1,
        description="A model string: 'local', a registered name, or an init_chat_model string "
        "such as 'openai:qwen2.5:7b'.",
    )
    base_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp), e.g. "
        "'http://127.0.0.1:11434/v1'. Default: the provider's (or OPENAI_BASE_URL).",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the API key (default: the "
        "provider's own, e.g. OPENAI_API_KEY; a keyless local server needs none).",
    )
    structured_output: StructuredOutputMethod | None = Field(
        default=None,
        description="How the router and the optimizer ask this model for structured output "
        "(default: the provider's; function_calling for the embedded model).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for init_chat_model (e.g. temperature, "
        "max_tokens, extra_body).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        params = data.get("params") if isinstance(data, dict) else None
        if isinstance(data, dict) and (
            "api_key" in data or (isinstance(params, dict) and "api_key" in params)
        ):
            raise PydanticCustomError(
                "inline_secret",
                "API keys do not belong in a spec: put the key in an environment variable "
                "and name it with api_key_env",
            )
        return data

    def __str__(self) -> str:  # labels, pricing and logs use the model string
        return self.model


def _model_entry_tag(value: Any) -> str:
    return "config" if isinstance(value, dict | ModelConfig) else "str"


_MODEL_ENTRY_TAGS = ("str", "config")
ModelEntry = Annotated[
    Annotated[str, Tag("str")] | Annotated[ModelConfig, Tag("config")],
    Discriminator(_model_entry_tag),
]


def _default_models() -> dict[str, str | ModelConfig]:
    return {"default": "local"}


class LayerSpec(_Base):
    """A team of agents working on one subtask, combined by an aggregator."""

    name: str = Field(pattern=_NAME_PATTERN)
    aggregator: str = Field(default="sequential_cot", description="A registered aggregator name.")
    agents: list[AgentSpec] = Field(min_length=1)
    inputs: list[str] | None = Field(
        default=None,
        description="Earlier layers whose outputs this layer reads (default: the previous one).",
    )
    candidates: list[str] | None = Field(
        default=None, description="Aggregators a `dynamic` layer may route to (first = fallback)."
    )
    tools: list[str] = Field(default_factory=list, description="Registered tool names.")
    max_tool_calls: int = Field(default=3, ge=0, le=32)
    rounds: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Rounds for debate/self_refine; revisions for test_revise and execute_code.",
    )
    judge: AgentSpec | None = Field(default=None, description="Optional tie-breaker for votes.")


class GraphSpec(_Base):
    """A whole agentic neural network: layers in order, plus the task and model table."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", description="The task, given to every agent.")
    answer_format: AnswerFormat = "raw"
    models: dict[str, ModelEntry] = Field(
        default_factory=_default_models,
        description="Names used by agents -> a model string, or a mapping with the model "
        "string plus base_url, api_key_env, structured_output and params.",
    )
    layers: list[LayerSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_semantics(self) -> GraphSpec:
        errors = semantic_errors(self)
        if errors:
            raise PydanticCustomError(
                "spec_semantic",
                "{summary}",
                {"summary": "; ".join(f"{p}: {r}" for p, r in errors), "errors": errors},
            )
        return self

    # -- identity ---------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Stable content hash: equal for equal content, whatever the key order."""
        data = self.model_dump(mode="json")
        for layer in data.get("layers", []):
            for agent in [*layer.get("agents", []), layer.get("judge") or {}]:
                if not agent.get("demos"):  # added later: specs without demos keep their hash
                    agent.pop("demos", None)
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]

    # -- io ---------------------------------------------------------------------
    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_defaults=True), indent=indent)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=True)
        # name/description first, then the rest: easier to read.
        return yaml.dump(data, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=100)

    # -- helpers ----------------------------------------------------------------
    def model_entry(self, name: str) -> ModelConfig:
        """The models-table entry ``name`` in its long form (a string becomes ``model=``)."""
        entry = self.models[name]
        return entry if isinstance(entry, ModelConfig) else ModelConfig(model=entry)

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def layer_inputs(self, index: int) -> list[str]:
        """Names of the layers whose outputs feed layer ``index``."""
        layer = self.layers[index]
        if layer.inputs is not None:
            return list(layer.inputs)
        return [self.layers[index - 1].name] if index > 0 else []


class _SpecDumper(yaml.SafeDumper):
    """Safe dumper whose output always reads back to the same strings."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML with allow_unicode writes NEL (U+0085) raw inside single-quoted/plain scalars, and
    # reading it back folds it into a space: force double quotes, where it is escaped as \N.
    style = '"' if any(ch in value for ch in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_SpecDumper.add_representer(str, _represent_str)


def semantic_errors(spec: GraphSpec) -> list[tuple[str, str]]:
    """Cross-field checks pydantic field types cannot express."""
    aggregators = aggregator_names()
    tools = tool_names()
    errors: list[tuple[str, str]] = []
    if "default" not in spec.models and any(
        a.model is None for layer in spec.layers for a in _all_agents(layer)
    ):
        errors.append(("models", "no 'default' model, but some agents name no model"))
    seen_layers: dict[str, int] = {}
    for i, layer in enumerate(spec.layers):
        base = f"layers[{i}]"
        if layer.name in RESERVED_LAYER_NAMES:
            errors.append((f"{base}.name", f"'{layer.name}' is reserved"))
        if layer.name in seen_layers:
            errors.append((f"{base}.name", f"duplicate layer name '{layer.name}'"))
        if layer.aggregator not in aggregators:
            errors.append(
                (
                    f"{base}.aggregator",
                    f"unknown aggregator '{layer.aggregator}' "
                    f"(known: {', '.join(sorted(aggregators))})",
                )
            )
        if layer.aggregator == "dynamic" and not layer.candidates:
            errors.append((f"{base}.candidates", "a dynamic layer needs candidates"))
        if layer.candidates:
            for j, cand in enumerate(layer.candidates):
                if cand == "dynamic":
                    errors.append((f"{base}.candidates[{j}]", "'dynamic' cannot be a candidate"))
                elif cand not in aggregators:
                    errors.append((f"{base}.candidates[{j}]", f"unknown aggregator '{cand}'"))
            if len(set(layer.candidates)) != len(layer.candidates):
                errors.append((f"{base}.candidates", "duplicate candidates"))
        for j, tool in enumerate(layer.tools):
            if tool not in tools:
                known = ", ".join(sorted(tools))
                errors.append((f"{base}.tools[{j}]", f"unknown tool '{tool}' (known: {known})"))
        seen_agents: set[str] = set()
        for j, agent in enumerate(layer.agents):
            if agent.id in seen_agents:
                errors.append((f"{base}.agents[{j}].id", f"duplicate agent id '{agent.id}'"))
            seen_agents.add(agent.id)
        for path, agent in _agents_with_paths(layer, base):
            if agent.model is not None and agent.model not in spec.models:
                table = ", ".join(sorted(spec.models)) or "nothing"
                errors.append(
                    (
                        f"{path}.model",
                        f"unknown model name '{agent.model}' "
                        f"(the spec's models table has: {table})",
                    )
                )
        if layer.inputs is not None:
            if len(set(layer.inputs)) != len(layer.inputs):
                errors.append((f"{base}.inputs", "duplicate input layers"))
            for j, src in enumerate(layer.inputs):
                if src == layer.name:
                    errors.append(
                        (f"{base}.inputs[{j}]", f"layer '{src}' cannot read itself (cycle)")
                    )
                elif src not in seen_layers:
                    later = any(other.name == src for other in spec.layers[i + 1 :])
                    reason = (
                        f"'{src}' is a later layer (forward reference / cycle)"
                        if later
                        else f"unknown layer '{src}'"
                    )
                    errors.append((f"{base}.inputs[{j}]", reason))
        seen_layers.setdefault(layer.name, i)
    for name, entry in spec.models.items():
        model = entry.model if isinstance(entry, ModelConfig) else entry
        path = f"models.{name}" + (".model" if isinstance(entry, ModelConfig) else "")
        if not name or not isinstance(model, str) or not model.strip():
            errors.append((path, "model string must be non-empty"))
    return errors


def _all_agents(layer: LayerSpec) -> list[AgentSpec]:
    return [*layer.agents, *([layer.judge] if layer.judge else [])]


def _agents_with_paths(layer: LayerSpec, base: str) -> list[tuple[str, AgentSpec]]:
    out = [(f"{base}.agents[{j}]", a) for j, a in enumerate(layer.agents)]
    if layer.judge:
        out.append((f"{base}.judge", layer.judge))
    return out


# -- io -------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys (YAML would silently keep the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable keys: let the base constructor report them
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_spec(
    text: str, *, format: Literal["yaml", "json"] = "yaml", source: str | None = None
) -> GraphSpec:
    """Parse a YAML (safe loader) or JSON document into a validated ``GraphSpec``."""
    try:
        data = json.loads(text) if format == "json" else yaml.load(text, Loader=_StrictLoader)
    except (yaml.YAMLError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            problem = getattr(exc, "problem", None) or reason
            reason = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
        elif isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.position, int):
            # Bad characters (NUL, control codes) carry a position, not a mark.
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            reason = f"line {line}, column {column}: {reason}"
        raise SpecError([("", f"malformed {format.upper()}: {reason}")], source=source) from None
    if not isinstance(data, dict):
        kind = "empty document" if data is None else f"a {type(data).__name__}"
        reason = f"a spec must be a mapping at the top level, got {kind}"
        raise SpecError([("", reason)], source=source)
    try:
        return GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError.from_validation_error(exc, source=source) from None
    except RecursionError:
        raise SpecError([("", "document nested too deeply")], source=source) from None


def load_spec(path: str | Path) -> GraphSpec:
    """Load a spec file; ``.json`` is read as JSON, anything else as YAML."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([("", f"no such file: {p}")], source=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([("", f"cannot read file: {exc}")], source=str(p)) from None
    fmt: Literal["yaml", "json"] = "json" if p.suffix.lower() == ".json" else "yaml"
    return parse_spec(text, format=fmt, source=str(p))


def save_spec(spec: GraphSpec, path: str | Path) -> Path:
    """Write a spec as JSON (``.json``) or YAML (anything else)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = spec.to_json() + "\n" if p.suffix.lower() == ".json" else spec.to_yaml()
    p.write_text(text, encoding="utf-8")
    return p
