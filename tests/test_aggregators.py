"""Aggregator templates, with scripted models: semantics from DESIGN.md section 5."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

import ann_langgraph as ann
from ann_langgraph.aggregators.registry import get_aggregator
from ann_langgraph.testing import ScriptedChatModel, agent_role, tool_call_message

from .conftest import agent, make_spec


def vote_spec(n: int = 3, **layer_extra) -> ann.GraphSpec:
    agents = [agent(f"v{i}", f"Voter{i}") for i in range(n)]
    return make_spec(
        [{"name": "vote", "aggregator": "parallel_vote", "agents": agents, **layer_extra}],
        answer_format="last_number",
    )


# -- parallel_vote ------------------------------------------------------------------------


def test_vote_picks_the_majority_answer_and_returns_a_winning_text():
    model = ScriptedChatModel(
        rules=[
            (r"You are Voter0", "I think 7"),
            (r"You are Voter1", "it is 12"),
            (r"You are Voter2", "so 12 apples"),
        ]
    )
    out = ann.compile_graph(vote_spec(), models=model).invoke({"input": "q"})
    assert out["output"] == "it is 12"  # earliest agent among the majority


def test_vote_tie_goes_to_earliest_agent():
    model = ScriptedChatModel(
        rules=[
            (r"You are Voter0", "5"),
            (r"You are Voter1", "9"),
            (r"You are Voter2", "x"),
            (r"You are Voter3", "9 again? no: 5"),
        ]
    )
    out = ann.compile_graph(vote_spec(4), models=model).invoke({"input": "q"})
    assert out["output"] == "5"


def test_vote_without_extractable_answers_falls_back_to_first_agent():
    model = ScriptedChatModel(
        rules=[
            (r"You are Voter0", "no idea"),
            (r"You are Voter1", "hmm"),
            (r"You are Voter2", "pass"),
        ]
    )
    out = ann.compile_graph(vote_spec(), models=model).invoke({"input": "q"})
    assert out["output"] == "no idea"


def test_vote_judge_breaks_ties():
    spec = vote_spec(2, judge=agent("judge", "Judge"))
    model = ScriptedChatModel(
        rules=[
            (r"You are Voter0", "5"),
            (r"You are Voter1", "9"),
            (r"You are Judge", "Option 2 is best"),
        ]
    )
    rec = ann.TraceRecorder()
    out = ann.compile_graph(spec, models=model).invoke({"input": "q"}, config={"callbacks": [rec]})
    assert out["output"] == "9"
    judge_prompt = next(c["text"] for c in model.calls if "You are Judge" in c["text"])
    assert "Option 1:\n5" in judge_prompt and "Option 2:\n9" in judge_prompt
    assert any(r.agent_id == "judge" and r.kind == "llm" for r in rec.records)


def test_vote_agents_run_concurrently():
    # Prove overlap rather than timing a threshold: every call starts before any call ends.
    model = ScriptedChatModel(default="Answer: 1", sleep_s=0.4)
    ann.compile_graph(vote_spec(3), models=model).invoke({"input": "q"})
    starts = [c["time"] for c in model.calls]
    assert len(starts) == 3
    assert max(starts) - min(starts) < 0.4, "voters ran one after another, not in parallel"
    assert len({c["thread"] for c in model.calls}) == 3


def test_vote_layer_is_a_send_fan_out_with_deferred_aggregator():
    builder = get_aggregator("parallel_vote").build(_ctx(vote_spec(3)))
    assert builder.nodes["_vote"].defer is True
    branch = next(iter(builder.branches["__start__"].values()))
    sends = branch.path.invoke({"input": "q"})
    assert [s.node for s in sends] == ["v0", "v1", "v2"]


def _ctx(spec, index=0):
    from ann_langgraph.aggregators.base import LayerContext
    from ann_langgraph.models import ModelResolver

    return LayerContext(
        spec=spec,
        layer=spec.layers[index],
        index=index,
        models=ModelResolver(spec, ScriptedChatModel(default="x")),
        is_last=True,
    )


# -- sequential_cot -------------------------------------------------------------------------


def test_sequential_agents_see_earlier_outputs_in_order():
    spec = make_spec(
        [
            {
                "name": "chain",
                "agents": [agent("a", "First"), agent("b", "Second"), agent("c", "Third")],
            }
        ]
    )
    model = ScriptedChatModel(
        rules=[
            (r"You are First", "ALPHA"),
            (r"You are Second", "BETA"),
            (r"You are Third", "GAMMA"),
        ]
    )
    out = ann.compile_graph(spec, models=model).invoke({"input": "task"})
    texts = [c["text"] for c in model.calls]
    assert [
        "You are First" in texts[0],
        "You are Second" in texts[1],
        "You are Third" in texts[2],
    ] == [True] * 3
    assert "ALPHA" not in texts[0]
    assert "ALPHA" in texts[1] and "BETA" not in texts[1]
    assert "ALPHA" in texts[2] and "BETA" in texts[2]
    assert texts[2].index("ALPHA") < texts[2].index("BETA")
    assert out["output"] == "GAMMA"


# -- tool_pipeline --------------------------------------------------------------------------


def tool_spec(**layer_extra) -> ann.GraphSpec:
    return make_spec(
        [
            {
                "name": "calc",
                "aggregator": "tool_pipeline",
                "tools": ["calculator"],
                "agents": [agent("c", "Calculator user")],
                **layer_extra,
            }
        ]
    )


def test_tool_pipeline_calls_the_tool_and_feeds_the_result_back():
    model = ScriptedChatModel(
        responses=[tool_call_message("calculator", {"expression": "2+3*4"}), "The result is 14"]
    )
    out = ann.compile_graph(tool_spec(), models=model).invoke({"input": "2+3*4?"})
    assert out["output"] == "The result is 14"
    assert [t["function"]["name"] for t in model.calls[0]["kwargs"]["tools"]] == ["calculator"]
    second = model.calls[1]["messages"]
    tool_msgs = [m for m in second if isinstance(m, ToolMessage)]
    assert len(tool_msgs) == 1 and tool_msgs[0].content == "14"


def test_tool_pipeline_reports_bad_arguments_and_unknown_tools_to_the_agent():
    model = ScriptedChatModel(
        responses=[
            tool_call_message("calculator", {"wrong": 1}),
            tool_call_message("shell", {"cmd": "rm -rf /"}),
            "gave up",
        ]
    )
    out = ann.compile_graph(tool_spec(), models=model).invoke({"input": "x"})
    assert out["output"] == "gave up"
    errors = [m.content for c in model.calls for m in c["messages"] if isinstance(m, ToolMessage)]
    assert any("error" in e for e in errors)
    assert any("unknown tool 'shell'" in e for e in errors)


def test_tool_pipeline_bounds_the_loop_and_asks_for_a_final_answer():
    model = ScriptedChatModel(
        rules=[(r"without calling tools", "final after limit")],
        default=tool_call_message("calculator", {"expression": "1+1"}),
    )
    out = ann.compile_graph(tool_spec(max_tool_calls=2), models=model).invoke({"input": "x"})
    assert out["output"] == "final after limit"
    tool_calls = [c for c in model.calls if c["kwargs"].get("tools")]
    assert len(tool_calls) == 2
    last = model.calls[-1]
    assert "tools" not in last["kwargs"]
    assert "calculator" in last["text"] and "-> 2" in last["text"]


def test_tool_calls_appear_in_the_trace():
    model = ScriptedChatModel(
        responses=[tool_call_message("calculator", {"expression": "6*7"}), "42"]
    )
    rec = ann.TraceRecorder()
    ann.compile_graph(tool_spec(), models=model).invoke({"input": "x"}, config={"callbacks": [rec]})
    tools = [r for r in rec.records if r.kind == "tool"]
    assert len(tools) == 1
    assert tools[0].model == "tool:calculator" and tools[0].output == "42"
    assert tools[0].layer == "calc" and tools[0].agent_id == "c"


# -- debate ---------------------------------------------------------------------------------


def test_debate_runs_rounds_showing_peers_and_votes_on_the_last_round():
    spec = make_spec(
        [
            {
                "name": "d",
                "aggregator": "debate",
                "rounds": 2,
                "agents": [agent("p", "Pro"), agent("q", "Con"), agent("r", "Ref")],
            }
        ],
        answer_format="last_number",
    )

    def respond(messages, **kw):
        text = messages[-1].content
        if "Other agents answered" not in text:
            return {"Pro": "1", "Con": "2", "Ref": "3"}[agent_role(messages)]
        return "converged on 2"

    model = ScriptedChatModel(respond=respond)
    out = ann.compile_graph(spec, models=model).invoke({"input": "q"})
    assert len(model.calls) == 6
    round2 = [c["text"] for c in model.calls if "Other agents answered" in c["text"]]
    assert len(round2) == 3
    pro = next(t for t in round2 if "You are Pro" in t)
    assert "[q]\n2" in pro and "[r]\n3" in pro and "Your previous answer:\n1" in pro
    assert out["output"] == "converged on 2"


# -- self_refine ----------------------------------------------------------------------------


def test_self_refine_revises_with_feedback_until_rounds_run_out():
    spec = make_spec(
        [
            {
                "name": "r",
                "aggregator": "self_refine",
                "rounds": 2,
                "agents": [agent("w", "Writer"), agent("k", "Critic")],
            }
        ]
    )
    model = ScriptedChatModel(
        rules=[
            (r"You are Critic", "Missing units."),
            (r"Your previous draft(.|\n)*You are Writer", "draft v2+"),
            (r"You are Writer", "draft v1"),
        ]
    )
    out = ann.compile_graph(spec, models=model).invoke({"input": "q"})
    writer_calls = [c for c in model.calls if "You are Writer" in c["text"]]
    critic_calls = [c for c in model.calls if "You are Critic" in c["text"]]
    assert len(writer_calls) == 3 and len(critic_calls) == 2
    assert "Missing units." in writer_calls[1]["text"]
    assert out["output"] == "draft v2+"


def test_self_refine_stops_when_critics_approve_and_single_agent_self_critiques():
    spec = make_spec(
        [{"name": "r", "aggregator": "self_refine", "rounds": 3, "agents": [agent("w", "Writer")]}]
    )
    model = ScriptedChatModel(
        rules=[(r"Critique the draft", "NO ISSUES"), (r"You are Writer", "the draft")]
    )
    out = ann.compile_graph(spec, models=model).invoke({"input": "q"})
    assert out["output"] == "the draft"
    assert len(model.calls) == 2  # one draft, one self-critique that approves


# -- dynamic (DynamicRoutingSelect) -----------------------------------------------------------


def dynamic_spec() -> ann.GraphSpec:
    return make_spec(
        [
            {
                "name": "dyn",
                "aggregator": "dynamic",
                "candidates": ["sequential_cot", "parallel_vote"],
                "agents": [agent("a", "Alpha"), agent("b", "Beta")],
            }
        ],
        answer_format="last_number",
    )


def test_router_choice_changes_the_path():
    model = ScriptedChatModel(
        rules=[
            (r"route work", {"aggregator": "parallel_vote", "reason": "vote"}),
            (r"You are Alpha", "7"),
            (r"You are Beta", "8"),
        ]
    )
    rec = ann.TraceRecorder()
    out = ann.compile_graph(dynamic_spec(), models=model).invoke(
        {"input": "q"}, config={"callbacks": [rec]}
    )
    assert out["routes"]["dyn"] == {"choice": "parallel_vote", "reason": "vote", "fallback": False}
    beta = next(c["text"] for c in model.calls if "You are Beta" in c["text"])
    assert (
        "Alpha" not in beta and "7" not in beta.split("user:")[-1]
    )  # parallel: Beta never sees Alpha
    assert out["output"] == "7"
    decision = next(r for r in rec.records if r.kind == "decision" and r.agent_id == "_router")
    assert json.loads(decision.output)["choice"] == "parallel_vote"
    assert {r.aggregator for r in rec.records if r.agent_id in ("a", "b")} == {"parallel_vote"}

    model2 = ScriptedChatModel(
        rules=[
            (r"route work", {"aggregator": "sequential_cot", "reason": "chain"}),
            (r"You are Alpha", "7"),
            (r"You are Beta", "8"),
        ]
    )
    out2 = ann.compile_graph(dynamic_spec(), models=model2).invoke({"input": "q"})
    beta2 = next(c["text"] for c in model2.calls if "You are Beta" in c["text"])
    assert "[a]\n7" in beta2 and out2["output"] == "8"


@pytest.mark.parametrize(
    "router_reply",
    ["total garbage", {"aggregator": "debate", "reason": "not a candidate"}, RuntimeError("boom")],
)
def test_router_falls_back_to_first_candidate_on_garbage(router_reply):
    model = ScriptedChatModel(
        rules=[(r"route work", router_reply), (r"You are Alpha", "7"), (r"You are Beta", "8")]
    )
    out = ann.compile_graph(dynamic_spec(), models=model).invoke({"input": "q"})
    route = out["routes"]["dyn"]
    assert route["choice"] == "sequential_cot" and route["fallback"] is True
    assert "fell back" in route["reason"]
    assert out["output"] == "8"


def test_router_prompt_carries_task_position_input_and_descriptions():
    model = ScriptedChatModel(
        rules=[(r"route work", {"aggregator": "sequential_cot"})], default="1"
    )
    ann.compile_graph(dynamic_spec(), models=model).invoke({"input": "THE-INPUT"})
    prompt = model.calls[0]["text"]
    assert "a test task" in prompt and "Layer 1 of 1" in prompt and "THE-INPUT" in prompt
    assert ann.aggregator_descriptions()["parallel_vote"] in prompt


# -- registries -----------------------------------------------------------------------------


def test_register_custom_aggregator_and_tool():
    from ann_langgraph.aggregators.sequential import build_sequential

    def build_reversed(ctx):
        ctx.layer = ctx.layer.model_copy(update={"agents": list(reversed(ctx.layer.agents))})
        return build_sequential(ctx)

    ann.register_aggregator(
        "reversed_chain_test", build_reversed, description="Agents in reverse order.", replace=True
    )

    @tool("shout_test")
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    ann.register_tool(shout, replace=True)
    spec = make_spec(
        [
            {
                "name": "l",
                "aggregator": "reversed_chain_test",
                "tools": ["shout_test"],
                "agents": [agent("a", "First"), agent("b", "Second")],
            }
        ]
    )
    model = ScriptedChatModel(rules=[(r"You are First", "A"), (r"You are Second", "B")])
    out = ann.compile_graph(spec, models=model).invoke({"input": "q"})
    assert "You are Second" in model.calls[0]["text"] and out["output"] == "A"
    with pytest.raises(ValueError, match="already registered"):
        ann.register_aggregator("parallel_vote", build_reversed, description="x")
    with pytest.raises(ValueError, match="description"):
        ann.register_aggregator("no_desc_test", build_reversed, description="  ")
