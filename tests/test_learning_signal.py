"""The learning signal and sound acceptance: truncation reaches the critic, nonsense patches are
rejected, early rejection never drops a winner, demonstrations are weights (scripted models)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ann_langgraph as ann
from ann_langgraph.answers import extract_answer
from ann_langgraph.metrics import code_passes_tests
from ann_langgraph.optimize.candidates import cannot_win
from ann_langgraph.optimize.decide import paired_active, sign_test_p
from ann_langgraph.optimize.validate import sense_reason
from ann_langgraph.testing import ScriptedChatModel
from ann_langgraph.train import train

from .conftest import REPAIRER_PATH, agent, make_spec


def data(n: int, prefix: str) -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "input": f"What is {i} plus one?", "target": str(i + 1)}
        for i in range(n)
    ]


CRITIC = {
    "summary": "Answers are wrong.",
    "blame": [{"layer": "solve", "reason": "the solver is wrong"}],
}


def opt_model(patch: dict | None = None) -> ScriptedChatModel:
    patch = patch or {
        "rationale": "be explicit",
        "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "Say it."}],
    }
    return ScriptedChatModel(
        rules=[
            (r"global critic", CRITIC),
            (r"repair one layer", patch),
            (r"write a new instruction", "```\nAdd one, then give the number.\n```"),
        ],
        model_name="optimizer",
    )


# -- truncation ------------------------------------------------------------------------------


def test_truncation_reaches_the_feedback_and_the_critics_prompt(tmp_path):
    spec = make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", "Add one.", max_tokens=3)]}],
        answer_format="last_number",
    )
    executor = ScriptedChatModel(
        default="Let me think step by step about this and then answer 42",
        honour_max_tokens=True,
        model_name="executor",
    )
    optimizer = opt_model()
    report = ann.evaluate(spec, data(2, "v"), "numeric_match", models=executor)
    rec = report.records[0]
    assert rec.finish_reason == "length" and rec.max_tokens == 3 and rec.truncated
    assert "output cut off at max_tokens=3 after 3 tokens" in report.results[0].feedback
    train(
        spec,
        train=data(2, "t"),
        val=data(2, "v"),
        metric="numeric_match",
        models=executor,
        optimizer_model=optimizer,
        epochs=1,
        batch_size=2,
        run_dir=tmp_path / "run",
        progress=False,
    )
    critic_prompts = [c["text"] for c in optimizer.calls if "global critic" in c["text"]]
    assert critic_prompts
    assert (
        "Truncation: solve/solver output cut off at max_tokens=3 after 3 tokens"
        in (critic_prompts[0])
    )
    # each step names its layer and agent in words: "[solve/solver, llm]" read to the 1.5B
    # critic as a second layer called "llm"
    assert "[layer solve, agent solver (output cut off" in critic_prompts[0]
    assert ", llm]" not in critic_prompts[0] and ", llm (" not in critic_prompts[0]
    repair = next(c["text"] for c in optimizer.calls if "repair one layer" in c["text"])
    assert "output cut off at max_tokens=3" in repair
    # the reflection sees the agent's own input, its output and why it stopped (GEPA's form)
    reflect = next(c["text"] for c in optimizer.calls if "write a new instruction" in c["text"])
    assert "## Finish reason\n### " not in reflect  # a plain value, not a nested record
    assert "## Finish reason\nlength: output cut off at max_tokens=3" in reflect
    assert "## Inputs\nWhat is " in reflect and "## Feedback\nScore 0.00." in reflect


def test_complete_answers_say_nothing_about_truncation():
    spec = make_spec([{"name": "solve", "agents": [agent("solver", max_tokens=50)]}])
    executor = ScriptedChatModel(default="Answer: 7", honour_max_tokens=True)
    report = ann.evaluate(spec, data(1, "v"), "numeric_match", models=executor)
    assert report.records[0].finish_reason == "stop" and not report.records[0].truncated
    assert "cut off" not in report.results[0].feedback


def test_an_unclosed_code_fence_still_yields_its_code():
    cut = "Here is the function:\n```python\ndef add(a, b):\n    return a + b\n"
    assert extract_answer(cut, "code_block") == "def add(a, b):\n    return a + b"
    assert extract_answer("```python\nx = 1\n```\ntext", "code_block") == "x = 1"
    assert extract_answer("no code here", "code_block") is None
    score = code_passes_tests()({"tests": "assert add(2, 3) == 5"}, cut)
    assert score.value == 1.0 and "never closed" in score.feedback


# -- patches that make sense -------------------------------------------------------------------


def _spec(**layer) -> ann.GraphSpec:
    base = {"name": "solve", "agents": [agent("solver")], **layer}
    return make_spec([base], answer_format="code_block")


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([{"op": "set_aggregator", "layer": "solve", "aggregator": "parallel_vote"}], "a vote"),
        ([{"op": "set_aggregator", "layer": "solve", "aggregator": "debate"}], "a debate"),
        (
            [{"op": "set_aggregator", "layer": "solve", "aggregator": "tool_pipeline"}],
            "has none",
        ),
        (
            [
                {
                    "op": "set_agent_param",
                    "layer": "solve",
                    "agent": "solver",
                    "param": "max_tokens",
                    "value": 40,
                }
            ],
            "too small for a code_block answer",
        ),
    ],
)
def test_nonsense_patches_are_rejected_with_a_reason(ops, reason):
    before = _spec()
    patch = {"rationale": "x", "ops": ops}
    after = ann.apply_patch(before, patch)
    got = sense_reason(before, after, patch)
    assert got is not None and reason in got


def test_sensible_versions_of_those_patches_pass():
    before = _spec()
    vote = {
        "ops": [
            {"op": "add_agent", "layer": "solve", "agent": agent("second")},
            {"op": "set_aggregator", "layer": "solve", "aggregator": "parallel_vote"},
        ]
    }
    tools = {
        "ops": [
            {"op": "set_tools", "layer": "solve", "tools": ["python"]},
            {"op": "set_aggregator", "layer": "solve", "aggregator": "tool_pipeline"},
        ]
    }
    test_revise = {"ops": [{"op": "set_aggregator", "layer": "solve", "aggregator": "test_revise"}]}
    for patch in (vote, tools, test_revise):
        assert sense_reason(before, ann.apply_patch(before, patch), patch) is None


def test_test_revise_is_rejected_where_the_answer_is_not_code():
    before = make_spec(
        [{"name": "solve", "agents": [agent("solver")]}], answer_format="last_number"
    )
    patch = {"ops": [{"op": "set_aggregator", "layer": "solve", "aggregator": "test_revise"}]}
    got = sense_reason(before, ann.apply_patch(before, patch), patch)
    assert got is not None and "test_revise runs code" in got and "last_number" in got


def test_lowering_the_cap_of_an_agent_that_was_cut_off_is_rejected():
    before = _spec()
    before = ann.apply_patch(
        before,
        {
            "ops": [
                {
                    "op": "set_agent_param",
                    "layer": "solve",
                    "agent": "solver",
                    "param": "max_tokens",
                    "value": 300,
                }
            ]
        },
    )
    patch = {
        "ops": [
            {
                "op": "set_agent_param",
                "layer": "solve",
                "agent": "solver",
                "param": "max_tokens",
                "value": 200,
            }
        ]
    }
    after = ann.apply_patch(before, patch)
    cut = [{"layer": "solve", "agent_id": "solver", "truncated": "output cut off at ..."}]
    assert "already cut off" in (sense_reason(before, after, patch, cut) or "")
    assert sense_reason(before, after, patch, []) is None


# -- acceptance that is not noise -------------------------------------------------------------


def test_paired_test_defaults_on_where_n_allows():
    cfg = ann.OptimizerConfig()
    assert paired_active(cfg, 12) and not paired_active(cfg, 11)
    assert not paired_active(ann.OptimizerConfig(paired_test=False), 100)
    assert paired_active(ann.OptimizerConfig(paired_test=True), 3)


def test_cannot_win_examples():
    current = {f"v{i}": 0.5 for i in range(10)}  # mean 0.5
    # 4 of 10 scored 0: the best case is 6/10 = 0.6 > 0.5 -> still possible
    assert (
        cannot_win(
            {f"v{i}": 0.0 for i in range(4)},
            current,
            best=0.5,
            min_delta=0,
            paired=False,
            alpha=0.1,
        )
        is None
    )
    # 5 zeros: best case 0.5, not above 0.5 -> stop
    reason = cannot_win(
        {f"v{i}": 0.0 for i in range(5)}, current, best=0.5, min_delta=0, paired=False, alpha=0.1
    )
    assert reason and "cannot beat 0.500" in reason
    # with the paired test, 3 losses in 4 leave p above alpha even if all 6 others win
    scores = {"v0": 0.0, "v1": 0.0, "v2": 0.0, "v3": 1.0}
    assert cannot_win(scores, current, best=0.5, min_delta=0, paired=False, alpha=0.1) is None
    reason = cannot_win(scores, current, best=0.5, min_delta=0, paired=True, alpha=0.1)
    assert reason and "sign test" in reason


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 1.0]), st.sampled_from([0.0, 1.0])), min_size=1, max_size=30
    ),
    st.integers(min_value=1, max_value=8),
    st.booleans(),
    st.sampled_from([0.0, 0.05]),
)
def test_early_rejection_never_rejects_a_candidate_that_would_win(pairs, chunk, paired, min_delta):
    current = {f"v{i}": cur for i, (cur, _) in enumerate(pairs)}
    final = {f"v{i}": new for i, (_, new) in enumerate(pairs)}
    best = sum(current.values()) / len(current)
    mean = sum(final.values()) / len(final)
    delta = mean - best
    wins = delta > 0 and delta >= min_delta
    if wins and paired:
        diffs = [final[k] - current[k] for k in current]
        wins = sign_test_p(diffs, alternative="greater") <= 0.1
    keys = list(final)
    for end in range(chunk, len(keys), chunk):
        seen = {k: final[k] for k in keys[:end]}
        stop = cannot_win(seen, current, best=best, min_delta=min_delta, paired=paired, alpha=0.1)
        if wins:
            assert stop is None, (seen, stop)


def _losing_optimizer() -> ScriptedChatModel:
    bad = {
        "rationale": "worse",
        "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "BAD"}],
    }
    return opt_model(bad)


def _executor() -> ScriptedChatModel:
    def respond(messages, **kw):
        system, question = messages[0].content, messages[-1].content
        n = int(re.search(r"What is (\d+)", question).group(1))
        if "BAD" in system:
            return "Answer: 0"
        return f"Answer: {n + 1}" if n % 2 == 0 else f"Answer: {n}"

    return ScriptedChatModel(respond=respond, model_name="executor")


def _train(tmp_path, name, optimizer, *, wordy=False, n_train=4, **cfg):
    cfg.setdefault("bootstrap_demos", False)
    spec = make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", "Add one.")]}],
        answer_format="last_number",
    )
    rows = data(n_train, "t")
    if wordy:  # inputs long enough for a prompt to copy
        for i, row in enumerate(rows):
            row["input"] += f" Take the number {i} and add exactly one to it."
    return train(
        spec,
        train=rows,
        val=data(16, "v"),
        metric="numeric_match",
        models=_executor(),
        optimizer_model=optimizer,
        epochs=1,
        batch_size=4,
        run_dir=tmp_path / name,
        progress=False,
        config=ann.OptimizerConfig(early_chunk=4, **{**REPAIRER_PATH, **cfg}),
    )


def test_early_rejection_stops_a_losing_candidate_and_saves_calls(tmp_path):
    early = _train(tmp_path, "early", _losing_optimizer(), paired_test=False)
    full = _train(tmp_path, "full", _losing_optimizer(), paired_test=False, early_rejection=False)
    cand = early.history[0]["candidates"][0]
    stop = cand["early_stop"]
    # current mean 0.5 on 16; 8 zeros in a row make a win impossible, so it stops after 8
    assert stop["evaluated"] == 8 and stop["of"] == 16 and stop["examples_saved"] == 8
    assert stop["calls_saved_est"] == 8
    assert not early.history[0]["decision"]["accepted"]
    assert early.history[0]["decision"]["delta"] is None  # a partial mean is no delta
    from ann_langgraph.optimize.momentum import momentum_summary

    assert "REJECTED" in momentum_summary(early.history)
    assert "on the first 8 of 16" in momentum_summary(early.history)
    assert "early_stop" not in full.history[0]["candidates"][0]
    assert early.paid["calls"] == full.paid["calls"] - 8  # the saved calls were really not made
    assert early.best_spec.fingerprint == full.best_spec.fingerprint
    # with the paired test (on by default at n=16) it can stop sooner: after 4 examples, two
    # losses leave a sign test that even 6 wins in the rest could not pass
    paired = _train(tmp_path, "paired", _losing_optimizer())
    assert paired.history[0]["candidates"][0]["early_stop"]["evaluated"] == 4
    assert paired.history[0]["knobs"]["paired_test"] is True


# -- demonstrations ------------------------------------------------------------------------


def test_demos_are_shown_as_earlier_turns_and_counted_in_the_fingerprint():
    plain = make_spec([{"name": "solve", "agents": [agent("solver")]}])
    data_ = plain.model_dump(mode="json")
    for layer in data_["layers"]:
        for a in layer["agents"]:
            a.pop("demos")
    legacy = hashlib.sha256(
        json.dumps(data_, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:16]
    assert plain.fingerprint == legacy  # specs without demos keep the hash they had
    patch = {
        "ops": [
            {
                "op": "set_demos",
                "layer": "solve",
                "agent": "solver",
                "demos": [{"input": "What is 1 plus one?", "output": "Answer: 2", "source": "t1"}],
            }
        ]
    }
    taught = ann.apply_patch(plain, patch)
    assert taught.fingerprint != plain.fingerprint
    assert plain.layers[0].agents[0].demos == []  # apply_patch is pure
    model = ScriptedChatModel(default="Answer: 8")
    ann.compile_graph(taught, models=model).invoke({"input": "What is 7 plus one?"})
    kinds = [(m.type, m.content) for m in model.calls[0]["messages"]]
    assert kinds[1:] == [
        ("human", "What is 1 plus one?"),
        ("ai", "Answer: 2"),
        ("human", "What is 7 plus one?"),
    ]
    assert "demos:" in taught.to_yaml() and "demos" not in plain.to_yaml()


def test_bootstrap_demos_come_only_from_successful_training_traces(tmp_path):
    result = _train(tmp_path, "boot", _losing_optimizer(), bootstrap_demos=True)
    boot = [c for h in result.history for c in h["candidates"] if c.get("source") == "bootstrap"]
    assert boot, result.history[0]["candidates"]
    op = boot[0]["patch"]["ops"][0]
    assert op["op"] == "set_demos" and op["layer"] == "solve" and op["agent"] == "solver"
    sources = [d["source"] for d in op["demos"]]
    # even-numbered training examples pass with the starting prompt: t0, t2; never a val row
    assert sources and all(s in ("train:t0", "train:t2") for s in sources)
    for demo in op["demos"]:
        n = int(re.search(r"What is (\d+)", demo["input"]).group(1))
        assert demo["output"] == f"Answer: {n + 1}"


def test_the_repairer_can_ask_for_demos_and_gets_real_ones(tmp_path):
    use = {
        "rationale": "show examples",
        "ops": [{"op": "use_demos", "layer": "solve", "agent": "solver", "count": 1}],
    }
    optimizer = opt_model(use)
    result = _train(tmp_path, "use", optimizer)
    cands = result.history[0]["candidates"]
    repaired = next(c for c in cands if c.get("source") == "repairer")
    assert repaired["valid"], repaired
    demos = repaired["patch"]["ops"][0]["demos"]
    assert repaired["patch"]["ops"][0]["op"] == "set_demos" and len(demos) == 1
    assert demos[0]["source"].startswith("train:t")
    prompt = next(c["text"] for c in optimizer.calls if "repair one layer" in c["text"])
    assert "CORRECT ANSWERS FROM TRAINING" in prompt


# -- prompts that restate one training example ---------------------------------------------


HARD_HATS = (
    "In a truck, there are 26 pink hard hats, 15 green hard hats, and 24 yellow hard hats. "
    "If Carl takes away 4 pink hard hats, and John takes away 6 pink hard hats and twice as "
    "many green hard hats, how many hard hats remained in the truck?"
)


def _set_prompt(prompt: str) -> dict:
    return {
        "rationale": "r",
        "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": prompt}],
    }


def test_a_prompt_that_restates_a_training_example_is_rejected():
    """What the 1.5B repairer wrote on GSM8K (step 1 of the compare run), and prompts that
    merely share words with the task, which must pass."""
    from ann_langgraph.optimize.validate import copied_example_reason

    train_rows = [{"id": "gsm8k-train-7", "input": HARD_HATS}, {"id": "x", "input": "What is 2?"}]
    copied = _set_prompt(
        "In a truck, there are 26 pink hard hats, 15 green hard hats, and 24 yellow hard hats. "
        "After Carl and John take some away, how many hard hats are remaining?"
    )
    reason = copied_example_reason(copied, train_rows)
    assert reason and "copies training example 'gsm8k-train-7'" in reason
    assert "op 0 (set_prompt)" in reason
    role = {"ops": [{"op": "set_role", "layer": "solve", "agent": "solver", "role": HARD_HATS}]}
    assert "the role copies" in (copied_example_reason(role, train_rows) or "")
    fine = _set_prompt(
        "Read how many hard hats of each colour there are and what is taken away, then count "
        "what remains step by step. End with the line 'Answer: <number>'."
    )
    assert copied_example_reason(fine, train_rows) is None
    assert copied_example_reason(_set_prompt("Add one."), train_rows) is None


def test_a_prompt_that_retells_training_examples_in_its_own_words_is_rejected():
    """The 1.5B repairer's step-2 prompt on GSM8K shares no 8-word run with any input but
    names their people and numbers; general prompts naming one or two such details, and the
    task's own format words every input shares, must pass."""
    from ann_langgraph.optimize.validate import copied_example_reason

    train_rows = [
        {"id": "hats", "input": HARD_HATS},
        {"id": "shoes", "input": "Tobias is buying shoes that cost $95. He has saved $15."},
        {"id": "names", "input": "Samantha's last name has three fewer letters than Bobbie's."},
    ]
    retold = _set_prompt(
        "Solve the problem step by step. What is the total number of hard hats remaining in "
        "the truck after Carl took away 15 pink hard hats? How many driveways did Tobias "
        "shovel? How many letters are in Samantha's last name?"
    )
    reason = copied_example_reason(retold, train_rows)
    assert reason and "retells training examples 'hats', 'names', 'shoes'" in reason
    assert "'Carl'" in reason and "'Tobias'" in reason
    # its next prompt: two names only, but the hard-hats problem's own words
    situation = _set_prompt(
        "Solve the subtraction problem: John took away 4 pink hard hats and Carl took away "
        "twice the number of pink hard hats John took away. How many green hard hats remain?"
    )
    reason = copied_example_reason(situation, train_rows)
    assert reason and "retells training example 'hats'" in reason and "'pink'" in reason
    for fine in (
        "If the problem gives prices (e.g. $15), add them up. Show each step. End with "
        "'Answer: <number>'.",
        "How many of each item are left? Subtract what is taken away, step by step, then "
        "give the final number.",
        "Carl-style problems: read carefully and answer with a number.",
    ):
        assert copied_example_reason(_set_prompt(fine), train_rows) is None, fine
    # a word most inputs share is the task's format, not one problem's detail
    quiz = [
        {"id": f"q{i}", "input": f"Question {i}: which of Alpha, Beta? Choices: Gamma Delta"}
        for i in range(4)
    ]
    common = _set_prompt("Read the Question and the Choices; pick Alpha, Beta, Gamma or Delta.")
    assert copied_example_reason(common, quiz) is None
    assert copied_example_reason(common, quiz[:1]) is not None  # one input: all its own


