"""Forward-phase bootstrap: ask a model to design the first spec for a task (the paper's
automatic team building), validate it like a patch, retry on errors."""

from __future__ import annotations

import re
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field, ValidationError

from .aggregators.registry import aggregator_descriptions
from .spec import ANSWER_FORMATS, GraphSpec, SpecError
from .structured import invoke_structured

__all__ = ["InitResult", "init_spec", "template_spec"]

INIT_SYSTEM = (
    "You design multi-agent systems organised in layers. Each layer is a team of agents working "
    "on one subtask; an aggregator says how the team combines its answers. Design 2-4 layers "
    "for the task: short names, 1-3 agents per layer, each with a role and a one-sentence prompt."
)


class _Agent(BaseModel):
    id: str = Field(description="short identifier, letters/digits/underscores")
    role: str
    prompt: str


class _Layer(BaseModel):
    name: str = Field(description="short identifier, letters/digits/underscores")
    aggregator: str
    agents: list[_Agent] = Field(min_length=1)


class _Design(BaseModel):
    answer_format: str = Field(description=f"one of {', '.join(ANSWER_FORMATS)}")
    layers: list[_Layer] = Field(min_length=1)


class InitResult(BaseModel):
    spec: GraphSpec
    from_model: bool
    attempts: int
    notes: list[str]


def _slug(text: str, fallback: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", text.strip()).strip("_")[:40]
    if not slug or not slug[0].isalpha():
        slug = f"{fallback}_{slug}" if slug else fallback
    return slug


def template_spec(task: str, *, name: str | None = None, answer_format: str = "raw") -> GraphSpec:
    """A sensible default: analyse, then a 3-agent vote, then a writer."""
    return GraphSpec.model_validate(
        {
            "name": name or _slug(task, "task")[:40],
            "description": task,
            "answer_format": answer_format,
            "layers": [
                {
                    "name": "analyse",
                    "aggregator": "sequential_cot",
                    "agents": [
                        {
                            "id": "analyst",
                            "role": "a careful analyst",
                            "prompt": "List what the task asks for and the facts given.",
                        }
                    ],
                },
                {
                    "name": "solve",
                    "aggregator": "parallel_vote",
                    "agents": [
                        {
                            "id": f"solver_{c}",
                            "role": "an expert solver",
                            "prompt": "Solve the task step by step and state your final answer.",
                        }
                        for c in "abc"
                    ],
                },
                {
                    "name": "answer",
                    "aggregator": "sequential_cot",
                    "agents": [
                        {
                            "id": "writer",
                            "role": "the answer writer",
                            "prompt": "Write the final answer in the required format.",
                        }
                    ],
                },
            ],
        }
    )


def _to_spec(design: _Design, task: str, name: str | None) -> GraphSpec:
    data: dict[str, Any] = {
        "name": name or _slug(task, "task")[:40],
        "description": task,
        "answer_format": design.answer_format if design.answer_format in ANSWER_FORMATS else "raw",
        "layers": [
            {
                "name": _slug(layer.name, f"layer{i}"),
                "aggregator": layer.aggregator,
                "agents": [
                    {"id": _slug(a.id, f"agent{j}"), "role": a.role, "prompt": a.prompt}
                    for j, a in enumerate(layer.agents)
                ],
            }
            for i, layer in enumerate(design.layers)
        ],
    }
    return GraphSpec.model_validate(data)


def init_spec(
    task: str,
    *,
    model: Runnable[Any, Any],
    examples: list[dict[str, Any]] | None = None,
    name: str | None = None,
    attempts: int = 3,
) -> InitResult:
    """Ask ``model`` for a first spec; on invalid designs retry with the errors shown; after
    ``attempts`` failures fall back to ``template_spec`` (``from_model`` is then False)."""
    if not task.strip():
        raise ValueError("the task description is empty")
    aggs = "\n".join(f"- {n}: {d}" for n, d in aggregator_descriptions().items() if n != "dynamic")
    shown = "\n".join(
        f"- input: {str(ex.get('input'))[:300]!r} -> target: {str(ex.get('target'))[:100]!r}"
        for ex in (examples or [])[:5]
    )
    human = f"Task: {task}\n\nAggregators:\n{aggs}\n"
    if shown:
        human += f"\nExamples:\n{shown}\n"
    human += f"\nAnswer formats: {', '.join(ANSWER_FORMATS)}. Call the function with your design."
    messages: list[Any] = [SystemMessage(INIT_SYSTEM), HumanMessage(human)]
    notes: list[str] = []
    mode: Literal["model", "template"] = "template"
    spec: GraphSpec | None = None
    tries = 0
    for tries in range(1, attempts + 1):
        result = invoke_structured(model, _Design, messages, retries=0)
        if result.value is None:
            notes.append(f"attempt {tries}: {result.error}")
            messages.append(HumanMessage(f"That was not valid: {result.error}. Try again."))
            continue
        try:
            spec = _to_spec(result.value, task, name)
            mode = "model"
            break
        except (ValidationError, SpecError) as exc:
            reason = (
                str(SpecError.from_validation_error(exc))
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            notes.append(f"attempt {tries}: invalid design: {reason[:300]}")
            messages.append(HumanMessage(f"That design is invalid: {reason[:500]}. Fix it."))
    if spec is None:
        spec = template_spec(task, name=name)
        notes.append("fell back to the built-in template (analyse -> vote -> answer)")
    return InitResult(spec=spec, from_model=mode == "model", attempts=tries, notes=notes)
