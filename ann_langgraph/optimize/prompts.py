"""Every prompt the backward phase sends, in one place: short and specific."""

from __future__ import annotations

import json
import re
from typing import Any

from ..aggregators.registry import aggregator_descriptions
from ..spec import GraphSpec

__all__ = [
    "CRITIC_SYSTEM",
    "REPAIR_SYSTEM",
    "clip",
    "critic_prompt",
    "example_evidence",
    "normalized",
    "repair_prompt",
    "revision_prompt",
    "sentences",
    "spec_outline",
]

CRITIC_SYSTEM = (
    "You are the global critic of a multi-agent system organised in layers. Read the system's "
    "layers and how it did on a batch of examples, then name the layers responsible for the "
    "failures and say concretely what each does wrong. For each failing example compare "
    "'Expected' with 'Final output' and name the kind of difference: a wrong value; the right "
    "content in the wrong form or format; extra text around the answer; an answer cut off at "
    "the token cap; no final answer at all. Quote one expected answer and one output as "
    "evidence. Blame at most three layers. Do not blame a layer for a failure its inputs "
    "already contained. Say what goes wrong in words that hold for other inputs too (a step "
    "skipped, a quantity misread, the answer not in the required form); do not re-solve the "
    "examples."
)

REPAIR_SYSTEM = (
    "You repair one layer of a multi-agent system. Propose one to three edits to that layer "
    "(prompts, roles, agents, aggregator, tools, parameters, worked examples) that fix the "
    "reported failures. Prefer the smallest edit that fixes them: when outputs have the right "
    "content in the wrong form, rewrite the prompt of the agent that writes the answer so it "
    "says exactly what the answer must look like, with an example in the expected form; when "
    "answers are cut off, ask for shorter answers or raise max_tokens. Change the aggregator "
    "or add agents only when the evidence shows the layer's structure is the problem. Keep "
    "what works. Never repeat an edit the history says was rejected. A prompt is an "
    "instruction for every input of the task: never copy the numbers, names or wording of "
    "one example into it."
)


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str) -> list[str]:
    """``text`` cut after each ``.``, ``!`` or ``?`` and at line breaks (pieces may be empty)."""
    return _SENTENCE.split(text)


def normalized(text: str) -> str:
    """``text`` lower-cased with its whitespace collapsed: the key two texts are "the same" by
    (a repeated critique sentence, a prompt proposed again)."""
    return " ".join(text.lower().split())


