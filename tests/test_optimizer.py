"""The backward phase with scripted executor and optimizer models."""

from __future__ import annotations

import json
import re

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph

import ann_langgraph as ann
from ann_langgraph.optimize.graph import Budget, OptimizerConfig, create_optimizer
from ann_langgraph.testing import ScriptedChatModel
from ann_langgraph.train import RunDirError, train

from .conftest import REPAIRER_PATH, agent, make_spec


def solver_spec() -> ann.GraphSpec:
    return make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", "Add one to the number.")]}],
        answer_format="last_number",
    )


def data(n: int, prefix: str) -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "input": f"What is {i} plus one?", "target": str(i + 1)}
        for i in range(n)
    ]


def executor() -> ScriptedChatModel:
    """Right on even numbers with the starting prompt; always right with MAGIC; never with BAD."""

    def respond(messages, **kw):
        system, question = messages[0].content, messages[-1].content
        n = int(re.search(r"What is (\d+)", question).group(1))
        if "BAD" in system:
            return "Answer: 0"
        if "MAGIC" in system or n % 2 == 0:
            return f"Answer: {n + 1}"
        return f"Answer: {n}"

    return ScriptedChatModel(respond=respond, model_name="executor")


CRITIC = {
    "summary": "Odd numbers come out one too low.",
    "blame": [{"layer": "solve", "reason": "the solver forgets to add one for odd numbers"}],
}


def optimizer(prompt: str) -> ScriptedChatModel:
    patch = {
        "rationale": "be explicit",
        "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": prompt}],
    }
    return ScriptedChatModel(
        rules=[
            (r"global critic", CRITIC),
            (r"repair one layer", patch),
            (r"write a new instruction", f"```\n{prompt}\n```"),  # reflection (GEPA's prompt)
        ],
        model_name="optimizer",
    )


# The scenarios below pin the repairer's own path: no bootstrapped demo candidate, whole
# validation runs (tests of those two defaults are further down).
LEGACY = {"bootstrap_demos": False, "early_rejection": False, **REPAIRER_PATH}


def run(tmp_path, opt, *, epochs=1, progress=False, **kw):
    kw["config"] = (kw.get("config") or OptimizerConfig()).model_copy(update=LEGACY)
    return train(
        solver_spec(),
        train=data(8, "t"),
        val=data(6, "v"),
        metric="numeric_match",
        models=executor(),
        optimizer_model=opt,
        epochs=epochs,
        batch_size=4,
        run_dir=tmp_path / "run",
        progress=progress,
        **kw,
    )


def test_create_optimizer_returns_an_uncompiled_graph_with_the_design_nodes():
    builder = create_optimizer(
        metric="numeric_match", models=executor(), optimizer_model=optimizer("x")
    )
    assert isinstance(builder, StateGraph)
    for node in (
        "forward",
        "global_critic",
        "local_repair",
        "validate_format",
        "evaluate_candidate",
        "decide",
        "momentum",
    ):
        assert node in builder.nodes


def test_good_patch_is_committed_with_lineage_and_score_rises(tmp_path):
    result = run(tmp_path, optimizer("Add one. MAGIC."))
    assert result.baseline_score == pytest.approx(0.5)
    assert result.best_score == 1.0
    assert "MAGIC" in result.best_spec.layer("solve").agents[0].prompt
    run_dir = tmp_path / "run"
    assert (run_dir / "spec.v0.yaml").exists() and (run_dir / "spec.v1.yaml").exists()
    assert "MAGIC" in ann.load_spec(run_dir / "spec.v1.yaml").layer("solve").agents[0].prompt
    lineage = [json.loads(line) for line in (run_dir / "versions.jsonl").read_text().splitlines()]
    assert [(v["version"], v["parent"]) for v in lineage] == [(0, None), (1, 0)]
    assert lineage[1]["patch"]["ops"][0]["op"] == "set_prompt" and lineage[1]["val_score"] == 1.0
    assert lineage[1]["rationale"] == "be explicit"
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2  # 8 examples / batch 4
    assert history[0]["decision"]["accepted"] is True
    assert history[0]["gradient"]["blame"][0]["layer"] == "solve"
    assert history[1]["skipped"] is True  # the new spec solves the second batch
    assert (run_dir / "report.md").exists() and (run_dir / "learning_curve.png").exists()
    assert (run_dir / "best.yaml").exists() and (run_dir / "checkpoints.sqlite").exists()
    assert list((run_dir / "records").glob("step-*.jsonl"))
    report = (run_dir / "report.md").read_text()
    assert "0.500 (v0) -> 1.000 (v1)" in report and "MAGIC" in report


