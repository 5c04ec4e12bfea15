"""Reflective proposals (GEPA's mutation) and minibatch screening, in the optimizer graph."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_openai import ChatOpenAI

import ann_langgraph as ann
from ann_langgraph.optimize.reflect import (
    instruction_from_reply,
    reflection_dataset,
    reflection_prompt,
    restates_reflection_prompt,
    sampler,
)
from ann_langgraph.optimize.screen import screen_verdict
from ann_langgraph.testing import ScriptedChatModel
from ann_langgraph.train import train

from .conftest import agent, make_spec
from .test_optimizer import CRITIC, data, executor


def solver_spec(**kw: Any) -> ann.GraphSpec:
    return make_spec(
        [
            {
                "name": "solve",
                "agents": [agent("solver", "a solver", "Add one to the number.", **kw)],
            }
        ],
        answer_format="last_number",
    )


def optimizer(repair_prompt: str, reflections: list[str]) -> ScriptedChatModel:
    """The repairer always proposes ``repair_prompt``; reflection answers ``reflections`` in
    turn (fenced, as GEPA's prompt asks), repeating the last."""
    patch = {
        "rationale": "be explicit",
        "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": repair_prompt}],
    }
    asked: list[int] = []

    def reflect(messages: list[BaseMessage], **kw: Any) -> str:
        asked.append(1)
        return f"Here it is:\n```\n{reflections[min(len(asked), len(reflections)) - 1]}\n```"

    return ScriptedChatModel(
        rules=[
            (r"global critic", CRITIC),
            (r"repair one layer", patch),
            (r"write a new instruction", reflect),
        ],
        model_name="optimizer",
    )


def run(
    tmp_path: Any,
    opt: ScriptedChatModel,
    *,
    epochs: int = 1,
    budget: ann.Budget | None = None,
    **cfg: Any,
) -> ann.TrainResult:
    # one draw at a time: the scripted reflection answers in call order
    options = {
        "bootstrap_demos": False,
        "early_rejection": False,
        "pareto_parents": False,
        "parallel_samples": False,
    }
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
        progress=False,
        budget=budget,
        config=ann.OptimizerConfig(**{**options, **cfg}),
    )


def _candidates(result: ann.TrainResult, step: int = 0) -> list[dict[str, Any]]:
    return result.history[step]["candidates"]


# -- several proposals per step -------------------------------------------------------------


def test_each_step_samples_several_whole_instruction_rewrites(tmp_path):
    opt = optimizer("BAD.", ["Think, then add one. MAGIC", "Add one; show the sum.", "Say +1."])
    result = run(tmp_path, opt, reflection_samples=3, screening=False)
    reflected = [c for c in _candidates(result) if c["source"] == "reflection"]
    assert len(reflected) == 3
    prompts = [c["patch"]["ops"][0]["prompt"] for c in reflected]
    # the fenced text, whole, as the agent's new prompt (GEPA's output extractor)
    assert prompts == ["Think, then add one. MAGIC", "Add one; show the sum.", "Say +1."]
    assert all(c["patch"]["ops"][0]["op"] == "set_prompt" for c in reflected)
    # the one that fixes odd numbers is committed
    assert result.versions[-1]["patch"]["ops"][0]["prompt"] == "Think, then add one. MAGIC"
    assert result.best_score == 1.0
    calls = [c for c in opt.calls if "write a new instruction" in c["text"]]
    assert len(calls) == 3
    # the reflection shows the current instruction and the agent's own steps with feedback
    assert "```\nAdd one to the number.\n```" in calls[0]["text"]
    assert "## Generated Outputs\nAnswer: 1" in calls[0]["text"]
    assert "## Feedback\nScore 0.00." in calls[0]["text"]
    # ours, before GEPA's answer format: hold for every input, and the critic's finding
    text = calls[0]["text"]
    note = text.index("not only the examples above")
    finding = text.index("found this about this step: the solver forgets to add one")
    assert note < finding < text.index("Provide the new instructions within ``` blocks.")


