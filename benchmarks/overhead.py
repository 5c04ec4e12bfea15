"""Compiler overhead: a spec-compiled 3-layer graph vs. the same graph written by hand.

Both graphs have the same structure (one subgraph per layer; a sequential layer, a 3-agent
parallel vote with ``Send`` fan-out and a deferred tally, a sequential layer), the same prompts,
and the same zero-latency scripted model, so the ratio isolates what ann-langgraph adds.

    python benchmarks/overhead.py [--invocations 200] [--trials 5]

Prints the per-invoke time of each and the ratio (target: at most 1.15).
"""

from __future__ import annotations

import argparse
import operator
import statistics
import time
from collections import Counter
from typing import Annotated, Any, TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

import ann_langgraph as ann
from ann_langgraph.answers import extract_answer, normalize_answer
from ann_langgraph.testing import ScriptedChatModel

DESCRIPTION = "Solve math word problems."
SPEC = {
    "name": "bench",
    "description": DESCRIPTION,
    "answer_format": "last_number",
    "layers": [
        {
            "name": "understand",
            "agents": [{"id": "reader", "role": "Reader", "prompt": "Restate."}],
        },
        {
            "name": "solve",
            "aggregator": "parallel_vote",
            "agents": [
                {"id": f"s{i}", "role": f"Solver {i}", "prompt": "Solve. End with 'Answer: N'."}
                for i in range(3)
            ],
        },
        {"name": "answer", "agents": [{"id": "writer", "role": "Writer", "prompt": "Answer."}]},
    ],
}


# -- the same graph, by hand, in plain LangGraph ---------------------------------------------


def _merge(a: dict[str, str] | None, b: dict[str, str] | None) -> dict[str, str]:
    return {**(a or {}), **(b or {})}


class Parent(TypedDict, total=False):
    input: str
    output: str
    layer_outputs: Annotated[dict[str, str], _merge]


class Layer(TypedDict, total=False):
    input: str
    layer_outputs: Annotated[dict[str, str], _merge]
    output: str
    steps: Annotated[list[dict[str, Any]], operator.add]


def _system(role: str, prompt: str) -> SystemMessage:
    return SystemMessage(f"You are {role}. Overall task: {DESCRIPTION}\n\n{prompt}")


def hand_built(model: Any) -> Any:
    def reader(state: Layer) -> dict[str, Any]:
        msgs = [_system("Reader", "Restate."), HumanMessage(state["input"])]
        return {"layer_outputs": {"understand": model.invoke(msgs).content}}

    layer1 = StateGraph(Layer)
    layer1.add_node("reader", reader)
    layer1.add_edge(START, "reader")
    layer1.add_edge("reader", END)

    def solve_input(state: Layer) -> str:
        understood = state["layer_outputs"]["understand"]
        return f"Task:\n{state['input']}\n\nOutput of layer 'understand':\n{understood}"

    def fan_out(state: Layer) -> list[Send]:
        text = solve_input(state)
        return [Send(f"s{i}", {"text": text}) for i in range(3)]

    def solver(i: int) -> Any:
        def run(payload: dict[str, Any]) -> dict[str, Any]:
            msgs = [
                _system(f"Solver {i}", "Solve. End with 'Answer: N'."),
                HumanMessage(payload["text"]),
            ]
            return {"steps": [{"i": i, "text": model.invoke(msgs).content}]}

        return run

    def vote(state: Layer) -> dict[str, Any]:
        steps = sorted(state["steps"], key=lambda s: s["i"])
        answers = [normalize_answer(extract_answer(s["text"], "last_number")) for s in steps]
        counts = Counter(a for a in answers if a is not None)
        if not counts:
            return {"layer_outputs": {"solve": steps[0]["text"]}}
        best = max(counts.values())
        winner = next(
            s for s, a in zip(steps, answers, strict=True) if a is not None and counts[a] == best
        )
        return {"layer_outputs": {"solve": winner["text"]}}

    layer2 = StateGraph(Layer)
    for i in range(3):
        layer2.add_node(f"s{i}", solver(i))
        layer2.add_edge(f"s{i}", "vote")
    layer2.add_conditional_edges(START, fan_out, [f"s{i}" for i in range(3)])
    layer2.add_node("vote", vote, defer=True)
    layer2.add_edge("vote", END)

    def writer(state: Layer) -> dict[str, Any]:
        solved = state["layer_outputs"]["solve"]
        text = f"Task:\n{state['input']}\n\nOutput of layer 'solve':\n{solved}"
        out = model.invoke([_system("Writer", "Answer."), HumanMessage(text)]).content
        return {"layer_outputs": {"answer": out}, "output": out}

    layer3 = StateGraph(Layer)
    layer3.add_node("writer", writer)
    layer3.add_edge(START, "writer")
    layer3.add_edge("writer", END)

    parent = StateGraph(Parent)
    parent.add_node("understand", layer1.compile())
    parent.add_node("solve", layer2.compile())
    parent.add_node("answer", layer3.compile())
    parent.add_edge(START, "understand")
    parent.add_edge("understand", "solve")
    parent.add_edge("solve", "answer")
    parent.add_edge("answer", END)
    return parent.compile()


def per_invoke(graph: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        graph.invoke({"input": f"A pen costs 3 dollars. How much do {i} pens cost?"})
    return (time.perf_counter() - start) / n


def calls_per_invoke(graph: Any, n: int = 20) -> float:
    """Python function calls per invoke (cProfile): a load-independent cost measure."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    per_invoke(graph, n)
    profiler.disable()
    return pstats.Stats(profiler).total_calls / n  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=200)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()

    model = ScriptedChatModel(default="Work... Answer: 12")
    baseline = hand_built(model)
    compiled = ann.compile_graph(ann.GraphSpec.model_validate(SPEC), models=model)
    assert baseline.invoke({"input": "q"})["output"] == compiled.invoke({"input": "q"})["output"]

    per_invoke(baseline, 20)  # warm up both
    per_invoke(compiled, 20)
    hand, spec = [], []
    for _ in range(args.trials):  # interleave so drift hits both equally
        hand.append(per_invoke(baseline, args.invocations))
        spec.append(per_invoke(compiled, args.invocations))
        model.reset()  # keep the call log from growing across trials
    h, s = statistics.median(hand), statistics.median(spec)
    print(f"invocations per trial: {args.invocations}, trials: {args.trials} (median shown)")
    print(f"hand-built LangGraph : {h * 1000:8.3f} ms/invoke")
    print(f"compiled from spec   : {s * 1000:8.3f} ms/invoke")
    print(f"ratio spec/hand      : {s / h:8.3f}  (target <= 1.15)")
    ch, cs = calls_per_invoke(baseline), calls_per_invoke(compiled)
    print(
        f"function calls/invoke: hand {ch:.0f}, spec {cs:.0f}, ratio {cs / ch:.3f} "
        "(load-independent)"
    )


if __name__ == "__main__":
    main()