def clip(text: str, limit: int) -> str:
    """Trim long text in the middle, keeping its start and end."""
    if len(text) <= limit:
        return text
    half = max(0, (limit - 20) // 2)
    return f"{text[:half]} …[{len(text) - 2 * half} chars cut]… {text[-half:]}"


def spec_outline(spec: GraphSpec, *, prompt_chars: int = 400) -> str:
    """The spec as the critic sees it: layers, wiring, aggregators, agents and prompts."""
    names = ", ".join(f"'{layer.name}'" for layer in spec.layers)
    lines = [
        f"Task: {spec.description or spec.name}",
        f"Answer format: {spec.answer_format}",
        f"The system has {len(spec.layers)} layer(s), and only these: {names}.",
    ]
    for i, layer in enumerate(spec.layers):
        reads = ", ".join(spec.layer_inputs(i)) or "the task"
        agg = layer.aggregator + (f" {layer.candidates}" if layer.candidates else "")
        tools = f"; tools {layer.tools}" if layer.tools else ""
        lines.append(f"Layer {i + 1} '{layer.name}' ({agg}; reads {reads}{tools}):")
        for agent in layer.agents:
            params = "".join(
                f", {k}={v}"
                for k, v in (("temperature", agent.temperature), ("max_tokens", agent.max_tokens))
                if v is not None
            )
            lines.append(
                f"  - {agent.id} (role: {agent.role}{params}): {clip(agent.prompt, prompt_chars)}"
            )
    return "\n".join(lines)


def example_evidence(
    result: dict[str, Any],
    records: list[dict[str, Any]],
    *,
    chars: int,
    layer: str | None = None,
    show_input: bool = True,
) -> str:
    """One example: input, target, output, metric feedback, and per-layer steps (trimmed).

    Without ``show_input`` (a repairer that restated a problem, asked again) neither the input
    nor the steps, which restate it, are shown: only how the answer failed."""
    head = [f"Example {result['id']} (score {result['score']:.2f})"]
    if show_input:
        head.append(f"Input: {clip(str(result.get('input', '')), chars // 4)}")
    head += [
        f"Expected: {clip(str(result.get('target', '')), chars // 8)}",
        f"Final output: {clip(str(result.get('output', '')), chars // 6)}",
    ]
    if result.get("feedback"):
        head.append(f"Metric feedback: {clip(str(result['feedback']), max(240, chars // 4))}")
    if result.get("error"):
        head.append(f"Error: {clip(str(result['error']), 200)}")
    cut = [r for r in records if r.get("truncated")]
    if cut:
        # The most common silent failure of a capped model: say it plainly, before the steps.
        head.append(
            "Truncation: "
            + "; ".join(f"{r['layer']}/{r['agent_id']} {r['truncated']}" for r in cut[:3])
        )
    steps = [r for r in records if show_input and (layer is None or r["layer"] == layer)]
    if steps:
        per_step = max(80, (chars // 2) // max(1, len(steps)))
        head.append("Steps:")
        for r in steps:
            out = r.get("error") or r.get("output") or ""
            # "layer X, agent Y": the 1.5B critic read "[solve/solver, llm]" as a layer "llm"
            kind = r.get("kind", "llm")
            who = f"layer {r['layer']}, agent {r['agent_id']}" + (
                f", {kind}" if kind != "llm" else ""
            )
            note = f" ({r['truncated']})" if r.get("truncated") else ""
            head.append(f"  [{who}{note}] {clip(str(out), per_step)}")
    return "\n".join(head)


def critic_prompt(
    spec: GraphSpec,
    failing: list[str],
    passing: list[str],
    momentum: str,
    *,
    mean: float,
    signals: list[str] | None = None,
) -> str:
    parts = [
        "SYSTEM:\n" + spec_outline(spec),
        f"BATCH: mean score {mean:.2f}; {len(failing)} failing examples shown, "
        f"{len(passing)} passing.",
    ]
    if signals:
        parts.append("ACROSS THE WHOLE BATCH:\n" + "\n".join(f"- {s}" for s in signals))
    parts.append("FAILING EXAMPLES:\n" + ("\n\n".join(failing) or "(none)"))
    if passing:
        parts.append("PASSING EXAMPLES (keep what makes these work):\n" + "\n\n".join(passing))
    if momentum:
        parts.append("HISTORY OF EARLIER EDITS:\n" + momentum)
    parts.append("Which layers are to blame, and why? Answer in the structured form requested.")
    return "\n\n".join(parts)


def repair_prompt(
    spec: GraphSpec,
    layer: str,
    gradient: str,
    evidence: list[str],
    momentum: str,
    *,
    demos_available: dict[str, int] | None = None,
    cut_off: dict[str, tuple[int, int, int]] | None = None,
    programs: dict[str, tuple[int, int]] | None = None,
) -> str:
    descriptions = "\n".join(
        f"- {name}: {desc}" for name, desc in aggregator_descriptions().items() if name != "dynamic"
    )
    parts = [
        "SYSTEM:\n" + spec_outline(spec, prompt_chars=1200),
        f"LAYER TO REPAIR: '{layer}'",
        "CRITIQUE OF THIS LAYER:\n" + gradient,
    ]
    if evidence:
        parts.append("WHAT THIS LAYER DID:\n" + "\n\n".join(evidence))
    cut = {agent: row for agent, row in (cut_off or {}).items() if row[0]}
    if cut:
        parts.append(
            "ANSWERS CUT OFF AT THE CAP (an unfinished answer scores 0 whatever the prompt "
            "says; set_agent_param max_tokens raises the cap):\n"
            + "\n".join(
                f"- {agent}: {n} of {total} answers cut off at max_tokens={cap}"
                for agent, (n, total, cap) in cut.items()
            )
        )
    if programs:
        parts.append(
            "ANSWERS WITH A PROGRAM THAT NOBODY RAN (this layer does not run code, so whatever "
            "an answer says the program printed is made up; set_aggregator execute_code runs "
            "each program and answers with what it really printed):\n"
            + "\n".join(
                f"- {agent}: {n} of {total} answers hold a Python program"
                for agent, (n, total) in programs.items()
            )
        )
    if momentum:
        parts.append("HISTORY OF EARLIER EDITS:\n" + momentum)
    parts.append("AGGREGATORS YOU MAY USE:\n" + descriptions)
    if demos_available:
        shown = ", ".join(f"{agent} ({n})" for agent, n in demos_available.items())
        parts.append(
            "CORRECT ANSWERS FROM TRAINING, usable as worked examples (use_demos): " + shown
        )
    parts.append(f"Propose edits to layer '{layer}' only, in the structured form requested.")
    return "\n\n".join(parts)


def revision_prompt(
    layer: str, patch: dict[str, Any], reason: str, *, show_patch: bool = True
) -> str:
    """Why the repairer's own patch was rejected before testing, and the ask to try again
    (without the rejected edit when it restated an example: shown again, it is copied again)."""
    shown = (
        f"Your edit was: {clip(json.dumps(patch.get('ops', []), ensure_ascii=False), 1200)}\n"
        if show_patch
        else ""
    )
    return (
        f"Your edit to layer '{layer}' was rejected before testing: {reason}.\n{shown}"
        f"Propose a different edit to layer '{layer}' that fixes the reported failures and "
        "avoids this problem. A prompt must be a general instruction that helps on every "
        "input of the task (how to work, what to check, what the answer must look like), not "
        "a restatement of one example."
    )
