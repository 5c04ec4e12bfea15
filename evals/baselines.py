"""Single-agent baselines as graph specs: IO, chain-of-thought, and CoT with self-consistency.

Baselines are ordinary :class:`~ann_langgraph.GraphSpec` objects, so they run through the same
``ann_langgraph.evaluate`` path as ANN specs and their tokens, calls, cache hits and cost are
counted the same way. Every baseline gets the benchmark's ``description`` (as the task),
``answer_format`` and ``instruction`` (how to format the answer), and, when the benchmark lists
``tools`` (e.g. ``python`` for DABench), those tools through a tool loop.

Self-consistency with tools needs voters that each run a tool loop; no built-in template does
that, so this module registers one more aggregator, ``tool_vote`` (importing it is enough).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph

from ann_langgraph.aggregators import LayerContext, register_aggregator
from ann_langgraph.aggregators.registry import aggregator_names
from ann_langgraph.aggregators.tool_pipeline import tool_loop
from ann_langgraph.aggregators.vote import build_vote
from ann_langgraph.cache import sample_scope
from ann_langgraph.spec import AgentSpec, GraphSpec
from ann_langgraph.tools import get_tool

from .base import Benchmark

__all__ = [
    "BASELINES",
    "REASONED_CODE_MAX_TOKENS",
    "TOOL_VOTE",
    "baseline_spec",
    "cot_sc_spec",
    "cot_spec",
    "io_spec",
]

TOOL_VOTE = "tool_vote"
TOOL_VOTE_DESCRIPTION = (
    "Tool vote: every agent answers independently and in parallel, each in its own bounded "
    "tool loop with the layer's tools; the answer most agents give wins."
)
DEFAULT_SAMPLES = 5
DEFAULT_SC_TEMPERATURE = 0.7

IO_PROMPT = "Answer the task directly, without explanation."
COT_PROMPT = "Think step by step: reason through the task carefully, then give the final answer."
TOOLS_HINT = "You may call the tools available to you ({tools}) to compute or check things."
#: The answer cap of a chain-of-thought agent whose answer is code: the reasoning comes first,
#: then the whole function, docstring included. At the embedded 1.5B model's 512, 16 of the 40
#: HumanEval CoT answers were cut off (9 of them before the code was complete), so the CoT rows
#: measured the cap, not the method; a baseline must not be weakened by a setting.
REASONED_CODE_MAX_TOKENS = 1024


def _tool_voter(ctx: LayerContext, agent: AgentSpec, index: int) -> Callable[..., dict[str, Any]]:
    tools = [get_tool(name) for name in ctx.layer.tools]

    def run_voter(payload: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        with sample_scope(index):
            reply = tool_loop(ctx, agent, ctx.messages(agent, payload["layer_text"]), tools, config)
        return {"steps": [{"agent": agent.id, "index": index, "text": reply}]}

    return run_voter


def _build_tool_vote(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    """``parallel_vote`` whose voters each run a tool loop (sample index = voter index)."""
    return build_vote(ctx, make_voter=_tool_voter)


if TOOL_VOTE not in aggregator_names():
    register_aggregator(
        TOOL_VOTE, _build_tool_vote, description=TOOL_VOTE_DESCRIPTION, uses_tools=True
    )


def _prompt(benchmark: Benchmark, lead: str) -> str:
    parts = [lead]
    if benchmark.tools:
        parts.append(TOOLS_HINT.format(tools=", ".join(benchmark.tools)))
    if benchmark.instruction.strip():
        parts.append(benchmark.instruction.strip())
    return " ".join(parts)


def _spec(
    benchmark: Benchmark, method: str, layer: dict[str, Any], *, model: str | None
) -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": f"{benchmark.name}-{method}",
            "description": benchmark.description,
            "answer_format": benchmark.answer_format,
            "models": {"default": model or "local"},
            "layers": [layer],
        }
    )


def _reasoning_cap(benchmark: Benchmark) -> dict[str, Any]:
    """Room for the reasoning before a code answer (``REASONED_CODE_MAX_TOKENS``)."""
    if benchmark.answer_format == "code_block":
        return {"max_tokens": REASONED_CODE_MAX_TOKENS}
    return {}


def _single(
    benchmark: Benchmark,
    method: str,
    role: str,
    lead: str,
    model: str | None,
    *,
    cap: dict[str, Any] | None = None,
) -> GraphSpec:
    agent = {"id": "solver", "role": role, "prompt": _prompt(benchmark, lead), **(cap or {})}
    layer: dict[str, Any] = {"name": "answer", "agents": [agent]}
    if benchmark.tools:
        layer.update(aggregator="tool_pipeline", tools=list(benchmark.tools))
    else:
        layer["aggregator"] = "sequential_cot"
    return _spec(benchmark, method, layer, model=model)


def io_spec(benchmark: Benchmark, *, model: str | None = None) -> GraphSpec:
    """IO: one agent answers directly in the benchmark's format."""
    return _single(benchmark, "io", "Solver", IO_PROMPT, model)


def cot_spec(benchmark: Benchmark, *, model: str | None = None) -> GraphSpec:
    """Chain-of-thought: one agent reasons step by step, then answers in the benchmark's format."""
    return _single(
        benchmark, "cot", "Step-by-step solver", COT_PROMPT, model, cap=_reasoning_cap(benchmark)
    )


def cot_sc_spec(
    benchmark: Benchmark,
    *,
    samples: int = DEFAULT_SAMPLES,
    temperature: float = DEFAULT_SC_TEMPERATURE,
    model: str | None = None,
) -> GraphSpec:
    """CoT with self-consistency: ``samples`` CoT answers at ``temperature``, majority vote over
    the extracted answers (``parallel_vote``; ``tool_vote`` when the benchmark has tools).

    The voters share one role and prompt; the response cache keys on the voter (sample) index,
    so the samples differ while a re-run replays each of them.
    """
    if samples < 1:
        raise ValueError("samples must be at least 1")
    prompt = _prompt(benchmark, COT_PROMPT)
    agents = [
        {
            "id": f"sample_{i + 1}",
            "role": "Step-by-step solver",
            "prompt": prompt,
            "temperature": temperature,
            **_reasoning_cap(benchmark),
        }
        for i in range(samples)
    ]
    layer: dict[str, Any] = {"name": "answer", "agents": agents}
    if benchmark.tools:
        layer.update(aggregator=TOOL_VOTE, tools=list(benchmark.tools))
    else:
        layer["aggregator"] = "parallel_vote"
    return _spec(benchmark, "cot-sc", layer, model=model)


#: Baseline method name -> spec factory ``f(benchmark, model=...)``.
BASELINES: dict[str, Callable[..., GraphSpec]] = {
    "io": io_spec,
    "cot": cot_spec,
    "cot-sc": cot_sc_spec,
}


def baseline_spec(method: str, benchmark: Benchmark, **options: Any) -> GraphSpec:
    """The spec of baseline ``method`` (``io``, ``cot``, ``cot-sc``) for ``benchmark``."""
    try:
        factory = BASELINES[method]
    except KeyError:
        raise KeyError(f"unknown baseline {method!r} (known: {', '.join(BASELINES)})") from None
    return factory(benchmark, **options)
