"""Format validation: a proposed patch must have real text (no placeholders, no restated
training example), make sense for its layer, apply, compile and survive one dry run before it
costs a validation evaluation.

Small models filling a JSON schema often echo its placeholders (``"role": "string"``,
``"prompt": "Value2"``). Such a patch compiles and can even score higher on a small validation
set by chance, then hurt on new data (measured on the sentiment demo: validation 0.58 -> 0.75,
test 0.46 -> 0.21). Format validation rejects it with a recorded reason instead.
"""

from __future__ import annotations

import re
from typing import Any, Literal, NamedTuple

from ..aggregators.registry import get_aggregator
from ..compile import compile_graph
from ..patch import PatchError, apply_patch
from ..spec import GraphSpec, SpecError
from .context import OptimizerContext
from .momentum import repeated_reason
from .prompts import sentences
from .state import OptimizerState, add_usage, usage_of

__all__ = [
    "StaticCheck",
    "TrainingInputs",
    "ValidateFormat",
    "copied_example_reason",
    "placeholder_reason",
    "sense_reason",
    "static_reason",
    "training_inputs",
]

_PLACEHOLDER_WORDS = {
    "string", "str", "text", "value", "prompt", "role", "name", "id", "agent", "layer",
    "none", "null", "nil", "todo", "tbd", "example", "description", "placeholder", "...",
}  # fmt: skip
_PLACEHOLDER = re.compile(
    r"^(?:string|str|text|value|prompt|role|name|agent|layer|new[ _-]?prompt|example)"
    r"[\s_-]*\d*$",
    re.IGNORECASE,
)


def _texts(patch: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, field, text) for every role and prompt a patch writes."""
    out: list[tuple[str, str, str]] = []

    def agent(where: str, spec: Any) -> None:
        if isinstance(spec, dict):
            for field in ("role", "prompt"):
                if field in spec:
                    out.append((where, field, str(spec[field])))

    for i, op in enumerate(patch.get("ops") or []):
        if not isinstance(op, dict):
            continue
        where = f"op {i} ({op.get('op')})"
        if op.get("op") == "set_prompt":
            out.append((where, "prompt", str(op.get("prompt", ""))))
        elif op.get("op") == "set_role":
            out.append((where, "role", str(op.get("role", ""))))
        elif op.get("op") == "add_agent":
            agent(where, op.get("agent"))
        elif op.get("op") == "add_layer":
            for a in (op.get("layer") or {}).get("agents") or []:
                agent(where, a)
    return out


def placeholder_reason(patch: dict[str, Any]) -> str | None:
    """Why the patch's text looks like schema placeholders, or ``None`` if it looks real."""
    for where, field, text in _texts(patch):
        clean = text.strip().strip("\"'.:").strip()
        if not clean or clean.lower() in _PLACEHOLDER_WORDS or _PLACEHOLDER.match(clean):
            return f"{where}: the {field} {text!r} is a placeholder, not an instruction"
    return None


# A prompt sharing this many consecutive words with a training input restates that example.
COPIED_WORDS = 8
_WORD = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*")


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


# A prompt naming this many of the training inputs' own details (names, numbers) retells them.
COPIED_DETAILS = 3
# ... and one sharing this many words with one input that few other inputs use ("pink", "hats",
# "truck") retells its situation.
COPIED_TOPIC = 5
_CONTENT = re.compile(r"[a-z]{4,}")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")
# Common capitalised words: never a name ("How many ...", "Answer: 4", "return True").
_STARTER_WORDS = (
    "a an the if how what which who whom whose when where why each every all some any many "
    "much most more one two three four five six seven eight nine ten there then this that "
    "these those it its he she they we you i his her their our your my after before during "
    "while since until at in on of for from to by with without into about over under between "
    "and but or so yet also as because although though write read solve give find answer "
    "use let think show step first second next last finally now here please do does did is "
    "are was were be can could should would will must may might not no yes only even just "
    "make keep always never true false none null"
)
_STARTERS = frozenset(_STARTER_WORDS.split())


def _content(text: str) -> set[str]:
    return set(_CONTENT.findall(text.lower())) - _STARTERS


def _common(found: list[set[str]]) -> set[str]:
    """What several inputs share ("Question", "April", "number"): the task's, not one input's."""
    counts: dict[str, int] = {}
    for items in found:
        for item in items:
            counts[item] = counts.get(item, 0) + 1
    n = len(found)
    return {x for x, c in counts.items() if c >= 3 or (n > 1 and c > n / 2)}


