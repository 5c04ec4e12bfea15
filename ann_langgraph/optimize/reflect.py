"""Reflective proposals (GEPA's mutation): rewrite a blamed agent's whole instruction from a
few minibatch examples, each with the agent's own input and output, why its generation stopped,
and the metric's feedback; several samples per step.

The prompt and the answer's parsing are GEPA's own (``gepa.strategies.instruction_proposal``),
with two additions before its answer format (``reflection_prompt``): the instruction must hold
for every input, and the global critic's finding about the layer (the textual gradient, minus
sentences that retell a training problem). So the comparison with ``dspy.GEPA`` differs in the
gradient and the search around the mutation.
A sample identical to an earlier rejected prompt, to a sibling, or one that restates a training
example is sampled again (at most ``reflection_retries`` times) instead of being validated.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from gepa.strategies.instruction_proposal import InstructionProposalSignature
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ContextThreadPoolExecutor

from ..cache import sample_scope
from ..spec import GraphSpec
from ..structured import call_usage
from . import prompts
from .context import OptimizerContext
from .copies import training_inputs, word_runs
from .state import add_usage, evidence_records
from .validate import static_reason

__all__ = [
    "GENERAL_NOTE",
    "ReflectiveRepair",
    "finish_reason",
    "instruction_from_reply",
    "reflection_dataset",
    "reflection_prompt",
    "restates_reflection_prompt",
    "sampler",
]


def finish_reason(record: dict[str, Any] | None) -> str:
    """Why the agent's generation stopped, in words the reflection model can act on."""
    if record is None:
        return "unknown (no record of this agent for the example)"
    if record.get("error"):
        return f"error: {prompts.clip(str(record['error']), 200)}"
    if record.get("truncated"):
        return f"length: {record['truncated']}; the answer never reached its end"
    return "stop: the answer was complete"


