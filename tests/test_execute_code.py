"""``execute_code``: the layer runs the Python an answer holds and answers with what it really
printed; the operator offers it where a model writes programs it cannot run.

Scripted models; the programs really run in the sandbox."""

from __future__ import annotations

import json
import re
from typing import Any

import ann_langgraph as ann
from ann_langgraph.aggregators.execute_code import python_program, with_real_output
from ann_langgraph.optimize.operators import operator_proposals
from ann_langgraph.optimize.validate import sense_reason
from ann_langgraph.projection import calls_per_example
from ann_langgraph.testing import ScriptedChatModel, agent_input
from ann_langgraph.train import train

from .conftest import REPAIRER_PATH, agent, make_spec

# what a 1.5B coder writes: a program, then an output it made up
INVENTED = (
    "Let me compute it.\n```python\napples = 3 * 4\nprint(apples + 5)\n```\n"
    "```output\n20\n```\nSo the answer is \\boxed{20}."
)
FAILS = "```python\nprint(12 / 0)\n```\n```output\n6\n```\nAnswer: 6"
RIGHT = "```python\nprint(3 * 4 + 5)\n```"
WORDS = "3 times 4 is 12, plus 5 is 17. Answer: 17"


def spec(rounds: int = 1) -> ann.GraphSpec:
    layer = {
        "name": "solve",
        "aggregator": "execute_code",
        "rounds": rounds,
        "agents": [agent("solver", "Solver", "Solve it.", temperature=0.0)],
    }
    return make_spec([layer], answer_format="last_number")


def run(s: ann.GraphSpec, model: ScriptedChatModel) -> tuple[dict[str, Any], dict[str, Any]]:
    rec = ann.TraceRecorder()
    out = ann.compile_graph(s, models=model).invoke(
        {"input": "Ann has 3 bags of 4 apples and 5 more. How many?"}, {"callbacks": [rec]}
    )
    decision = next(r for r in rec.records if r.kind == "decision" and r.agent_id == "_run")
    return out, json.loads(decision.output)


def test_the_program_runs_and_its_real_output_replaces_the_made_up_one():
    model = ScriptedChatModel(rules=[(r"Solver", INVENTED)])
    out, decision = run(spec(), model)
    assert out["output"].endswith("```output\n17\n```")  # what it prints, not the 20 it wrote
    assert "boxed{20}" not in out["output"] and "\n20\n" not in out["output"]
    assert ann.get_metric("numeric_match")({"target": "17"}, out["output"]).value == 1.0
    assert len(model.calls) == 1
    assert decision == {"kind": "execute_code", "answers": 1, "ran": [True], "stopped": "ran"}


def test_a_failing_program_is_shown_to_the_agent_which_answers_again():
    model = ScriptedChatModel(rules=[(r"did not give an answer", RIGHT), (r"Solver", FAILS)])
    out, decision = run(spec(), model)
    assert out["output"].endswith("```output\n17\n```")
    retry = model.calls[1]["text"]
    assert "ZeroDivisionError" in retry and "print(12 / 0)" in retry  # the program and its error
    assert decision["ran"] == [False, True] and decision["answers"] == 2


def test_when_no_program_runs_the_first_answer_stands_and_words_are_left_alone():
    model = ScriptedChatModel(rules=[(r"Solver", FAILS)])
    out, decision = run(spec(rounds=1), model)
    assert out["output"] == FAILS and len(model.calls) == 2  # one retry, then the first answer
    assert decision["stopped"] == "failed" and decision["ran"] == [False, False]

    model = ScriptedChatModel(rules=[(r"Solver", WORDS)])
    out, decision = run(spec(), model)
    assert out["output"] == WORDS and len(model.calls) == 1
    assert decision["stopped"] == "no program"

    model = ScriptedChatModel(rules=[(r"did not give", WORDS), (r"Solver", FAILS)])
    out, _ = run(spec(), model)
    assert out["output"] == WORDS  # a retry in words is the answer