def _details(text: str) -> set[str]:
    """The multi-digit numbers and capitalised words (bar common ones) a text mentions: what
    may make one problem that problem."""
    found = {m.group().replace(",", "") for m in _NUMBER.finditer(text)}
    found = {n for n in found if len(n.replace(".", "")) >= 2}
    found.update(m.group() for m in _NAME.finditer(text) if m.group().lower() not in _STARTERS)
    return found


class TrainingInputs:
    """The training inputs as runs of ``words`` words and as their details, built once per
    validation step."""

    def __init__(
        self,
        examples: list[dict[str, Any]],
        *,
        words: int = COPIED_WORDS,
        details: int = COPIED_DETAILS,
        topic_words: int = COPIED_TOPIC,
    ) -> None:
        self.words = words
        self.details = details
        self.topic_words = topic_words
        texts = [(str(ex.get("id")), str(ex.get("input", ""))) for ex in examples]
        self.runs = [(example_id, _shingles(text, words)) for example_id, text in texts]
        # a capitalised word the inputs also write in lower case ("Given", "given") is a word,
        # not a name ("Tobias", "Samantha" never are)
        lower = {w for _, text in texts for w in re.findall(r"\b[a-z]{3,}\b", text)}
        per_input = [
            (example_id, {d for d in _details(text) if d.lower() not in lower})
            for example_id, text in texts
        ]
        common = _common([found for _, found in per_input])
        self.owners: dict[str, list[str]] = {}
        for example_id, found in per_input:
            for detail in found - common:
                self.owners.setdefault(detail, []).append(example_id)
        words_of = [(example_id, _content(text)) for example_id, text in texts]
        common_words = _common([found for _, found in words_of])
        self.topics = [(example_id, found - common_words) for example_id, found in words_of]

    def _topic(self, text: str, at_least: int) -> tuple[str, list[str]] | None:
        """The input whose own words ``text`` shares ``at_least`` of, and those words."""
        mine = _content(text)
        for example_id, theirs in self.topics:
            shared = sorted(mine & theirs)
            if len(shared) >= at_least:
                return example_id, shared
        return None

    def general_part(self, text: str) -> str:
        """The sentences of ``text`` that name no training input's details and copy none of
        its wording: a critique the repairer can be shown without the problems it retells."""
        kept = []
        for sentence in sentences(text):
            copies = any(_shingles(sentence, self.words) & theirs for _, theirs in self.runs)
            names = any(d in self.owners for d in _details(sentence))
            topic = self._topic(sentence, 2) is not None
            if sentence.strip() and not copies and not names and not topic:
                kept.append(sentence.strip())
        return " ".join(kept)

    def copied_reason(self, patch: dict[str, Any]) -> str | None:
        """Why a prompt or role the patch writes restates training examples, or ``None``.

        Three signs: a run of ``words`` words from one input (a verbatim copy); ``details`` of
        the inputs' own names and numbers (a retelling: the 1.5B repairer once wrote "What is
        the total number of hard hats remaining after Carl took away 15 pink hard hats? ... How
        many driveways did Tobias shovel?", which shares no 8-word run with any input); or
        ``topic_words`` words of one input that few others use ("Solve the subtraction
        problem: ... took away twice the number of pink hard hats ... How many green hard hats
        remain?", its next prompt: two names only, but "pink", "hard", "hats", "green", "truck")."""
        for where, field, text in _texts(patch):
            found = self._retelling(text)
            if found is not None:
                why, restate = found
                return (
                    f"{where}: the {field} {why}; an instruction must hold for every input, "
                    f"not restate {restate}"
                )
        return None

    def retells(self, text: str) -> bool:
        """Whether ``text`` restates a training input (the signs of ``copied_reason``)."""
        return self._retelling(text) is not None

    def _retelling(self, text: str) -> tuple[str, str] | None:
        """How ``text`` restates training inputs, and what it should not restate."""
        mine = _shingles(text, self.words)
        for example_id, theirs in self.runs:
            shared = mine & theirs
            if shared:
                quote = " ".join(next(iter(shared)))
                return (
                    f"copies training example {example_id!r} ({self.words}+ words in a row, "
                    f"e.g. {quote!r})",
                    "one",
                )
        named = sorted(d for d in _details(text) if d in self.owners)
        if len(named) >= self.details:
            examples = sorted({e for d in named for e in self.owners[d]})
            shown = ", ".join(repr(e) for e in examples[:3])
            more = f" and {len(examples) - 3} more" if len(examples) > 3 else ""
            return (
                f"retells training examples {shown}{more} (it names their details "
                f"{', '.join(repr(d) for d in named)})",
                "the ones shown",
            )
        topic = self._topic(text, self.topic_words)
        if topic is not None:
            owner, own_words = topic
            return (
                f"retells training example {owner!r} (it uses its own words "
                f"{', '.join(repr(w) for w in own_words)})",
                "one",
            )
        return None


