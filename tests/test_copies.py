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