def test_progress_in_a_log_is_a_plain_line_per_step(tmp_path, capsys, monkeypatch):
    """Under nohup or CI (stderr not a terminal) a rich bar prints nothing until the end; an
    hour of training must show its steps as they finish."""
    from ann_langgraph import progress as progress_module

    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 3600.0)  # only step lines
    result = run(tmp_path, optimizer("Add one. MAGIC."), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    steps = [line for line in lines if "best val" in line]
    assert [line.split(" | ")[0] for line in steps] == ["train 1/2 steps", "train 2/2 steps"]
    assert "best val 1.000 (v1) | 1 accepted, 0 rejected" in steps[0]
    assert re.search(r"elapsed 0m\d\ds$", lines[-1])
    assert len(result.history) == 2
    # each evaluation inside a step says when it is done (minutes each on a real model)
    evals = [line.split(" | ")[1] for line in lines if "best val" not in line]
    assert evals[0] == "scoring the starting spec: 6/6, mean 0.50"
    assert "forward pass on the minibatch: 4/4, mean 0.50" in evals
    assert "validating candidate 1/1 (solve): 6/6, mean 1.00" in evals


def test_progress_inside_a_long_evaluation(tmp_path, capsys, monkeypatch):
    """Scoring the starting spec or a candidate takes many minutes on the embedded model: a
    log shows how far it got, not silence until the step ends."""
    from ann_langgraph import progress as progress_module

    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)  # every event prints
    run(tmp_path, optimizer("Add one. MAGIC."), progress=True)
    lines = capsys.readouterr().err.splitlines()
    start = [line for line in lines if "scoring the starting spec:" in line]
    assert [line.split(" | ")[1].split(",")[0] for line in start] == [
        f"scoring the starting spec: {k}/6" for k in range(1, 7)
    ]
    assert all(line.startswith("train 0/2 steps | ") for line in start)