def test_validation_rejects_a_copied_example_before_paying_for_it(tmp_path):
    """The candidate is invalid with the reason, and no dry run or validation call is made."""
    copying = opt_model(
        _set_prompt("Solve: What is 0 plus one? Take the number 0 and add exactly one to it.")
    )
    result = _train(tmp_path, "copy", copying, wordy=True)
    (cand,) = result.history[0]["candidates"]
    assert cand["valid"] is False and "copies training example 't0'" in cand["reason"]
    assert result.versions[-1]["version"] == 0  # nothing committed
    control = _train(tmp_path, "control", _losing_optimizer(), early_rejection=False)
    assert result.paid["calls"] < control.paid["calls"]  # neither dry run nor validation


def test_the_repairer_revises_a_patch_that_restates_an_example(tmp_path):
    """Told why its patch cannot work (it restates a training example), the repairer gets one
    more try before format validation; the revised patch is the candidate, and the run's
    parse-rate counts both calls."""
    from ann_langgraph.report import learning_stats

    general = "Add one to the number in the question. End with 'Answer: <number>'."
    copying = "Solve: What is 0 plus one? Take the number 0 and add exactly one to it."
    retold = "It misread 'Take the number 1 and add exactly one to it' as a question."
    critic = {
        "summary": "Answers are wrong.",
        "blame": [{"layer": "solve", "reason": f"The solver skips the last step. {retold}"}],
    }
    asked: list[str] = []

    def respond(messages, **kw):
        if "global critic" in str(messages[0].content):
            return critic
        asked.append("\n".join(str(m.content) for m in messages))
        return _set_prompt(general if "rejected before testing" in asked[-1] else copying)

    optimizer = ScriptedChatModel(respond=respond, model_name="optimizer")
    result = _train(tmp_path, "revise", optimizer, wordy=True)
    (cand,) = result.history[0]["candidates"]
    assert len(cand["revisions"]) == 1 and "copies training example 't0'" in cand["revisions"][0]
    assert cand["patch"]["ops"][0]["prompt"] == general and cand["valid"] is True
    assert (cand["attempts"], cand["parsed_calls"]) == (2, 2)
    assert len(asked) == 2 and "restated training problems" in asked[1]
    # asked afresh without the problems (or the copy, or the rejection's quote of it, or the
    # critique's sentence retelling one): shown again, they get copied again
    shown = "Take the number 1 and add exactly one to it"  # t1's input (t1 fails)
    assert shown in asked[0] and shown not in asked[1]
    assert "Input:" in asked[0] and "Input:" not in asked[1] and "Expected:" in asked[1]
    assert "Your edit was:" not in asked[1] and "exactly one to it" not in asked[1]
    assert retold in asked[0] and "The solver skips the last step." in asked[1]
    stats = learning_stats(result.history)
    assert (stats["structured_calls"], stats["structured_parsed"]) == (3, 3)  # critic + 2

    asked.clear()
    off = _train(tmp_path, "off", optimizer, wordy=True, revisions=0)
    (cand,) = off.history[0]["candidates"]
    assert cand["valid"] is False and "copies training example" in cand["reason"]
    assert "revisions" not in cand and len(asked) == 1