def test_a_program_that_prints_nothing_counts_as_failed():
    model = ScriptedChatModel(
        rules=[(r"did not give an answer", RIGHT), (r"Solver", "```python\nx = 17\n```")]
    )
    out, decision = run(spec(), model)
    assert "printed nothing" in model.calls[1]["text"]
    assert out["output"].endswith("```output\n17\n```") and decision["ran"] == [False, True]


def test_the_last_printing_block_is_the_program():
    text = "```python\nx = 1\n```\ntext\n```py\nprint(x)\n```\n```python\ny = 2\n```"
    code, end = python_program(text)
    assert code.strip() == "print(x)" and text[:end].endswith("print(x)\n```")
    assert python_program("no code here ```output\n3\n```") is None
    unclosed = "```python\nprint(4)\n"  # cut off at the cap
    code, end = python_program(unclosed)
    assert code.strip() == "print(4)"
    assert with_real_output(unclosed, end, "4\n") == "```python\nprint(4)\n```\n```output\n4\n```"
    assert calls_per_example(spec(rounds=2)) == 3


# -- the operator ----------------------------------------------------------------------------


def _number_spec(fmt: str = "last_number") -> ann.GraphSpec:
    return make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", "Solve the problem.")]}],
        answer_format=fmt,
    )


def _records(outputs: list[str]) -> list[dict[str, Any]]:
    return [
        {"layer": "solve", "agent_id": "solver", "kind": "llm", "output": o, "error": None}
        for o in outputs
    ]


def _offered(spec: ann.GraphSpec, outputs: list[str]) -> list[dict[str, Any]]:
    state = {
        "spec": spec.model_dump(mode="json"),
        "train": [],
        "batch": {"records": _records(outputs)},
    }
    return [
        p for p in operator_proposals(state, ["solve"]) if p["source"] == "operator:execute_code"
    ]


def test_execute_code_is_offered_where_answers_hold_programs_the_model_cannot_run():
    spec = _number_spec()
    [proposal] = _offered(spec, [INVENTED, WORDS, WORDS, WORDS])  # 1 of 4: a quarter
    assert proposal["patch"]["ops"] == [
        {"op": "set_aggregator", "layer": "solve", "aggregator": "execute_code"}
    ]
    patched = ann.apply_patch(spec, proposal["patch"])
    assert sense_reason(spec, patched, proposal["patch"]) is None
    assert patched.layer("solve").agents == spec.layer("solve").agents  # the agent untouched
    ann.compile_graph(patched, models=ScriptedChatModel(rules=[(r".", RIGHT)]))
    assert not _offered(spec, [INVENTED] + [WORDS] * 4)  # 1 of 5: below a quarter
    assert not _offered(spec, [WORDS] * 4)
    assert not _offered(spec, [])
    assert not _offered(_number_spec("code_block"), [INVENTED] * 4)  # the answer is the code


def test_execute_code_on_a_code_answer_is_refused_by_the_format_check():
    spec = _number_spec("code_block")
    patch = {"ops": [{"op": "set_aggregator", "layer": "solve", "aggregator": "execute_code"}]}
    assert "execute_code" in str(sense_reason(spec, ann.apply_patch(spec, patch), patch))


def _word_problems(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{i}",
            "input": f"Ann has {i} bags of 4 apples and 5 more.",
            "target": str(4 * i + 5),
        }
        for i in range(n)
    ]


def _solver(messages: list[Any], **kw: Any) -> Any:
    """The right program, then a made-up output and answer (4i where 4i + 5 is right)."""
    i = int(re.search(r"has (\d+) bags", agent_input(messages)).group(1))
    return f"```python\nprint({i} * 4 + 5)\n```\n```output\n{i * 4}\n```\nAnswer: {i * 4}"


CRITIC = {"summary": "Wrong sums.", "blame": [{"layer": "solve", "reason": "wrong numbers"}]}
WORSE = {
    "rationale": "worse",
    "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "BAD"}],
}