_LAST_INPUTS: list[tuple[int, TrainingInputs]] = []


def training_inputs(examples: list[dict[str, Any]]) -> TrainingInputs:
    """``TrainingInputs(examples)``, reused while the examples stay the same (the critic, each
    repairer and validation all check one step's text against the same training set)."""
    key = hash(tuple((str(ex.get("id")), str(ex.get("input", ""))) for ex in examples))
    for seen, inputs in _LAST_INPUTS:
        if seen == key:
            return inputs
    inputs = TrainingInputs(examples)
    _LAST_INPUTS[:] = [(key, inputs)]
    return inputs


def copied_example_reason(
    patch: dict[str, Any], examples: list[dict[str, Any]], *, words: int = COPIED_WORDS
) -> str | None:
    """Why a prompt or role the patch writes restates training examples, or ``None``.

    Measured on the 1.5B model (GSM8K, step 1): both repairers rewrote an agent's prompt into
    the text of the one problem they were shown ("In a truck, there are 26 pink hard hats ...").
    Such a prompt cannot hold for other inputs, and validating it costs a full evaluation.
    """
    return TrainingInputs(examples, words=words).copied_reason(patch)


# Aggregators whose answer is a vote among agents: over one agent they are that agent.
_NEEDS_SEVERAL = {"parallel_vote": "a vote", "debate": "a debate", "tool_vote": "a vote"}
# The smallest output cap an answer in each format can fit in (the final layer's agents).
MIN_ANSWER_TOKENS = {
    "raw": 8,
    "last_line": 8,
    "choice_letter": 8,
    "last_number": 16,
    "boxed": 32,
    "code_block": 128,
}