def test_a_layer_blamed_twice_keeps_each_distinct_reason_once(tmp_path):
    same = "misreads the quantity asked for"
    critic = {
        "summary": "s",
        "blame": [
            {"layer": "solve", "reason": same},
            {"layer": "solve", "reason": same},
            {"layer": "solve", "reason": "skips the last step"},
        ],
    }
    optimizer = ScriptedChatModel(
        rules=[(r"global critic", critic), (r"repair one layer", _set_prompt("Add one."))],
        model_name="optimizer",
    )
    result = _train(tmp_path, "twice", optimizer)
    (blame,) = result.history[0]["gradient"]["blame"]
    assert blame["reason"] == f"{same} skips the last step"


def test_a_critic_repeating_one_sentence_is_kept_once(tmp_path):
    """HumanEval step 3: the 1.5B critic wrote one sentence over and over until its cap."""
    loop = "The function `check` does not handle the input. " * 12
    critic = {
        "summary": loop + "It fails.\nIt fails.",
        "blame": [
            {
                "layer": "solve",
                "reason": loop + "Check the edge cases! the FUNCTION `check` "
                "does not handle the input.",
            }
        ],
    }
    optimizer = ScriptedChatModel(
        rules=[(r"global critic", critic), (r"repair one layer", _set_prompt("Add one."))],
        model_name="optimizer",
    )
    gradient = _train(tmp_path, "loop", optimizer).history[0]["gradient"]
    once = "The function `check` does not handle the input."
    assert gradient["summary"] == f"{once} It fails."
    assert gradient["blame"][0]["reason"] == f"{once} Check the edge cases!"
    repair = next(c["text"] for c in optimizer.calls if "repair one layer" in c["text"])
    assert repair.count(once) <= 2  # the layer's critique and the overall pattern, not 24