# Seen on the 1.5B model (dates demo): no fence, a preamble, the instruction under a heading,
# then steps, then a section retelling a training example.
SMALL_MODEL_REPLY = """Certainly, let's write a new instruction for the assistant based on the \
given feedback and examples.

### New Instruction

Given a sentence that mentions a date, write down the date as `yyyy-mm-dd`.

### Detailed Instructions

1. **Extract the Date:** Identify the date mentioned in the sentence.

### Feedback and Example Response

**Feedback:**
Score 0.00. expected '2002-04-29', got 'The sentence mentions the date 29 April 2002.'
"""


def test_the_instruction_is_taken_from_a_small_models_reply():
    kept = instruction_from_reply(SMALL_MODEL_REPLY)
    assert kept.startswith("Given a sentence that mentions a date")
    assert "Detailed Instructions" in kept and "Identify the date" in kept  # its steps stay
    assert "Certainly" not in kept and "2002" not in kept and "Feedback" not in kept
    # GEPA's fenced block still wins, with the preamble around it dropped
    assert instruction_from_reply("Sure! Here it is:\n```\nAdd one.\n```\nHope it helps.") == (
        "Add one."
    )
    # a reply cut off inside its block (the output cap) keeps what the block holds
    assert instruction_from_reply("Here is the new instruction:\n```text\nAdd one.\nShow it.") == (
        "Add one.\nShow it."
    )
    # a preamble paragraph, or a preamble ending in a colon, goes; plain instructions stay whole
    assert instruction_from_reply("Certainly! Here is a better one.\n\nAdd one.") == "Add one."
    assert instruction_from_reply("Sure, here it is: Add one.") == "Add one."
    colon = "Based on the sentence, write the date in this format: YYYY-MM-DD."
    assert instruction_from_reply(colon) == colon
    plain = "Solve the problem. Let the last line be the number."
    assert instruction_from_reply(plain) == plain
    assert instruction_from_reply("Let's think step by step, then answer.") == (
        "Let's think step by step, then answer."
    )
    # bold headings, and an explanation after the instruction
    assert instruction_from_reply("**New Instruction:**\nAdd one.\n\n**Explanation:**\nWhy.") == (
        "Add one."
    )


def test_a_reflection_reply_with_a_preamble_and_headings_proposes_the_instruction_only(tmp_path):
    opt = ScriptedChatModel(
        rules=[
            (r"global critic", CRITIC),
            (r"repair one layer", {"rationale": "r", "ops": []}),
            (
                r"write a new instruction",
                "Certainly! Here is the new instruction.\n\n### New Instruction\n\n"
                "Think, then add one. MAGIC\n\n### Example Response\nAnswer: 3",
            ),
        ],
        model_name="optimizer",
    )
    result = run(tmp_path, opt, reflection_samples=1, screening=False)
    (reflected,) = [c for c in _candidates(result) if c["source"] == "reflection"]
    assert reflected["patch"]["ops"][0]["prompt"] == "Think, then add one. MAGIC"
    assert result.best_score == 1.0


def test_the_first_draws_go_out_at_once_and_are_judged_in_sample_order(tmp_path):
    """Three first draws meet at a barrier (drawn one by one, the first would wait alone and
    time out); each answers from its own prompt, so the proposals match the sequential run."""
    import hashlib
    import threading

    barrier = threading.Barrier(3, timeout=20)

    def reflect(messages: list[BaseMessage], **kw: Any) -> str:
        text = str(messages[-1].content)
        if "was not used" not in text:
            barrier.wait()
        # each sample is shown its own rotation of the examples: the reply is its prompt's
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        return f"```\nAdd one ({digest}). MAGIC\n```"

    def scripted() -> ScriptedChatModel:
        return ScriptedChatModel(
            rules=[
                (r"global critic", CRITIC),
                (r"repair one layer", {"rationale": "r", "ops": []}),
                (r"write a new instruction", reflect),
            ],
            model_name="optimizer",
        )

    parallel = run(tmp_path / "p", scripted(), reflection_samples=3, screening=False,
                   parallel_samples=True)  # fmt: skip
    barrier = threading.Barrier(1)  # one by one: nothing to meet
    sequential = run(tmp_path / "s", scripted(), reflection_samples=3, screening=False)

    def proposed(result: ann.TrainResult) -> list[str]:
        return [
            c["patch"]["ops"][0]["prompt"]
            for c in _candidates(result)
            if c["source"] == "reflection" and c["patch"]
        ]

    assert len(proposed(parallel)) == 3 and len(set(proposed(parallel))) == 3
    assert proposed(parallel) == proposed(sequential)