def reflection_dataset(
    results: list[dict[str, Any]],
    records: list[dict[str, Any]],
    *,
    layer: str,
    agent: str,
    count: int,
    offset: int = 0,
    chars: int = 1500,
) -> list[dict[str, Any]]:
    """GEPA's ``dataset_with_feedback`` for one agent: up to ``count`` minibatch examples, the
    failing ones first (rotated by ``offset``, so each sample reflects on another mix), then
    passing ones (what to keep)."""
    failing = [r for r in results if r["score"] < 1.0]
    passing = [r for r in results if r["score"] >= 1.0]
    if failing:
        shift = offset % len(failing)
        failing = failing[shift:] + failing[:shift]
    chosen = (failing[: max(1, count - min(1, len(passing)))] + passing)[:count]
    rows = []
    for result in chosen:
        mine = [
            r
            for r in evidence_records(records, result["id"])
            if r["layer"] == layer and r["agent_id"] == agent and r.get("kind", "llm") == "llm"
        ]
        record = mine[-1] if mine else None
        given = (record or {}).get("input") or str(result.get("input", ""))
        output = (record or {}).get("output") or str(result.get("output", ""))
        feedback = f"Score {result['score']:.2f}."
        if result.get("feedback"):
            feedback += f" {result['feedback']}"
        if result.get("error"):
            feedback += f" Error: {prompts.clip(str(result['error']), 200)}"
        rows.append(
            {
                "Inputs": prompts.clip(given, chars),
                "Generated Outputs": prompts.clip(output, chars),
                "Finish reason": finish_reason(record),
                "Feedback": prompts.clip(feedback, chars // 2),
            }
        )
    return rows


def sampler(
    model: Runnable[Any, Any], *, temperature: float, seed: int, max_tokens: int | None = None
) -> Runnable[Any, Any]:
    """``model`` sampling at ``temperature`` with its own seed: each sample differs (and has its
    own response-cache key), and a re-run replays the same samples. ``max_tokens`` lowers (never
    raises) its output cap: an instruction is short, and what a small model writes after it
    (examples retold, explanations) costs minutes on a CPU and is cut anyway."""
    if isinstance(model, BaseChatModel):
        fields = type(model).model_fields
        update: dict[str, Any] = {}
        if "temperature" in fields:
            update["temperature"] = temperature
        if "seed" in fields:
            update["seed"] = seed
        if max_tokens is not None:
            for field in ("max_tokens", "max_output_tokens"):
                if field in fields:
                    current = getattr(model, field, None)
                    update[field] = max_tokens if current is None else min(current, max_tokens)
                    break
        if update:
            return model.model_copy(update=update)
    return model


# Added to GEPA's prompt, before its answer format. Why: shown three HumanEval problems, the 1.5B
# model wrote an instruction for one of them ("Given a list of strings and a substring, write a
# Python function that returns ...") that cannot help the other tasks.
GENERAL_NOTE = (
    "The new instruction is given to the assistant for every task of this kind, not only the "
    "examples above: write guidance that holds for all of them, and do not describe any one "
    "example's task."
)
_ANSWER_FORMAT = "Provide the new instructions within ``` blocks."


def reflection_prompt(
    instruction: str, dataset: list[dict[str, Any]], *, critique: str = ""
) -> str:
    """GEPA's reflective-mutation prompt, plus ours before its answer format: the note that
    the instruction must hold for every input, and the global critic's finding about this
    layer (the ANN's textual gradient, which GEPA has no counterpart for)."""
    text = str(
        InstructionProposalSignature.prompt_renderer(
            {"current_instruction_doc": instruction, "dataset_with_feedback": dataset}
        )
    )
    extra = GENERAL_NOTE
    if critique:
        extra += (
            "\n\nA reviewer who read the traces of the whole system found this about this "
            f"step: {critique}"
        )
    head, found, tail = text.rpartition(_ANSWER_FORMAT)
    if not found:  # another gepa version's wording: add ours at the end
        return f"{text}\n\n{extra}"
    return f"{head}{extra}\n\n{found}{tail}"


# A proposal sharing a run of this many words with the reflection prompt's own text restates it.
META_WORDS = 8


@functools.cache
def _meta_runs() -> frozenset[tuple[str, ...]]:
    return frozenset(word_runs(reflection_prompt("", [], critique=""), META_WORDS))


def restates_reflection_prompt(instruction: str) -> bool:
    """Whether a proposal copies the reflection prompt's own wording (GEPA's request, our note)
    instead of instructing the task. Seen on the 1.5B model (GSM8K, 2026-12-08): both samples
    of a step began "Read the input carefully and identify the input format and infer detailed
    task description about the task ...", GEPA's words to the proposer, as the new prompt."""
    return bool(word_runs(instruction, META_WORDS) & _meta_runs())


# A heading line ("### New Instruction", "**Revised instruction:**", "New instructions:") and
# the preamble a small model writes before its answer ("Certainly! Here is ...").
_HEADING = re.compile(
    r"^\s*(?:#{1,6}\s*|\*\*)?\s*(?P<title>[^\n*#:]{1,60}?)\s*:?\s*(?:\*\*)?\s*:?\s*$"
)
_INSTRUCTION_TITLE = re.compile(
    r"^(?:the\s+)?(?:new|updated|revised|improved|final)?\s*instructions?$", re.I
)
# sections after the instruction that retell the examples or explain the change
_ASIDE_TITLE = re.compile(
    r"feedback|example|response|explanation|rationale|reasoning|additional|summary|analysis|"
    r"note|changes|why",
    re.I,
)
_PREAMBLE = re.compile(
    r"^\s*(?:certainly|sure|of course|absolutely|okay|ok|great|here is|here's|here are|below is|"
    r"based on|to address|i will|i'll|let's|let me)\b",
    re.I,
)


def _heading(line: str) -> str | None:
    """The title of a markdown or bold heading line (``### X``, ``**X**``, ``X:``), else None."""
    stripped = line.strip()
    if not stripped or not (
        stripped.startswith(("#", "**")) or (stripped.endswith(":") and len(stripped) <= 40)
    ):
        return None
    match = _HEADING.match(stripped)
    return match.group("title").strip() if match else None


def instruction_from_reply(reply: str) -> str:
    """The instruction in a reflection reply: GEPA's fenced-block parsing, then what a small
    model wraps around it removed. Why: the 1.5B model answered without a fence, as
    "Certainly, let's write ... ### New Instruction <the instruction> ### Feedback and Example
    Response <a training example>", and the whole reply became the agent's prompt."""
    text = reply.strip()
    fences = text.count("```")
    if fences == 1 and not text.startswith("```"):  # a reply cut off inside its block
        text = text.split("```", 1)[1]
        text = re.sub(r"^\S*\n", "", text)
    text = str(InstructionProposalSignature.output_extractor(text)["new_instruction"]).strip()
    lines = text.splitlines()
    titles = [_heading(line) for line in lines]
    start = next((i + 1 for i, t in enumerate(titles) if t and _INSTRUCTION_TITLE.match(t)), None)
    if start is None:  # no "New Instruction" heading: drop a preamble paragraph only
        paragraphs = re.split(r"\n\s*\n", text, maxsplit=1)
        if len(paragraphs) == 2 and _PREAMBLE.match(paragraphs[0]):
            text = paragraphs[1].strip()
        elif len(paragraphs) == 1 and _PREAMBLE.match(text):
            head, colon, rest = text.partition(":")
            if colon and rest.strip() and re.search(r"\bhere\b|instruction", head, re.I):
                text = rest.strip()
        return text
    asides = [
        i
        for i in range(start, len(lines))
        if (t := titles[i]) and _ASIDE_TITLE.search(t) and not _INSTRUCTION_TITLE.match(t)
    ]
    end = asides[0] if asides else len(lines)
    kept = "\n".join(lines[start:end]).strip()
    return kept or text


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


class ReflectiveRepair:
    """``reflection_samples`` whole-instruction rewrites for one blamed layer (a ``Send`` task
    per blamed layer, beside ``local_repair``); the agents of the layer take turns."""

    def __init__(self, ctx: OptimizerContext) -> None:
        self.ctx = ctx

    def __call__(self, payload: Any, config: RunnableConfig) -> dict[str, Any]:
        ctx, cfg = self.ctx, self.ctx.cfg
        spec = GraphSpec.model_validate(payload["spec"])
        layer = spec.layer(payload["target"]["layer"])
        results = payload["batch"]["results"]
        records = payload["batch"]["records"]
        history = payload.get("history") or []
        inputs = training_inputs(payload.get("train") or results)
        step = int(payload.get("global_step") or 0)
        proposals: list[dict[str, Any]] = []
        usage: dict[str, Any] = {}
        seen: set[str] = {prompts.normalized(a.prompt) for a in layer.agents}
        # the global critic's textual gradient for this layer, without the problems it retells
        critique = inputs.general_part(str(payload["target"].get("reason") or ""))

        def draw(sample: int, attempt: int, resampled: list[str]) -> Any:
            """One reflection call: sample ``sample``'s ``attempt``-th draw."""
            agent = layer.agents[sample % len(layer.agents)]
            offset = sample + attempt * cfg.reflection_samples
            data = reflection_dataset(
                results,
                records,
                layer=layer.name,
                agent=agent.id,
                count=cfg.reflection_examples,
                offset=offset,
            )
            text = reflection_prompt(agent.prompt, data, critique=critique)
            if resampled:  # say why the last draw was not used: the next one differs
                text += (
                    f"\n\nA proposal you wrote was not used: {resampled[-1]}. "
                    "Write a different instruction."
                )
            model = sampler(
                ctx.opt_model,
                temperature=cfg.reflection_temperature,
                seed=cfg.seed * 100_003 + step * 1009 + offset,
                max_tokens=cfg.reflection_max_tokens,
            )
            # its own cache slot too: a model with no seed would replay the first sample
            with sample_scope(offset):
                return model.invoke([HumanMessage(text)], config)

        # The first draws do not depend on each other: sent at once, a server with parallel
        # slots decodes them in one batch. Replies are still judged in sample order, so the
        # result is the same as drawing them one by one (retries stay sequential).
        first: dict[int, Any] = {}
        if cfg.parallel_samples and cfg.reflection_samples > 1:
            with ContextThreadPoolExecutor(max_workers=cfg.reflection_samples) as pool:
                futures = {i: pool.submit(draw, i, 0, []) for i in range(cfg.reflection_samples)}
                first = {i: f.result() for i, f in futures.items()}
        for sample in range(cfg.reflection_samples):
            agent = layer.agents[sample % len(layer.agents)]
            proposal: dict[str, Any] = {
                "layer": layer.name,
                "patch": None,
                "error": None,
                "attempts": 0,
                "source": "reflection",
                "agent": agent.id,
            }
            resampled: list[str] = []
            for attempt in range(cfg.reflection_retries + 1):
                if attempt == 0 and sample in first:
                    message = first.pop(sample)
                else:
                    message = draw(sample, attempt, resampled)
                usage = add_usage(usage, call_usage(message))
                proposal["attempts"] += 1
                instruction = instruction_from_reply(_text(message))
                patch = {
                    "rationale": "Rewrote the instruction from the minibatch's outputs and "
                    "feedback (reflective mutation).",
                    "ops": [
                        {
                            "op": "set_prompt",
                            "layer": layer.name,
                            "agent": agent.id,
                            "prompt": instruction,
                        }
                    ],
                }
                why = self._reject(instruction, seen, spec, patch, inputs, records, history)
                if why is None:
                    proposal.update(patch=patch, error=None)
                    seen.add(prompts.normalized(instruction))
                    break
                resampled.append(why)
                proposal.update(patch=None, error=f"every sample was rejected; last: {why}")
            if resampled:
                proposal["resampled"] = resampled
            proposals.append(proposal)
        ctx.emit(
            "reflection",
            layer=layer.name,
            proposals=sum(p["patch"] is not None for p in proposals),
            resampled=sum(len(p.get("resampled", [])) for p in proposals),
        )
        return {"proposals": proposals, "usage": ctx.llm_usage(usage)}

    @staticmethod
    def _reject(
        instruction: str,
        seen: set[str],
        spec: GraphSpec,
        patch: dict[str, Any],
        inputs: Any,
        records: list[dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> str | None:
        """Why this sample is not worth a validation run (so another is drawn), or None."""
        if not instruction:
            return "the answer held no instruction"
        if prompts.normalized(instruction) in seen:
            return "the same instruction as the current one or a sibling sample"
        if restates_reflection_prompt(instruction):
            return (
                "it restated the request for an instruction (how to read the examples and "
                "their feedback), not how to do the task"
            )
        reason, _spec, check = static_reason(spec, patch, inputs, records, history=history)
        if check == "copied":  # never quote the problem back: it would be copied again
            return "it restated a training problem (its wording, names or numbers)"
        return reason