def test_a_retelling_from_an_earlier_step_is_caught_and_not_passed_on(tmp_path):
    """On GSM8K the 1.5B repairer's rejected hard-hats prompt, quoted by momentum, came back
    verbatim in the next two steps, whose examples were other problems: the repairer's own
    check knew only its batch, so validation threw the candidate away. Now every training input
    counts, and momentum names such a prompt instead of quoting it."""
    general = "Add one to the number in the question. End with 'Answer: <number>'."
    asked: list[str] = []

    def respond(messages, **kw):
        text = "\n".join(str(m.content) for m in messages)
        if "global critic" in str(messages[0].content):
            asked.append(text)
            return CRITIC
        asked.append(text)
        if "rejected before testing" in text:
            return _set_prompt(general)
        shown = set(re.findall(r"Example (t\d+)", text))
        other = next(i for i in range(8) if f"t{i}" not in shown)  # a problem not shown
        return _set_prompt(f"Solve: What is {other} plus one? Take the number {other} and add.")

    optimizer = ScriptedChatModel(respond=respond, model_name="optimizer")
    result = _train(tmp_path, "earlier", optimizer, wordy=True, n_train=8)
    steps = [row for row in result.history if not row["skipped"]]
    assert len(steps) == 2
    for row in steps:
        (cand,) = row["candidates"]
        # caught by the repairer itself (the copied problem was not in its batch), revised
        assert len(cand.get("revisions", [])) == 1, cand
        assert "copies training example" in cand["revisions"][0]
        assert cand["patch"]["ops"][0]["prompt"] == general
    # with no revisions the copy is invalid; the next step's critic and repairer read that in
    # the history, but not the copy (neither the prompt nor the reason's quote of it)
    asked.clear()
    _train(tmp_path, "unrevised", optimizer, wordy=True, n_train=8, revisions=0)
    later = [text.split("HISTORY OF EARLIER EDITS")[1] for text in asked if "HISTORY OF" in text]
    assert later and all("INVALID set_prompt solve.solver" in text for text in later)
    assert all("restated a training problem" in text for text in later)
    assert not any("Take the number" in text or "plus one" in text for text in later)


