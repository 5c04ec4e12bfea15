"""``test_revise``: the layer runs the task's stated examples on the code and revises on failure.

Scripted models; the examples really run in the sandbox."""

from __future__ import annotations

import json

import ann_langgraph as ann
from ann_langgraph.aggregators.test_revise import RETRY_TEMPERATURE
from ann_langgraph.projection import calls_per_example
from ann_langgraph.testing import ScriptedChatModel

from .conftest import agent, make_spec

TASK = 'def double(x):\n    """Double x.\n    >>> double(2)\n    4\n    double(5) == 10\n    """'
WRONG = "```python\ndef double(x):\n    return x + 2\n```"
RIGHT = "```python\ndef double(x):\n    return 2 * x\n```"


def spec(*agents: dict, rounds: int = 2) -> ann.GraphSpec:
    layer = {"name": "code", "aggregator": "test_revise", "rounds": rounds, "agents": list(agents)}
    return make_spec([layer], answer_format="code_block")


def run(s: ann.GraphSpec, model: ScriptedChatModel, task: str = TASK):
    rec = ann.TraceRecorder()
    out = ann.compile_graph(s, models=model).invoke({"input": task}, {"callbacks": [rec]})
    decision = next(r for r in rec.records if r.kind == "decision" and r.agent_id == "_test")
    return out, json.loads(decision.output)


def test_a_failing_draft_is_revised_with_the_real_failure_and_the_fix_is_the_answer():
    model = ScriptedChatModel(rules=[(r"An earlier attempt was run", RIGHT), (r"Coder", WRONG)])
    out, decision = run(spec(agent("coder", "Coder", temperature=0.0)), model)
    assert out["output"] == RIGHT
    retry = model.calls[1]
    # the retry is told what the example really returned, not shown the failed code, and is a
    # fresh draw: sampled, though the agent decodes greedily
    assert "double(5) returned 7; expected 10" in retry["text"]
    assert "return x + 2" not in retry["text"]
    assert model.calls[0]["kwargs"].get("temperature") == 0.0
    assert retry["kwargs"].get("temperature") == RETRY_TEMPERATURE
    assert decision == {
        "kind": "test_revise",
        "drafts": 2,
        "examples": 2,
        "passed": [1, 2],
        "chosen": 2,
        "stopped": "passed",
    }


def test_a_passing_draft_costs_one_call_and_a_task_without_examples_too():
    model = ScriptedChatModel(rules=[(r"Coder", RIGHT)])
    out, decision = run(spec(agent("coder", "Coder")), model)
    assert out["output"] == RIGHT and len(model.calls) == 1 and decision["stopped"] == "passed"

    model = ScriptedChatModel(rules=[(r"Coder", WRONG)])
    out, decision = run(spec(agent("coder", "Coder")), model, task="def double(x): ...")
    assert out["output"] == WRONG and len(model.calls) == 1
    assert decision["stopped"] == "no examples"


def test_a_revision_that_passes_fewer_examples_or_has_no_code_never_replaces_the_draft():
    half = "```python\ndef double(x):\n    return 4\n```"  # passes double(2) only
    model = ScriptedChatModel(
        rules=[(r"An earlier attempt was run", "I fixed it, it doubles now."), (r"Coder", half)]
    )
    out, decision = run(spec(agent("coder", "Coder"), rounds=2), model)
    assert out["output"] == half
    assert decision["passed"] == [1, 0, 0] and decision["chosen"] == 1
    assert decision["stopped"] == "rounds" and len(model.calls) == 3  # draft + 2 revisions


def test_a_second_agent_revises_and_the_projection_counts_the_revisions():
    s = spec(agent("coder", "Coder"), agent("fixer", "Fixer"), rounds=1)
    model = ScriptedChatModel(rules=[(r"Fixer", RIGHT), (r"Coder", WRONG)])
    out, decision = run(s, model)
    assert out["output"] == RIGHT and decision["chosen"] == 2
    assert ["Coder" in c["text"] for c in model.calls] == [True, False]
    assert calls_per_example(s) == 2


def test_an_answer_that_crashes_is_reported_to_the_reviser():
    crash = "```python\ndef double(x):\n    return x.double()\n```"
    model = ScriptedChatModel(rules=[(r"An earlier attempt was run", RIGHT), (r"Coder", crash)])
    out, _ = run(spec(agent("coder", "Coder")), model)
    assert out["output"] == RIGHT
    assert "raised AttributeError" in model.calls[1]["text"]


def test_a_revision_that_ties_the_draft_never_replaces_it():
    # draft and both revisions pass double(2) only: on a tie the earliest version stays
    draft = "```python\ndef double(x):\n    return 4\n```"
    tie = "```python\ndef double(x):\n    return x * x\n```"  # 2*2 == 4, 5*5 != 10
    model = ScriptedChatModel(rules=[(r"An earlier attempt was run", tie), (r"Coder", draft)])
    out, decision = run(spec(agent("coder", "Coder"), rounds=2), model)
    assert decision["passed"] == [1, 1, 1] and decision["chosen"] == 1
    assert out["output"] == draft


def test_a_later_version_that_ties_an_earlier_revision_loses_to_it():
    # draft passes nothing, revision 1 and revision 2 pass one each: revision 1 is the answer
    none = "```python\ndef double(x):\n    return 0\n```"
    first = "```python\ndef double(x):\n    return 4\n```"
    second = "```python\ndef double(x):\n    return x * x\n```"
    answers = iter([first, second])
    model = ScriptedChatModel(
        rules=[(r"An earlier attempt was run", lambda *_, **__: next(answers)), (r"Coder", none)]
    )
    out, decision = run(spec(agent("coder", "Coder"), rounds=2), model)
    assert decision["passed"] == [0, 1, 1] and decision["chosen"] == 2
    assert out["output"] == first