def _touched(patch: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for op in patch.get("ops") or []:
        if isinstance(op, dict):
            layer = op.get("layer")
            if isinstance(layer, dict):  # add_layer
                layer = layer.get("name")
            if isinstance(layer, str):
                names.add(layer)
    return names


def sense_reason(
    before: GraphSpec,
    after: GraphSpec,
    patch: dict[str, Any],
    records: list[dict[str, Any]] | None = None,
) -> str | None:
    """Why the patched spec cannot work as written in a layer the patch touches, or None.

    Rejected: a vote or debate over a single agent (it is that agent's answer, at the price
    of the machinery), a tool-using aggregator with no tools, test_revise in a graph whose
    answer is not code, a final-layer output cap too small for the answer format, and a cap
    lowered on an agent whose answers were already cut off.
    """
    touched = _touched(patch)
    last = after.layers[-1].name
    cut = {(r["layer"], r["agent_id"]) for r in records or [] if r.get("truncated")}
    old_caps = {
        (layer.name, agent.id): agent.max_tokens
        for layer in before.layers
        for agent in layer.agents
    }
    for layer in after.layers:
        if layer.name not in touched:
            continue
        kind = _NEEDS_SEVERAL.get(layer.aggregator)
        if kind and len(layer.agents) < 2:
            return (
                f"layer '{layer.name}': {kind} over one agent is just that agent's answer; "
                "add agents in the same patch or keep the aggregator"
            )
        try:
            uses_tools = get_aggregator(layer.aggregator).uses_tools
        except KeyError:
            uses_tools = False
        if uses_tools and not layer.tools:
            return (
                f"layer '{layer.name}': {layer.aggregator} calls tools, but the layer has none; "
                "set tools in the same patch"
            )
        if layer.aggregator == "test_revise" and after.answer_format != "code_block":
            return (
                f"layer '{layer.name}': test_revise runs code, but this graph answers in "
                f"{after.answer_format}, not code_block"
            )
        for agent in layer.agents:
            cap = agent.max_tokens
            if cap is None:
                continue
            floor = MIN_ANSWER_TOKENS.get(after.answer_format, 8)
            if layer.name == last and cap < floor:
                return (
                    f"agent '{layer.name}/{agent.id}': max_tokens={cap} is too small for a "
                    f"{after.answer_format} answer (at least {floor})"
                )
            old = old_caps.get((layer.name, agent.id))
            if (layer.name, agent.id) in cut and old is not None and cap < old:
                return (
                    f"agent '{layer.name}/{agent.id}': its answers were already cut off at "
                    f"max_tokens={old}; lowering the cap to {cap} cuts them more"
                )
    return None


class StaticCheck(NamedTuple):
    """What :func:`static_reason` found: why the patch is rejected and by which check (the
    repairer asks afresh, without the problems, only after a ``copied`` one), or the patched
    spec."""

    reason: str | None
    spec: GraphSpec | None
    check: Literal["placeholder", "copied", "repeated", "apply", "unchanged", "sense"] | None = None


def static_reason(
    spec: GraphSpec,
    patch: dict[str, Any],
    inputs: TrainingInputs,
    records: list[dict[str, Any]] | None = None,
    *,
    history: list[dict[str, Any]] | None = None,
) -> StaticCheck:
    """The checks that need no model call: (why the patch is rejected, None, which check) or
    (None, the patched spec, None). Shared by format validation and by the repairer's revision
    of its own rejected patch."""
    if reason := placeholder_reason(patch):
        return StaticCheck(reason, None, "placeholder")
    if reason := inputs.copied_reason(patch):
        return StaticCheck(reason, None, "copied")
    if reason := repeated_reason(patch, history or []):
        return StaticCheck(reason, None, "repeated")
    try:
        new_spec = apply_patch(spec, patch)
    except (PatchError, SpecError) as exc:
        return StaticCheck(str(exc), None, "apply")
    if new_spec.fingerprint == spec.fingerprint:
        return StaticCheck("the patch changes nothing", None, "unchanged")
    if nonsense := sense_reason(spec, new_spec, patch, records):
        return StaticCheck(nonsense, None, "sense")
    return StaticCheck(None, new_spec)


class ValidateFormat:
    """Placeholders, sense, apply, compile and a one-example dry run; never crashes the loop."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, state: OptimizerState) -> dict[str, Any]:
        ctx = self.ctx
        spec = GraphSpec.model_validate(state["spec"])
        failing = [r["id"] for r in state["batch"]["results"] if r["score"] < 1.0]
        by_id = {str(ex.get("id", i)): ex for i, ex in enumerate(state["train"])}
        probe = by_id.get(failing[0]) if failing else None
        probe = probe or state["train"][0]
        records = state["batch"].get("records") or []
        candidates = []
        usage: dict[str, Any] = {}
        inputs: TrainingInputs | None = None  # built at the first patch to check
        for index, prop in enumerate(state.get("proposals") or []):
            cand: dict[str, Any] = {
                "layer": prop["layer"],
                "patch": prop.get("patch"),
                "valid": False,
                "reason": prop.get("error"),
                "source": prop.get("source", "repairer"),
                "attempts": prop.get("attempts", 0),
                "parsed": prop.get("parsed", prop.get("patch") is not None),
            }
            for key in ("parsed_calls", "revisions"):  # the repairer's own record
                if prop.get(key) is not None:
                    cand[key] = prop[key]
            candidates.append(cand)
            if prop.get("patch") is None:
                cand["reason"] = f"no patch: {prop.get('error')}"
                continue
            if inputs is None:
                inputs = training_inputs(state["train"])
            reason, new_spec, _check = static_reason(
                spec, prop["patch"], inputs, records, history=state.get("history") or []
            )
            if new_spec is None:
                cand["reason"] = reason
                continue
            try:
                compile_graph(new_spec, models=ctx.models)
            except (PatchError, SpecError) as exc:
                cand["reason"] = str(exc)
                continue
            dry = ctx.run_eval(
                new_spec,
                [probe],
                ann_phase="dry_run",
                ann_epoch=state["epoch"],
                ann_step=state["step"],
                ann_candidate=f"{state['global_step']}.{index}",
            )
            usage = add_usage(usage, usage_of(dry))
            if dry.results[0].error:
                cand["reason"] = f"dry run failed: {dry.results[0].error}"
            else:
                cand.update(valid=True, reason=None, spec=new_spec.model_dump(mode="json"))
        ctx.emit("validated", valid=sum(c["valid"] for c in candidates), total=len(candidates))
        return {"candidates": candidates, "usage": usage}

    @staticmethod
    def route(state: OptimizerState) -> str:
        return "evaluate_candidate" if any(c["valid"] for c in state["candidates"]) else "momentum"