def test_momentum_names_a_retelling_instead_of_quoting_it():
    from ann_langgraph.optimize.momentum import momentum_summary, smoothed_layer_gradient
    from ann_langgraph.optimize.validate import TrainingInputs

    inputs = TrainingInputs(
        [{"id": "hats", "input": HARD_HATS}, {"id": "x", "input": "What is 2 plus one?"}]
    )
    retold = "Solve: John took away 4 pink hard hats and Carl took away twice as many green."
    history = [
        {
            "epoch": 0,
            "step": 0,
            "candidates": [
                {"valid": True, "before": 0.4, "val_score": 0.5, "patch": _set_prompt(retold)},
                {"valid": True, "before": 0.4, "val_score": 0.3, "patch": _set_prompt("Be brief.")},
            ],
            "gradient": {
                "blame": [
                    {
                        "layer": "solve",
                        "reason": "Carl took away 4 pink hard hats, not 6. It skips the last step.",
                    }
                ]
            },
        }
    ]
    shown = momentum_summary(history, inputs=inputs)
    assert "pink" not in shown and "prompt=(one that restated a training problem)" in shown
    assert "prompt='Be brief.'" in shown and shown.count("REJECTED") == 2
    assert "pink hard hats" in momentum_summary(history)  # without the inputs: quoted
    smoothed = smoothed_layer_gradient(history, "solve", "now", beta=0.5, inputs=inputs)
    assert smoothed == "(weight 1.00) now\n(weight 0.50, earlier) It skips the last step."
    assert "pink" in smoothed_layer_gradient(history, "solve", "now", beta=0.5)


