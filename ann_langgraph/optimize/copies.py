"""Copied-example detection: a prompt or role a patch writes must hold for every input, not
restate the training examples the optimizer was shown. The critic, the repairers, momentum and
format validation all ask it, so it lives apart from each of them."""

from __future__ import annotations

import re
from typing import Any

from ..code_examples import defined_functions
from .prompts import sentences

__all__ = [
    "COPIED_DETAILS",
    "COPIED_TOPIC",
    "COPIED_WORDS",
    "NAMED_TOPIC",
    "TrainingInputs",
    "copied_example_reason",
    "patch_texts",
    "training_inputs",
    "word_runs",
]


def patch_texts(patch: dict[str, Any]) -> list[tuple[str, str, str]]:
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


# A prompt sharing this many consecutive words with a training input restates that example.
COPIED_WORDS = 8
_WORD = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*")


def word_runs(text: str, n: int) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words of ``text`` (lower case): how a copy is seen."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


# A prompt naming this many of the training inputs' own details (names, numbers) retells them.
COPIED_DETAILS = 3
# ... and one sharing this many words with one input that few other inputs use ("pink", "hats",
# "truck") retells its situation.
COPIED_TOPIC = 5
# ... or one naming the person of one input and this many of that input's own words: the 1.5B
# repairer wrote "Solve the following math word problem: 'To determine how many pages James
# writes in a year, ...'" (one name, four own words: neither sign above).
NAMED_TOPIC = 3
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
        self.runs = [(example_id, word_runs(text, words)) for example_id, text in texts]
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
        # the functions a code task defines: one input's function named in a prompt is that task
        defined = [(example_id, set(defined_functions(text))) for example_id, text in texts]
        shared_defs = _common([names for _, names in defined])
        self.functions = {
            name: example_id
            for example_id, names in defined
            for name in names - shared_defs
            if len(name) >= 4
        }
        words_of = [(example_id, _content(text)) for example_id, text in texts]
        common_words = _common([found for _, found in words_of])
        self.topics = {example_id: found - common_words for example_id, found in words_of}

    def _topic(self, text: str, at_least: int) -> tuple[str, list[str]] | None:
        """The input whose own words ``text`` shares ``at_least`` of, and those words."""
        mine = _content(text)
        for example_id, theirs in self.topics.items():
            shared = sorted(mine & theirs)
            if len(shared) >= at_least:
                return example_id, shared
        return None

    def general_part(self, text: str) -> str:
        """The sentences of ``text`` that name no training input's details and copy none of
        its wording: a critique the repairer can be shown without the problems it retells."""
        kept = []
        for sentence in sentences(text):
            copies = any(word_runs(sentence, self.words) & theirs for _, theirs in self.runs)
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
        remain?", its next prompt: two names only, but "pink", "hard", "hats", "green", "truck").
        A fourth, for code tasks: the function one training input defines, by name (the 1.5B
        model's HumanEval reflection wrote ``print(is_nested('[[]]'))  # Output: True`` ...)."""
        for where, field, text in patch_texts(patch):
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
        mine = word_runs(text, self.words)
        for example_id, theirs in self.runs:
            shared = mine & theirs
            if shared:
                quote = " ".join(next(iter(shared)))
                return (
                    f"copies training example {example_id!r} ({self.words}+ words in a row, "
                    f"e.g. {quote!r})",
                    "one",
                )
        for name, owner in self.functions.items():
            # a plain word ("solve", "add") counts only as a call; is_nested, camelCase always
            word = name.isalpha() and (name.islower() or name.isupper())
            tail = r"\s*\(" if word else r"(?!\w)"
            if re.search(rf"(?<![\w.]){re.escape(name)}{tail}", text):
                return (
                    f"names training example {owner!r}'s own function {name!r}",
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
        for name in sorted(d for d in named if _NAME.fullmatch(d)):
            owner = self.owners[name][0]
            own = sorted(_content(text) & self.topics.get(owner, set()))
            if len(self.owners[name]) == 1 and len(own) >= NAMED_TOPIC:
                return (
                    f"retells training example {owner!r} (it names {name!r} and uses its own "
                    f"words {', '.join(repr(w) for w in own)})",
                    "one",
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