def test_progress_before_the_first_batch_shows_a_dash_not_none(tmp_path, capsys, monkeypatch):
    from ann_langgraph import progress as progress_module

    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)  # a line per update
    run(tmp_path, optimizer("Add one. MAGIC."), progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert any("| setup | batch - |" in line for line in lines)
    assert not any("None" in line for line in lines)


def test_harmful_patch_is_rolled_back_and_spec_unchanged(tmp_path):
    result = run(tmp_path, optimizer("BAD prompt."))
    assert result.best_score == pytest.approx(0.5)
    assert result.best_spec.fingerprint == solver_spec().fingerprint
    assert not (tmp_path / "run" / "spec.v1.yaml").exists()
    rows = result.history
    assert all(not r["decision"].get("accepted") for r in rows)
    first, *again = [c for r in rows for c in r["candidates"]]
    assert first["valid"] and first["val_score"] == 0.0
    # proposed again in a later step: refused before it costs a validation run
    assert again and all(not c["valid"] and "this same prompt" in c["reason"] for c in again)


@pytest.mark.parametrize("garbage", ["not json at all", {"unexpected": "shape"}])
def test_malformed_optimizer_output_is_recorded_and_training_goes_on(tmp_path, garbage):
    opt = ScriptedChatModel(rules=[(r"global critic", CRITIC)], default=garbage)
    result = run(tmp_path, opt)
    rows = result.history
    assert len(rows) == 2
    assert result.best_score == pytest.approx(0.5)
    cands = [c for r in rows for c in r["candidates"]]
    assert cands and all(not c["valid"] and c["reason"] for c in cands)
    # the repairer was asked again with the validation error shown (one retry)
    retries = [c for c in opt.calls if "previous answer was not valid" in c["text"]]
    assert retries


def test_invalid_patch_names_are_rejected_by_format_validation(tmp_path):
    bad = {"rationale": "r", "ops": [{"op": "remove_agent", "layer": "solve", "agent": "solver"}]}
    opt = ScriptedChatModel(rules=[(r"global critic", CRITIC), (r"repair one layer", bad)])
    result = run(tmp_path, opt)
    reasons = [c["reason"] for r in result.history for c in r["candidates"]]
    assert reasons and all("last agent" in reason for reason in reasons)


def test_rejected_patch_is_visible_to_the_next_critic_and_repairer(tmp_path):
    opt = optimizer("BAD prompt.")
    run(tmp_path, opt)
    critic_calls = [c["text"] for c in opt.calls if "global critic" in c["text"]]
    repair_calls = [c["text"] for c in opt.calls if "repair one layer" in c["text"]]
    # step 2's repairer repeats the rejected prompt, is told so, and is asked once more
    assert len(critic_calls) == 2 and len(repair_calls) == 3
    assert "this same prompt was proposed at epoch 1 step 1" in repair_calls[2]
    assert "REJECTED" not in critic_calls[0]
    assert (
        "REJECTED set_prompt solve.solver" in critic_calls[1] and "do not retry" in critic_calls[1]
    )
    assert "REJECTED" in repair_calls[1] and "BAD prompt." in repair_calls[1]
    # momentum smoothing: the second repairer also sees the earlier critique of the layer
    assert "(weight 0.50, earlier)" in repair_calls[1]


def test_budget_stops_at_a_step_boundary_with_state_saved(tmp_path):
    result = run(tmp_path, optimizer("BAD prompt."), budget=Budget(max_calls=10))
    assert result.stop_reason.startswith("call budget reached")
    assert len(result.history) == 1  # baseline (6) + step 1 went past 10 calls
    assert (tmp_path / "run" / "history.jsonl").read_text().count("\n") == 1


def test_run_dir_refuses_to_overwrite_without_resume(tmp_path):
    run(tmp_path, optimizer("Add one. MAGIC."))
    with pytest.raises(RunDirError, match="resume"):
        run(tmp_path, optimizer("Add one. MAGIC."))
    again = run(tmp_path, optimizer("Add one. MAGIC."), resume=True)  # finished run: no new work
    assert again.best_score == 1.0 and len(again.history) == 2


def test_cache_makes_a_rerun_free(tmp_path):
    first_exec = executor()
    kw = dict(
        train=data(8, "t"),
        val=data(6, "v"),
        metric="numeric_match",
        epochs=1,
        batch_size=4,
        progress=False,
    )
    train(
        solver_spec(),
        models=first_exec,
        optimizer_model=optimizer("BAD."),
        run_dir=tmp_path / "a",
        **kw,
    )
    paid = len(first_exec.calls)
    assert paid > 0
    # same run, new directory but the same cache file -> no executor call is paid again
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cache.sqlite").write_bytes((tmp_path / "a" / "cache.sqlite").read_bytes())
    second_exec, second_opt = executor(), optimizer("BAD.")
    result = train(
        solver_spec(), models=second_exec, optimizer_model=second_opt, run_dir=tmp_path / "b", **kw
    )
    assert len(second_exec.calls) == 0 and len(second_opt.calls) == 0
    assert result.usage["calls"] == 0 and result.usage["cached_calls"] >= paid


def test_compiled_optimizer_streams_with_a_user_checkpointer():
    graph = create_optimizer(
        metric="numeric_match",
        models=executor(),
        optimizer_model=optimizer("MAGIC"),
        config=OptimizerConfig(epochs=1, batch_size=4, **LEGACY),
    ).compile(checkpointer=InMemorySaver())
    nodes = []
    cfg = {"configurable": {"thread_id": "t"}}
    for update in graph.stream(
        {"spec": solver_spec().model_dump(mode="json"), "train": data(4, "t"), "val": data(4, "v")},
        cfg,
        stream_mode="updates",
    ):
        nodes.extend(update)
    assert nodes[:7] == [
        "setup",
        "check_budget",
        "select_parent",
        "forward",
        "global_critic",
        "local_repair",
        "validate_format",
    ]
    final = graph.get_state(cfg).values
    assert final["best_score"] == 1.0 and final["version"] == 1


def test_budget_stopped_run_continues_when_resumed_with_a_larger_budget(tmp_path):
    stopped = run(tmp_path, optimizer("BAD prompt."), budget=Budget(max_calls=10))
    assert stopped.stop_reason.startswith("call budget reached") and len(stopped.history) == 1
    same = run(tmp_path, optimizer("BAD prompt."), budget=Budget(max_calls=10), resume=True)
    assert same.stop_reason.startswith("call budget reached") and len(same.history) == 1
    more = run(tmp_path, optimizer("BAD prompt."), budget=Budget(max_calls=1000), resume=True)
    assert more.stop_reason == "epochs done" and len(more.history) == 2
    assert [row["global_step"] for row in more.history] == [0, 1]


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        ({"op": "set_role", "layer": "solve", "agent": "solver", "role": "string"}, "placeholder"),
        (
            {"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "Value2"},
            "placeholder",
        ),
        ({"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": " "}, "placeholder"),
        (
            {
                "op": "set_prompt",
                "layer": "solve",
                "agent": "solver",
                "prompt": "I apologize for any confusion, but I'm not able to generate the new "
                "instruction. Please provide the specific details you want.",
            },
            "a reply to the optimizer",
        ),
        (
            {
                "op": "set_prompt",
                "layer": "solve",
                "agent": "solver",
                "prompt": "Sorry, I cannot help.",
            },
            "a reply to the optimizer",
        ),
        (
            {
                "op": "add_agent",
                "layer": "solve",
                "agent": {"id": "value1", "role": "string", "prompt": "Value2"},
            },
            "placeholder",
        ),
    ],
)
def test_schema_placeholder_text_is_rejected_by_format_validation(tmp_path, op, fragment):
    """A small model echoing the schema ('role': 'string') never reaches validation scoring."""
    patch = {"rationale": "r", "ops": [op]}
    opt = ScriptedChatModel(rules=[(r"global critic", CRITIC), (r"repair one layer", patch)])
    result = run(tmp_path, opt)
    cands = [c for r in result.history for c in r["candidates"]]
    assert cands and all(not c["valid"] and fragment in c["reason"] for c in cands)
    assert result.best_spec.fingerprint == solver_spec().fingerprint
    assert all("val_score" not in c for c in cands)