def test_each_step_bootstraps_a_demo_set_not_yet_used_or_rejected():
    """DSPy's random search tries several bootstrapped sets; here each step offers the next
    one: never the set the agent already has, never demos of a set validation rejected."""
    from ann_langgraph.optimize.repair import bootstrap_ops, tried_demos

    pool = {
        "solve/solver": [
            {"source": f"train:t{i}", "input": f"What is {i} plus one?", "output": f"{i + 1}"}
            for i in range(5)
        ]
    }
    plain = make_spec([{"name": "solve", "agents": [agent("solver")]}])

    def sources(spec, tried=None):
        ops = bootstrap_ops(spec, pool, ["solve"], 3, tried=tried)
        return [d["source"][6:] for d in ops[0]["demos"]] if ops else []

    assert sources(plain) == ["t0", "t1", "t2"]  # the pool's first
    first = ann.apply_patch(plain, {"ops": bootstrap_ops(plain, pool, ["solve"], 3)})
    assert sources(first) == ["t3", "t4", "t0"]  # unused ones, filled up with its own
    rejected = [
        {
            "candidates": [
                {"accepted": False, "patch": {"ops": bootstrap_ops(first, pool, ["solve"], 3)}},
                {"accepted": True, "patch": {"ops": [{"op": "set_demos", "demos": []}]}},
            ]
        }
    ]
    tried = tried_demos(rejected)
    assert tried == {"solve/solver": {"train:t3", "train:t4", "train:t0"}}
    assert sources(first, tried) == []  # nothing new is left: no candidate
    assert sources(plain, tried) == ["t1", "t2"]  # without demos: the ones never rejected
    assert sources(plain, {"solve/solver": {f"train:t{i}" for i in range(5)}}) == []


