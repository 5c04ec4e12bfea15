"""Copied-example detection on its own: a verbatim run of words is caught even when the copy
holds no name and no number (the other two signs then say nothing)."""

from __future__ import annotations

from ann_langgraph.optimize.copies import COPIED_WORDS, TrainingInputs, copied_example_reason

ROWS = [
    {"id": "t1", "input": "count how many vowels appear in the given lowercase word and report it"},
    {"id": "t2", "input": "reverse the order of the letters in the word you are given"},
    {"id": "t3", "input": "say whether the given word reads the same forwards and backwards"},
]


def _prompt(text: str) -> dict:
    return {"ops": [{"op": "set_prompt", "layer": "solve", "agent": "a", "prompt": text}]}


def test_a_verbatim_copy_without_names_or_numbers_is_caught():
    copy = "Always count how many vowels appear in the given lowercase word and explain."
    reason = copied_example_reason(_prompt(copy), ROWS)
    assert reason is not None and "copies training example 't1'" in reason
    assert f"{COPIED_WORDS}+ words in a row" in reason
    assert TrainingInputs(ROWS).retells(copy)


def test_a_shorter_shared_run_is_not_a_copy():
    # seven words in a row from t1, no details, few topic words: a general instruction
    general = "Please count how many vowels appear in the answer."
    assert copied_example_reason(_prompt(general), ROWS) is None
    assert copied_example_reason(_prompt(general), ROWS, words=5) is not None


def test_a_prompt_naming_one_code_tasks_own_function_restates_it():
    """Seen on the 1.5B model's HumanEval reflection: print(is_nested('[[]]'))  # Output: True."""
    tasks = [
        {"id": "HumanEval/132", "input": "def is_nested(string):\n    '''Brackets.'''"},
        {"id": "HumanEval/161", "input": "def solve(s):\n    '''Reverse case.'''"},
        {"id": "HumanEval/0", "input": "def has_close_elements(numbers, threshold):\n    '''x'''"},
    ]
    inputs = TrainingInputs(tasks)

    def reason(prompt: str) -> str | None:
        op = {"op": "set_prompt", "layer": "code", "agent": "coder", "prompt": prompt}
        return inputs.copied_reason({"ops": [op]})

    found = reason("Write the code.\nprint(is_nested('[[]]'))  # Output: True")
    assert found and "'HumanEval/132''s own function 'is_nested'" in found
    assert reason("Solve the problem; write the whole function.") is None  # a word, not a call
    assert reason("First call solve(s) on the docstring's examples.") is not None
    assert reason("Write the function; test it on its docstring's examples.") is None


def test_a_prompt_naming_one_inputs_person_and_its_situation_retells_it():
    """Seen on the 1.5B repairer (GSM8K, 2026-12-08): one name and four of the problem's own
    words, under both the details and the topic thresholds."""
    rows = [
        {
            "id": "gsm8k-train-1",
            "input": "James writes a 3-page letter to 2 different friends twice a week. "
            "How many pages does he write a year?",
        },
        {"id": "gsm8k-train-2", "input": "Mia buys 4 boxes of 12 eggs. How many eggs?"},
        {"id": "gsm8k-train-3", "input": "A train travels 60 miles an hour for 3 hours."},
    ]
    inputs = TrainingInputs(rows)
    copy = (
        "Solve the following math word problem: 'To determine how many pages James writes in "
        "a year, we need to break down the problem step by step.'"
    )
    reason = inputs.copied_reason(_prompt(copy))
    assert reason and "retells training example 'gsm8k-train-1'" in reason and "'James'" in reason
    # the same situation without the name, or the name alone, is not this sign
    assert not inputs.retells("Work out how many pages are written in a year, step by step.")
    assert not inputs.retells("Solve it step by step, as James would, and check the result.")