def test_no_reflection_when_textual_patches_or_reflection_are_off(tmp_path):
    for cfg in ({"reflection": False}, {"textual_patches": False}, {"reflection_samples": 0}):
        opt = optimizer("BAD.", ["Add one. MAGIC"])
        result = run(tmp_path / str(len(cfg)) / next(iter(cfg)), opt, **cfg)
        assert not [c for c in _candidates(result) if c["source"] == "reflection"]
        assert not [c for c in opt.calls if "write a new instruction" in c["text"]]


def test_a_repeated_instruction_is_drawn_again_and_never_validated(tmp_path):
    # every sample says the same: the second proposal is drawn again twice, then given up
    opt = optimizer("BAD.", ["Add one. MAGIC"])
    result = run(tmp_path, opt, reflection_samples=2, reflection_retries=2, screening=False)
    first, second = [c for c in _candidates(result) if c["source"] == "reflection"]
    assert first["valid"] and first["patch"]["ops"][0]["prompt"] == "Add one. MAGIC"
    assert second["patch"] is None and not second["valid"]
    assert second["attempts"] == 3 and len(second["resampled"]) == 3
    assert all("sibling" in why for why in second["resampled"])
    assert "val_score" not in second  # no validation run was spent on it


def test_a_sample_that_restates_the_reflection_request_is_drawn_again(tmp_path):
    """Seen on the 1.5B model: GEPA's own words to the proposer came back as the new prompt."""
    meta = (
        "Read the input carefully and identify the input format and infer detailed task "
        "description about the task you wish to solve with the assistant."
    )
    opt = optimizer("BAD.", [meta, "Add one. MAGIC"])
    result = run(tmp_path, opt, reflection_samples=1, reflection_retries=2, screening=False)
    [proposal] = [c for c in _candidates(result) if c["source"] == "reflection"]
    assert proposal["attempts"] == 2 and proposal["patch"]["ops"][0]["prompt"] == "Add one. MAGIC"
    assert "restated the request for an instruction" in proposal["resampled"][0]
    assert restates_reflection_prompt(meta)
    assert not restates_reflection_prompt("Add one to the number and give the sum.")


def test_a_prompt_rejected_earlier_is_not_proposed_again(tmp_path):
    # epoch 1 rejects "BAD ..." on validation; epoch 2's reflection proposes it again: resampled
    opt = optimizer("BAD.", ["Add one. BAD idea", "Add one. BAD idea", "Add one. MAGIC"])
    result = train(
        solver_spec(),
        train=data(4, "t"),
        val=data(6, "v"),
        metric="numeric_match",
        models=executor(),
        optimizer_model=opt,
        epochs=2,
        batch_size=4,
        run_dir=tmp_path / "run",
        progress=False,
        config=ann.OptimizerConfig(
            bootstrap_demos=False,
            early_rejection=False,
            pareto_parents=False,
            textual_patches=True,
            reflection_samples=1,
            screening=False,
        ),
    )
    second = next(c for c in _candidates(result, 1) if c["source"] == "reflection")
    assert any("proposed at epoch 1 step 1" in why for why in second["resampled"])
    assert second["patch"]["ops"][0]["prompt"] == "Add one. MAGIC"


def test_the_reflection_prompt_leaves_out_critique_sentences_that_retell_a_problem():
    from ann_langgraph.optimize.copies import TrainingInputs

    inputs = TrainingInputs([{"id": "t1", "input": "Tobias shoveled 17 driveways in Amarillo."}])
    critique = inputs.general_part(
        "The solver ignores units. Tobias shoveled 17 driveways in Amarillo and it said 16."
    )
    assert critique == "The solver ignores units."
    text = reflection_prompt("Solve.", [{"Inputs": "x", "Feedback": "y"}], critique=critique)
    assert "found this about this step: The solver ignores units." in text
    assert "Tobias" not in text
    assert text.rstrip().endswith("Provide the new instructions within ``` blocks.")
    assert "found this" not in reflection_prompt("Solve.", [{"Inputs": "x"}])