def test_a_prompt_the_history_rejected_is_not_paid_for_again(tmp_path):
    """The 1.5B repairer proposed a rejected prompt word for word in the next step; it is
    shown why and asked again, and validation refuses it before any validation call."""
    from ann_langgraph.optimize.momentum import repeated_reason

    result = _train(tmp_path, "again", _losing_optimizer(), n_train=8, early_rejection=False)
    first, second = (row for row in result.history if not row["skipped"])
    (rejected,) = first["candidates"]
    assert rejected["valid"] and not rejected["accepted"] and "val_score" in rejected
    (repeat,) = second["candidates"]
    why = "op 0 (set_prompt): this same prompt was proposed at epoch 1 step 1 and rejected"
    assert repeat["revisions"] == [f"{why}; propose a different one"]  # the repairer was told
    assert repeat["valid"] is False and why in repeat["reason"]  # ... and repeated it anyway
    assert "val_score" not in repeat  # never evaluated
    # case and spacing do not make a prompt new; another agent's or an accepted one's may repeat
    bad = _set_prompt("  bad ")
    assert repeated_reason(bad, result.history) is not None
    assert repeated_reason(_set_prompt("Add one, then answer."), result.history) is None
    other = {"ops": [{**bad["ops"][0], "agent": "checker"}]}
    assert repeated_reason(other, result.history) is None
    accepted = [{"candidates": [{**rejected, "accepted": True}]}]
    assert repeated_reason(_set_prompt("BAD"), accepted) is None


