"""``test_revise``: the first agent writes code; the layer runs the examples the task states
(``f(2) == 4``, doctests, ``f(1) ➞ 2``) against it in the sandbox; while one fails, the reviser
(the second agent, or the writer) is told which examples failed and how, and writes a fresh
solution, for up to ``rounds`` retries. The version that passes most examples is the answer
(ties: the earlier).

CodeT and AlphaCode filter sampled programs by tests; Self-Debugging shows the model its
failures. The layer runs the examples itself because a 1.5B model asked to test its own code
never wrote a usable test (see ``code_examples``). A retry is a fresh draw (temperature at
least ``RETRY_TEMPERATURE``, a distinct cache sample) that is not shown the failed code: on
HumanEval validation rows the 1.5B model, shown its code at greedy decoding, passed no more
examples after two retries in 12 of 14 retried problems, and fixed one; told only the failures
and sampled afresh, it fixed five (0 broken). Keeping the best version means a retry can only
help on the examples, and a task with no literal examples costs only the first draft.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from ..answers import extract_answer
from ..code_examples import check_examples, defined_functions, stated_examples
from ..spec import AgentSpec
from .base import LayerContext, LayerInput, LayerOutput, LayerState, message_text

DESCRIPTION = (
    "Test and revise (code answers): the first agent writes code, the layer runs the examples "
    "the task states against it, and while one fails the reviser (second agent, or the writer) "
    "is told the failures and writes a fresh solution, up to `rounds` times; the version "
    "passing most examples is the answer."
)

TEST_NODE = "_test"
RETRY_TEMPERATURE = 0.7
RETRY_INSTRUCTIONS = (
    "\n\nAn earlier attempt was run on the examples the task states:\n{report}\n\n"
    "Write a new, correct solution. Return the whole function in one ```python block."
)


def _drafts(state: LayerState) -> list[dict[str, Any]]:
    return [s for s in state.get("steps") or [] if s.get("kind") == "draft"]


def _tests(state: LayerState) -> list[dict[str, Any]]:
    return [s for s in state.get("steps") or [] if s.get("kind") == "test"]


def _code(text: str) -> str | None:
    return extract_answer(text, "code_block")


def build_test_revise(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(LayerState, input_schema=LayerInput, output_schema=LayerOutput)
    writer = ctx.layer.agents[0]
    reviser = ctx.layer.agents[1] if len(ctx.layer.agents) > 1 else writer
    revisions = ctx.layer.rounds

    def write(agent: AgentSpec) -> Callable[..., dict[str, Any]]:
        def run(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
            done = _drafts(state)
            text = ctx.layer_input(state)
            caller = agent
            if done:
                text += RETRY_INSTRUCTIONS.format(report=_tests(state)[-1]["report"])
                # a fresh draw: greedy decoding on a longer prompt mostly rewrites the same code
                temperature = max(agent.temperature or 0.0, RETRY_TEMPERATURE)
                caller = agent.model_copy(update={"temperature": temperature})
            reply = message_text(
                ctx.call(caller, ctx.messages(agent, text), config, sample=len(done))
            )
            step = {"kind": "draft", "agent": agent.id, "round": len(done) + 1, "text": reply}
            return {"steps": [step]}

        return run

    def test(state: LayerState) -> dict[str, Any]:
        drafts = _drafts(state)
        latest = drafts[-1]
        task = state.get("input", "")
        code = _code(latest["text"])
        examples = stated_examples(task, defined_functions(task, code or ""))
        check = check_examples(code, examples) if examples else None
        step = {
            "kind": "test",
            "agent": TEST_NODE,
            "round": latest["round"],
            "total": len(examples),
            "passed": check.passed if check else 0,
            "report": check.report() if check else "The task states no runnable examples.",
        }
        tests = [*_tests(state), step]
        if check is None:
            stopped = "no examples"
        elif check.all_passed:
            stopped = "passed"
        elif len(drafts) > revisions:
            stopped = "rounds"
        else:
            return {"steps": [step]}
        # The most examples passed wins; on a tie the earlier version (a revision must help).
        best = max(range(len(drafts)), key=lambda i: (tests[i]["passed"], -i))
        update = ctx.finish(drafts[best]["text"])
        update["steps"] = [step]
        update["decision"] = {
            "kind": "test_revise",
            "drafts": len(drafts),
            "examples": len(examples),
            "passed": [t["passed"] for t in tests],
            "chosen": best + 1,
            "stopped": stopped,
        }
        return update

    def after_test(state: LayerState) -> str:
        if ctx.layer.name in (state.get("layer_outputs") or {}):
            return END
        return reviser.id

    builder.add_node(
        writer.id, write(writer), metadata=ctx.metadata(writer.id), retry_policy=ctx.retry_policy()
    )
    if reviser is not writer:
        builder.add_node(
            reviser.id,
            write(reviser),
            metadata=ctx.metadata(reviser.id),
            retry_policy=ctx.retry_policy(),
        )
        builder.add_edge(reviser.id, TEST_NODE)
    builder.add_node(TEST_NODE, test, metadata=ctx.metadata(TEST_NODE, record=True))
    builder.add_edge(START, writer.id)
    builder.add_edge(writer.id, TEST_NODE)
    builder.add_conditional_edges(TEST_NODE, after_test, [reviser.id, END])
    return builder
