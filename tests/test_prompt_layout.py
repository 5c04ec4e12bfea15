"""Prompt layout: what comes first decides what an engine's prefix reuse can share."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

import ann_langgraph as ann
from ann_langgraph.testing import ScriptedChatModel, agent_input, agent_role, tool_call_message

from .conftest import agent, make_spec


def _flat(messages) -> str:
    return "\n".join(f"{m.type}: {m.content}" for m in messages)


def test_a_team_of_different_agents_gets_the_input_before_each_agents_brief():
    spec = make_spec(
        [
            {
                "name": "team",
                "aggregator": "sequential_cot",
                "agents": [
                    agent("a", "Planner", "Plan the steps."),
                    agent("b", "Checker", "Check the plan."),
                ],
            }
        ]
    )
    model = ScriptedChatModel(default="ok")
    ann.compile_graph(spec, models=model).invoke({"input": "LONG SHARED TASK TEXT"})
    first, second = (c["messages"] for c in model.calls)
    # One system prompt for the whole team, naming the overall task but no agent.
    assert isinstance(first[0], SystemMessage) and first[0].content == second[0].content
    assert "a test task" in first[0].content and "Planner" not in first[0].content
    # The input comes first, the agent's role and instruction last.
    assert first[-1].content.startswith("LONG SHARED TASK TEXT")
    assert first[-1].content.endswith("You are Planner.\nPlan the steps.")
    assert second[-1].content.endswith("You are Checker.\nCheck the plan.")
    # So the second agent's prompt repeats the first one's up to the end of the input.
    text = _flat(first)
    through_input = text[: text.index("LONG SHARED TASK TEXT") + len("LONG SHARED TASK TEXT")]
    assert _flat(second).startswith(through_input)
    assert [agent_role(first), agent_role(second)] == ["Planner", "Checker"]
    assert agent_input(first) == "LONG SHARED TASK TEXT"
    assert agent_input(second).startswith("LONG SHARED TASK TEXT\n\nYour team's work so far:")


def test_one_agent_or_identical_voters_keep_their_instruction_first():
    one = make_spec([{"name": "solo", "agents": [agent("s", "Solver", "Solve it.")]}])
    same = make_spec(
        [
            {
                "name": "vote",
                "aggregator": "parallel_vote",
                "agents": [agent(f"v{i}", "Solver", "Solve it.") for i in range(3)],
            }
        ]
    )
    for spec in (one, same):
        model = ScriptedChatModel(default="Answer: 1")
        ann.compile_graph(spec, models=model).invoke({"input": "TASK"})
        for call in model.calls:
            system, human = call["messages"][0], call["messages"][-1]
            assert system.content.startswith("You are Solver.") and "Solve it." in system.content
            assert human.content == "TASK"
            assert (
                agent_role(call["messages"]) == "Solver" and agent_input(call["messages"]) == "TASK"
            )


def test_demos_stay_turns_before_the_input_in_either_layout():
    demo = {"input": "DEMO IN", "output": "DEMO OUT"}
    spec = make_spec(
        [
            {
                "name": "team",
                "aggregator": "sequential_cot",
                "agents": [agent("a", "Planner", demos=[demo]), agent("b", "Checker")],
            }
        ]
    )
    model = ScriptedChatModel(default="ok")
    ann.compile_graph(spec, models=model).invoke({"input": "TASK"})
    first = model.calls[0]["messages"]
    assert [type(m) for m in first] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert first[1].content == "DEMO IN" and first[2].content == "DEMO OUT"
    assert agent_input(first) == "TASK" and agent_role(first) == "Planner"


def test_a_tool_loops_final_request_is_the_agents_input_not_a_demo():
    """Out of tool rounds, the agent is asked again with its own input (and brief), not with
    the input of its first demonstration."""
    spec = make_spec(
        [
            {
                "name": "calc",
                "aggregator": "tool_pipeline",
                "tools": ["calculator"],
                "max_tool_calls": 1,
                "agents": [
                    agent("c", "Calculator user", demos=[{"input": "DEMO IN", "output": "7"}]),
                    agent("d", "Reviewer"),
                ],
            }
        ]
    )
    model = ScriptedChatModel(
        rules=[(r"without calling tools", "final")],
        default=tool_call_message("calculator", {"expression": "1+1"}),
    )
    ann.compile_graph(spec, models=model).invoke({"input": "REAL TASK"})
    finals = [c for c in model.calls if "without calling tools" in c["text"]]
    assert finals, "the loop never asked for a final answer"
    request = finals[0]["messages"][-1].content
    assert request.startswith("REAL TASK") and "DEMO IN" not in request
    assert "You are Calculator user." in request and "-> 2" in request