def _train(tmp_path: Any, repairer: list[tuple[str, Any]], **config: Any) -> Any:
    """One step on four word problems, twelve to validate, the optimizer scripted."""
    optimizer = ScriptedChatModel(
        rules=[(r"global critic", CRITIC), *repairer, (r"repair one layer", WORSE)],
        model_name="optimizer",
    )
    return train(
        _number_spec(),
        train=_word_problems(4, "t"),
        val=_word_problems(12, "v"),
        metric="numeric_match",
        models=ScriptedChatModel(respond=_solver, model_name="solver"),
        optimizer_model=optimizer,
        epochs=1,
        batch_size=4,
        run_dir=tmp_path / "run",
        progress=False,
        config=ann.OptimizerConfig(bootstrap_demos=False, **REPAIRER_PATH, **config),
    )


def test_training_commits_execute_code_when_running_the_programs_fixes_the_answers(tmp_path):
    result = _train(tmp_path, [])
    cands = result.history[0]["candidates"]
    operator = next(c for c in cands if c["source"] == "operator:execute_code")
    assert operator["accepted"] and operator["val_score"] == 1.0 and operator["before"] == 0.0
    assert result.best_spec.layer("solve").aggregator == "execute_code"


def test_the_repairer_is_shown_the_programs_nobody_ran_and_its_execute_code_is_committed(
    tmp_path,
):
    """The textual path alone (no operators, no demos): the repairer sees how many answers hold
    a program the layer never ran, and the edit it writes from that is what gets committed."""
    run_them = {
        "rationale": "the programs are right; run them",
        "ops": [{"op": "set_aggregator", "layer": "solve", "aggregator": "execute_code"}],
    }
    shown = r"(?s)repair one layer.*PROGRAM THAT NOBODY RAN.*- solver: 4 of 4"
    result = _train(tmp_path, [(shown, run_them)], operators=False)
    cands = result.history[0]["candidates"]
    assert not [c for c in cands if str(c["source"]).startswith("operator")]
    [kept] = [c for c in cands if c["accepted"]]
    assert kept["source"] == "repairer" and kept["val_score"] == 1.0
    assert result.best_spec.layer("solve").aggregator == "execute_code"


def test_no_program_evidence_where_the_layer_runs_its_programs_or_the_answer_is_code():
    from ann_langgraph.optimize.operators import unrun_programs

    records = _records([INVENTED, INVENTED, WORDS, WORDS])
    assert unrun_programs(_number_spec(), records, "solve") == {"solver": (2, 4)}
    assert unrun_programs(_number_spec(), _records([INVENTED] + [WORDS] * 4), "solve") == {}
    assert unrun_programs(_number_spec("code_block"), records, "solve") == {}
    runs = ann.apply_patch(
        _number_spec(),
        {"ops": [{"op": "set_aggregator", "layer": "solve", "aggregator": "execute_code"}]},
    )
    assert unrun_programs(runs, records, "solve") == {}


def test_the_critic_is_told_what_the_whole_batch_shows():
    from ann_langgraph.optimize import prompts
    from ann_langgraph.optimize.critic import batch_signals

    records = _records([INVENTED, INVENTED, WORDS, WORDS])
    records[2] |= {"truncated": "finish_reason=length", "max_tokens": 256}
    signals = batch_signals(_number_spec(), records)
    assert signals == [
        "layer solve, agent solver: 1 of 4 answers cut off at max_tokens=256",
        "layer solve, agent solver: 2 of 4 answers hold a Python program that this layer "
        "never runs (any output they state is the model's guess)",
    ]
    text = prompts.critic_prompt(_number_spec(), ["fail"], [], "", mean=0.5, signals=signals)
    assert text.index("ACROSS THE WHOLE BATCH") < text.index("FAILING EXAMPLES")
    assert batch_signals(_number_spec(), _records([WORDS] * 4)) == []
    assert "ACROSS THE WHOLE BATCH" not in prompts.critic_prompt(
        _number_spec(), ["fail"], [], "", mean=0.5, signals=[]
    )
