"""``execute_code``: the agent may answer with a Python program; the layer runs the program in
the sandbox and puts what it really printed in place of whatever the model wrote after it, so
the answer is the program's result (program-aided reasoning, executed: PAL, Program of Thoughts).

A small coder model asked a word problem often writes a program and then a ```output block it
made up itself, since it cannot run code: on the recorded GSM8K test-dev rows 0-39 (the v1
table) the 1.5B model's one-agent answers ended with such a block in 13 of 40, 10 of them wrong.
An answer with no Python block is left as it is. A program that fails (an error, a timeout, or
nothing printed) is shown to the agent with what went wrong, and it writes the answer again, up
to ``rounds`` times; if none runs, the first answer stands as written.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from .base import LayerContext, LayerInput, LayerOutput, LayerState, message_text

__all__ = ["DESCRIPTION", "RUN_NODE", "build_execute_code", "python_program", "with_real_output"]

DESCRIPTION = (
    "Execute code: the agent may answer with a Python program; the layer runs it in the "
    "sandbox and replaces what the model wrote after it with the real printed output; a "
    "program that fails is shown to the agent, which answers again (up to `rounds` times)."
)

RUN_NODE = "_run"
RUN_TIMEOUT_S = 10.0
_OUTPUT_LIMIT = 2000
_FENCE = re.compile(r"```[ \t]*(python3?|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
RETRY_INSTRUCTIONS = (
    "\n\nYour earlier answer's program was run, and it did not give an answer:\n{report}\n\n"
    "Solve the task again. If you write a program, put it in one ```python block and make it "
    "print the final answer."
)


def python_program(text: str) -> tuple[str, int] | None:
    """The last Python block of ``text`` that prints something (else the last one), with the
    position where its block ends; None when the text has no Python block."""
    blocks = [(m.group(2), m.end()) for m in _FENCE.finditer(text) if m.group(2).strip()]
    if not blocks:
        return None
    printing = [b for b in blocks if "print(" in b[0]]
    return (printing or blocks)[-1]


def with_real_output(text: str, end: int, stdout: str) -> str:
    """``text`` up to the end of its program, then the program's real output."""
    head = text[:end].rstrip()
    if not head.endswith("```"):  # the block ran to the end of the reply, unclosed
        head += "\n```"
    return f"{head}\n```output\n{stdout.strip()[-_OUTPUT_LIMIT:]}\n```"


def _run(code: str) -> tuple[str | None, str]:
    """(stdout, "") when the program printed something, else (None, what went wrong)."""
    from ..sandbox import run_python  # the sandbox only when code really runs

    result = run_python(code, timeout_s=RUN_TIMEOUT_S)
    if result.ok and result.stdout.strip():
        return result.stdout, ""
    if result.timed_out or result.killed_reason:
        why = f"stopped ({result.killed_reason or 'timeout'} after {RUN_TIMEOUT_S:.0f} s)"
    elif result.ok:
        why = "ran, but printed nothing"
    else:
        why = f"failed (exit code {result.returncode}):\n{result.stderr.strip()[-800:]}"
    return None, f"```python\n{code.strip()}\n```\nThe program {why}"


def _answers(state: LayerState) -> list[dict[str, Any]]:
    return [s for s in state.get("steps") or [] if s.get("kind") == "answer"]


def _runs(state: LayerState) -> list[dict[str, Any]]:
    return [s for s in state.get("steps") or [] if s.get("kind") == "run"]


def build_execute_code(ctx: LayerContext) -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(LayerState, input_schema=LayerInput, output_schema=LayerOutput)
    agent = ctx.layer.agents[0]
    retries = ctx.layer.rounds

    def answer(state: LayerState, config: RunnableConfig) -> dict[str, Any]:
        done = _answers(state)
        text = ctx.layer_input(state)
        if done:
            text += RETRY_INSTRUCTIONS.format(report=_runs(state)[-1]["report"])
        reply = message_text(ctx.call(agent, ctx.messages(agent, text), config, sample=len(done)))
        return {
            "steps": [{"kind": "answer", "agent": agent.id, "round": len(done) + 1, "text": reply}]
        }

    def run(state: LayerState) -> dict[str, Any]:
        answers = _answers(state)
        latest = answers[-1]
        program = python_program(latest["text"])
        if program is None:
            stdout, report = None, ""
        else:
            stdout, report = _run(program[0])
        step = {
            "kind": "run",
            "agent": RUN_NODE,
            "round": latest["round"],
            "program": program is not None,
            "ok": stdout is not None,
            "report": report,
        }
        if program is not None and stdout is None and len(answers) <= retries:
            return {"steps": [step]}  # the agent answers again, told what failed
        if program is None:  # an answer in words stands as written
            text, stopped = latest["text"], "no program"
        elif stdout is not None:
            text, stopped = with_real_output(latest["text"], program[1], stdout), "ran"
        else:  # no program ran: the first answer stands as written
            text, stopped = answers[0]["text"], "failed"
        update = ctx.finish(text)
        update["steps"] = [step]
        update["decision"] = {
            "kind": "execute_code",
            "answers": len(answers),
            "ran": [r["ok"] for r in [*_runs(state), step]],
            "stopped": stopped,
        }
        return update

    def after_run(state: LayerState) -> str:
        if ctx.layer.name in (state.get("layer_outputs") or {}):
            return END
        return agent.id

    builder.add_node(
        agent.id, answer, metadata=ctx.metadata(agent.id), retry_policy=ctx.retry_policy()
    )
    builder.add_node(RUN_NODE, run, metadata=ctx.metadata(RUN_NODE, record=True))
    builder.add_edge(START, agent.id)
    builder.add_edge(agent.id, RUN_NODE)
    builder.add_conditional_edges(RUN_NODE, after_run, [agent.id, END])
    return builder