def test_static_checks_say_which_check_refused_the_patch():
    """The repairer asks afresh without the problems only after a copy; every other refusal
    shows it its patch (a repeat must not be treated as a copy, nor a copy as anything else)."""
    from ann_langgraph.optimize.validate import TrainingInputs, static_reason

    spec = _spec()
    inputs = TrainingInputs([{"id": "hats", "input": HARD_HATS}])
    rejected = {"candidates": [{"valid": True, "accepted": False, "patch": _set_prompt("Old.")}]}
    history = [{"epoch": 1, "step": 1, **rejected}]
    cases = {
        "placeholder": _set_prompt("string"),
        "copied": _set_prompt(HARD_HATS),
        "repeated": _set_prompt("old."),
        "apply": {"ops": [{"op": "remove_layer", "layer": "nowhere"}]},
        "unchanged": _set_prompt(spec.layers[0].agents[0].prompt),
        "sense": {"ops": [{"op": "set_aggregator", "layer": "solve", "aggregator": "debate"}]},
    }
    for check, patch in cases.items():
        got = static_reason(spec, patch, inputs, history=history)
        assert (got.check, got.spec) == (check, None) and got.reason, (check, got)
    fine = static_reason(spec, _set_prompt("Count what is left, step by step."), inputs)
    assert fine.reason is None and fine.check is None
    assert fine.spec is not None and fine.spec.layers[0].agents[0].prompt.startswith("Count")