def test_reflection_dataset_shows_failures_first_rotated_then_a_pass():
    results = [
        {"id": "a", "score": 0.0, "feedback": "expected 2", "input": "qa", "output": "1"},
        {"id": "b", "score": 1.0, "feedback": "", "input": "qb", "output": "3"},
        {"id": "c", "score": 0.0, "feedback": "expected 4", "input": "qc", "output": "3"},
    ]
    records = [
        {
            "layer": "solve",
            "agent_id": "solver",
            "kind": "llm",
            "example_id": rid,
            "input": f"asked {rid}",
            "output": f"said {rid}",
            "error": None,
            "sample": 0,
            "truncated": "output cut off at max_tokens=8 after 8 tokens (unfinished)"
            if rid == "c"
            else "",
        }
        for rid in "abc"
    ]
    rows = reflection_dataset(results, records, layer="solve", agent="solver", count=3)
    assert [r["Inputs"] for r in rows] == ["asked a", "asked c", "asked b"]
    assert rows[0]["Finish reason"].startswith("stop")
    assert rows[1]["Finish reason"].startswith("length: output cut off at max_tokens=8")
    assert rows[0]["Feedback"] == "Score 0.00. expected 2"
    shifted = reflection_dataset(results, records, layer="solve", agent="solver", count=2, offset=1)
    assert [r["Inputs"] for r in shifted] == ["asked c", "asked b"]


def test_sampler_sets_temperature_and_a_seed_per_sample():
    model = ChatOpenAI(model="m", api_key="sk-test", base_url="http://127.0.0.1:9", temperature=0)
    one = sampler(model, temperature=1.0, seed=5)
    assert isinstance(one, ChatOpenAI)
    assert one.temperature == 1.0 and one.seed == 5
    assert model.temperature == 0  # the optimizer's own model is untouched
    scripted = ScriptedChatModel(default="x")
    assert sampler(scripted, temperature=1.0, seed=1) is scripted


def test_sampler_lowers_the_output_cap_and_never_raises_it():
    def cap(max_tokens: int | None, limit: int | None) -> int | None:
        model = ChatOpenAI(
            model="m", api_key="sk-test", base_url="http://127.0.0.1:9", max_tokens=max_tokens
        )
        return sampler(model, temperature=1.0, seed=1, max_tokens=limit).max_tokens

    assert cap(1536, 768) == 768
    assert cap(300, 768) == 300
    assert cap(None, 768) == 768
    assert cap(1536, None) == 1536


# -- minibatch screening -----------------------------------------------------------------------


def test_screen_verdict_needs_a_strictly_higher_minibatch_sum():
    parent = {"a": 1.0, "b": 0.0, "c": 0.0}
    assert screen_verdict({"a": 1.0, "b": 1.0, "c": 0.0}, parent)[0]
    assert not screen_verdict({"a": 1.0, "b": 0.0, "c": 0.0}, parent)[0]  # a tie stops it
    assert not screen_verdict({"a": 0.0, "b": 1.0, "c": 0.0}, parent)[0]
    assert "2/3 beats its parent's 1/3" in screen_verdict({"a": 1, "b": 1, "c": 0}, parent)[1]


def test_screening_stops_a_minibatch_loser_before_validation_and_never_a_winner(tmp_path):
    opt = optimizer("BAD.", ["Add one. MAGIC"])
    result = run(tmp_path, opt, reflection_samples=1)
    by_source = {c["source"]: c for c in _candidates(result)}
    loser, winner = by_source["repairer"], by_source["reflection"]
    assert loser["screen"]["passed"] is False and not loser["valid"]
    assert loser["reason"].startswith("screened out: minibatch 0/4 does not beat")
    assert "val_score" not in loser  # never validated
    assert loser["screen"]["examples_saved"] == 6 and loser["screen"]["calls_saved_est"] == 6
    assert winner["screen"]["passed"] is True and winner["val_score"] == 1.0
    assert result.versions[-1]["patch"]["ops"][0]["prompt"] == "Add one. MAGIC"
    # the validation runs: the baseline and the winner only (6 examples each)
    records = (tmp_path / "run" / "records").glob("*.jsonl")
    assert records
    report = (tmp_path / "run" / "report.md").read_text()
    assert "screened out" in report and "calls saved by minibatch screening: 6" in report