def test_an_instruction_that_only_mentions_providing_is_not_taken_for_a_reply():
    from ann_langgraph.optimize.validate import placeholder_reason

    def reason(prompt: str) -> str | None:
        op = {"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": prompt}
        return placeholder_reason({"ops": [op]})

    assert reason("Please provide the final answer as a number.") is None
    assert reason("Write the function. Do not apologize; return only code.") is None
    assert "reply to the optimizer" in (reason("Could you please provide more context?") or "")


def test_a_critic_that_blames_nothing_falls_back_to_the_output_layer(tmp_path):
    """Failing examples and an empty blame list: the last layer is repaired, with the feedback."""
    patch = {
        "rationale": "be explicit",
        "ops": [
            {"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "Add one. MAGIC."}
        ],
    }
    silent = {"summary": "hard to say", "blame": []}
    opt = ScriptedChatModel(rules=[(r"global critic", silent), (r"repair one layer", patch)])
    result = run(tmp_path, opt)
    first = result.history[0]
    assert first["gradient"]["fallback"] is True
    assert [b["layer"] for b in first["gradient"]["blame"]] == ["solve"]
    assert "expected" in first["gradient"]["blame"][0]["reason"]  # the metric's feedback
    assert result.best_score == 1.0
    repair = [c["text"] for c in opt.calls if "repair one layer" in c["text"]]
    assert repair and "critic named no layer" in repair[0]
    # the fallback can be turned off: then nothing is repaired
    off = run(
        tmp_path / "off",
        ScriptedChatModel(rules=[(r"global critic", silent)]),
        config=OptimizerConfig(fallback_blame=False),
    )
    assert all(r["gradient"]["error"] == "the critic blamed no layer" for r in off.history)
    assert all(r["candidates"] == [] for r in off.history)


def test_a_critic_with_no_usable_answer_falls_back_to_the_output_layer(tmp_path):
    """A critic whose answer cannot be parsed (twice) still leads to a repair of the last layer;
    its error stays in the history. Small local critics often fail this way."""
    patch = {
        "rationale": "be explicit",
        "ops": [
            {"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "Add one. MAGIC."}
        ],
    }
    opt = ScriptedChatModel(
        rules=[(r"global critic", "no tool call"), (r"repair one layer", patch)]
    )
    result = run(tmp_path, opt)
    first = result.history[0]["gradient"]
    assert first["error"] and first["attempts"] == 2 and first["fallback"] is True
    assert [b["layer"] for b in first["blame"]] == ["solve"]
    assert first["blame"][0]["reason"].startswith("the critic gave no usable answer")
    assert result.best_score == 1.0
    off = run(
        tmp_path / "off",
        ScriptedChatModel(rules=[(r"global critic", "no tool call")]),
        config=OptimizerConfig(fallback_blame=False),
    )
    assert all(r["gradient"]["error"] and r["candidates"] == [] for r in off.history)
    assert all(not r["gradient"]["blame"] for r in off.history)


def test_resume_accepts_a_run_saved_before_an_option_existed_but_not_a_changed_option(tmp_path):
    run(tmp_path, optimizer("Add one. MAGIC."))
    run_file = tmp_path / "run" / "run.json"
    saved = json.loads(run_file.read_text())
    del saved["config"]["fallback_blame"]  # as written by a version without that option
    run_file.write_text(json.dumps(saved))
    again = run(tmp_path, optimizer("Add one. MAGIC."), resume=True)
    assert again.best_score == 1.0
    with pytest.raises(RunDirError, match="config"):
        run(tmp_path, optimizer("x"), resume=True, config=OptimizerConfig(min_delta=0.5))
    # concurrency only changes speed (responses are cached and seeded): free to differ
    saved["config"]["concurrency"] = 4  # as saved when the default was 4
    run_file.write_text(json.dumps(saved))
    assert run(tmp_path, optimizer("Add one. MAGIC."), resume=True).best_score == 1.0
    assert (
        run(
            tmp_path,
            optimizer("Add one. MAGIC."),
            resume=True,
            config=OptimizerConfig(concurrency=2),
        ).best_score
        == 1.0
    )


def test_report_says_how_many_prompt_tokens_the_server_processed(tmp_path):
    model = executor().model_copy(update={"prompt_cache": True})
    opt = optimizer("Add one. MAGIC.").model_copy(update={"prompt_cache": True})
    config = OptimizerConfig().model_copy(update=LEGACY)
    result = train(
        solver_spec(),
        train=data(8, "t"),
        val=data(6, "v"),
        metric="numeric_match",
        models=model,
        optimizer_model=opt,
        batch_size=4,
        run_dir=tmp_path / "run",
        config=config,
        progress=False,
    )
    sent, reused = result.paid["input_tokens"], result.paid["reused_input_tokens"]
    assert 0 < reused < sent  # examples share the system prompt; each question differs
    line = next(
        line
        for line in (tmp_path / "run" / "report.md").read_text().splitlines()
        if line.startswith("- Prompt tokens:")
    )
    assert f"{sent} sent, {sent - reused} processed" in line


def test_progress_of_a_chunked_validation_counts_every_chunk():
    """A candidate is validated in chunks (early rejection): the progress event's count and
    mean cover the chunks before, not only the one running."""
    from ann_langgraph.metrics import get_metric
    from ann_langgraph.optimize.config import Budget, OptimizerConfig
    from ann_langgraph.optimize.context import OptimizerContext

    events: list[dict] = []
    ctx = OptimizerContext(
        cfg=OptimizerConfig(concurrency=1),
        budget=Budget(),
        metric=get_metric("numeric_match"),
        models=ScriptedChatModel(default="Answer: 0", model_name="executor"),
        opt_model=ScriptedChatModel(default="-", model_name="optimizer"),
        opt_label="optimizer",
        on_event=lambda kind, data: events.append({"kind": kind, **data}),
    )
    spec = make_spec([{"name": "solve", "agents": [agent("solver")]}])
    rows = [{"id": f"x{i}", "input": "q", "target": 5} for i in range(2)]
    ctx.run_eval(spec, rows, label="validating", scored_before=[1.0, 1.0], total=4)
    seen = [(e["done"], e["total"], round(e["mean"], 3)) for e in events]
    assert seen == [(3, 4, 0.667), (4, 4, 0.5)]
    events.clear()
    ctx.run_eval(spec, rows)  # no label: no events
    assert events == []