def test_without_screening_the_loser_pays_for_validation(tmp_path):
    opt = optimizer("BAD.", ["Add one. MAGIC"])
    result = run(tmp_path, opt, reflection_samples=1, screening=False)
    loser = next(c for c in _candidates(result) if c["source"] == "repairer")
    assert "screen" not in loser and loser["valid"] and loser["val_score"] == 0.0


def test_the_first_step_raises_a_cap_that_cuts_answers_off(tmp_path):
    # answers need 6 words; the cap is 4: every answer is cut off, whatever the prompt says
    spec = solver_spec(max_tokens=4)
    ex = ScriptedChatModel(
        respond=lambda m, **kw: (
            "so the answer is then "
            + str(int(re.search(r"What is (\d+)", str(m[-1].content)).group(1)) + 1)
        ),  # type: ignore[union-attr]
        honour_max_tokens=True,
        model_name="executor",
    )
    opt = optimizer("Answer briefly.", ["Answer briefly please."])
    result = train(
        spec,
        train=data(4, "t"),
        val=data(4, "v"),
        metric="numeric_match",
        models=ex,
        optimizer_model=opt,
        epochs=1,
        batch_size=4,
        run_dir=tmp_path / "run",
        progress=False,
        config=ann.OptimizerConfig(bootstrap_demos=False, early_rejection=False),
    )
    cap = next(c for c in _candidates(result) if c["source"] == "operator:raise_cap")
    assert cap["patch"]["ops"] == [
        {
            "op": "set_agent_param",
            "layer": "solve",
            "agent": "solver",
            "param": "max_tokens",
            "value": 512,
        }
    ]
    assert cap["accepted"] and result.best_score == 1.0
    assert result.best_spec.layers[0].agents[0].max_tokens == 512
    # the repairer was told too, in numbers
    repair = next(c["text"] for c in opt.calls if "repair one layer" in c["text"])
    assert "solver: 4 of 4 answers cut off at max_tokens=4" in repair


# -- the rollout budget inside a step ------------------------------------------------------------


def test_a_step_spends_only_the_rollouts_its_budget_has_left(tmp_path):
    """Baseline 6 + minibatch 4 + four dry runs (one per candidate) + one validation 6 = 20 of
    23: the second candidate's validation (6) does not fit, so it is not run, and no later step
    starts (it needs 11)."""
    opt = optimizer("BAD.", ["Think, then add one. MAGIC", "Add one; show the sum.", "Say +1."])
    result = run(
        tmp_path,
        opt,
        epochs=3,
        budget=ann.Budget(max_rollouts=23),
        reflection_samples=3,
        screening=False,
    )
    (step,) = result.history
    scored = [c for c in step["candidates"] if "val_score" in c]
    stopped = [c for c in step["candidates"] if c.get("budget_stop")]
    assert len(scored) == 1 and stopped
    assert all("rollout budget: 3 left, a validation needs 6" in c["reason"] for c in stopped)
    assert result.usage["rollouts"] == 20 <= 23
    assert "rollout budget reached (3 left of 23; a step needs 11" in str(result.stop_reason)


def test_screening_is_skipped_when_its_validation_could_not_follow(tmp_path):
    opt = optimizer("BAD.", ["Think, then add one. MAGIC", "Add one; show the sum."])
    # 3 dry runs, then one screening and its validation
    result = run(
        tmp_path, opt, budget=ann.Budget(max_rollouts=6 + 4 + 3 + 10 + 3), reflection_samples=2
    )
    candidates = result.history[0]["candidates"]
    screened = [c for c in candidates if c.get("screen")]
    assert screened and all(c["screen"]["n"] == 4 for c in screened)
    assert result.usage["rollouts"] <= 26
    assert any(
        "screening and validating it needs 10" in str(c.get("reason"))
        for c in candidates
        if c.get("budget_stop")
    )
