"""Answer extraction: every format on plain and tricky texts, plus normalisation for votes."""

from __future__ import annotations

import pytest

from ann_langgraph.answers import extract_answer, normalize_answer
from ann_langgraph.spec import ANSWER_FORMATS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", "42"),
        ("The total is 1,234 dollars.", "1234"),
        ("Population: 1,000,000 people", "1000000"),
        ("It costs $1,234.50 in total.", "1234.5"),
        ("-5", "-5"),
        ("The temperature fell to -3.5 degrees.", "-3.5"),
        ("x = -3", "-3"),
        ("That is 0.25 of the cake", "0.25"),
        ("Only .5 left", "0.5"),
        ("x = 3.0", "3"),
        ("End of the sentence: 42.", "42"),
        # An explicit marker wins over numbers after it.
        ("Answer: 12 apples, from 3 baskets of 4", "12"),
        ("The answer is 12. Step 2: check 3 + 4 = 7", "12"),
        ("Answer: -7 (down from 10)", "-7"),
        ("Answer: 1,234 in total, 5 left", "1234"),
        # GSM8K's '####' marker, even with numbers later.
        ("9 * 8 = 72\n#### 72", "72"),
        ("#### 1,080\nThanks for asking 2 questions", "1080"),
        # The last marker counts when there are several.
        ("Answer: 5\nWait, I made a mistake.\nAnswer: 6", "6"),
        # No marker: the last number anywhere.
        ("3 boxes of 4 eggs give 12", "12"),
        # A hyphen between numbers is not a minus sign; commas between digits in a list
        # are not thousands separators.
        ("Read pages 10-20", "20"),
        ("the values are 1,2,3", "3"),
        # Big integers stay exact.
        ("Answer: 12345678901234567890", "12345678901234567890"),
        ("1e3", "1000"),
        # Artifacts seen in recorded runs: a clock time after the boxed answer (gsm8k-test-23),
        # a number after the boxed answer (cot-sc, gsm8k-test-19).
        (r"So, the candle will be \(\boxed{8}\) centimeters shorter from 1:00 PM to 5:00 PM.", "8"),
        (r"at a speed of \(\boxed{6}\) miles per hour to average 4 miles per hour.", "6"),
        (r"\boxed{L - 8}", "8"),
        # A marker still wins over a box.
        (r"\boxed{3} Answer: 4", "4"),
        # A box without a number is skipped.
        (r"\boxed{x} so 7", "7"),
        # Clock times, dates and list indexes are never the answer.
        ("She earns 40 dollars by 5:30 pm", "40"),
        ("He left with 12 at 17:45:10.", "12"),
        ("Total 9 on 2024-05-12", "9"),
        ("Total 9 on 5/12/2024", "9"),
        ("The sum is 14\n3. Check the units", "14"),
        ("The sum is 14\nStep 2: check it", "14"),
        # ...but a fraction, a ratio of plain numbers or a number alone on its line still counts.
        ("It is 3/4", "4"),
        ("The total is\n42.", "42"),
        ("It is 12:5 odds", "5"),
    ],
)
def test_last_number(text, expected):
    assert extract_answer(text, "last_number") == expected


@pytest.mark.parametrize("text", ["no numbers here", "", "   ", "Answer: unknown"])
def test_last_number_none_without_a_number(text):
    assert extract_answer(text, "last_number") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"So the result is $\boxed{42}$.", "42"),
        (r"$\boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
        (r"\boxed{\sqrt{\frac{a}{b}} + {c}}", r"\sqrt{\frac{a}{b}} + {c}"),
        (r"first \boxed{3}, then corrected: \boxed{4}", "4"),
        (r"\fbox{7}", "7"),
        (r"\boxed {x + 1}", "x + 1"),
        (r"\boxed 5$ and later the set {1}", "5"),
        (r"\boxed 5 is the answer", "5"),
    ],
)
def test_boxed(text, expected):
    assert extract_answer(text, "boxed") == expected


@pytest.mark.parametrize(
    "text",
    ["no box here 42", r"\boxed{unclosed", r"\boxed{}", r"\boxed", r"\boxedfoo{3}"],
)
def test_boxed_none(text):
    assert extract_answer(text, "boxed") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is (C)", "C"),
        ("B", "B"),
        ("  (D)  ", "D"),
        ("the answer is c", "C"),
        ("Answer: (d)", "D"),
        ("Answer: D.", "D"),
        ("The answer is: B. A good pick overall.", "B"),
        ("The answer is B because A is wrong.", "B"),
        ("A) 3\nB) 4\nC) 5\nThe answer is B", "B"),
        ("Between A and B, I pick (B).", "B"),
        # 'a' the article is not option A.
        ("The answer is a bit tricky, but (C) fits.", "C"),
        ("Options compared.\n(c)\n", "C"),
        ("b", "B"),
    ],
)
def test_choice_letter(text, expected):
    assert extract_answer(text, "choice_letter") == expected


@pytest.mark.parametrize("text", ["I don't know", "", "Eventually everything works", "E"])
def test_choice_letter_none(text):
    assert extract_answer(text, "choice_letter") is None


def test_code_block_picks_last_python_block_over_later_other_languages():
    text = (
        "First try:\n```python\ndef f():\n    return 1\n```\n"
        "Better:\n```python\ndef f():\n    return 2\n```\n"
        "Output:\n```text\n2\n```\n"
    )
    assert extract_answer(text, "code_block") == "def f():\n    return 2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```py\nx = 1\n```", "x = 1"),
        ("```Python3\nx = 2\n```", "x = 2"),
        # No python block: the last block of any language.
        ("```\nz = 3\n```\n```bash\necho hi\n```", "echo hi"),
        # Blank lines inside the block are kept; the surrounding newlines are not.
        ("```python\n\nimport os\n\nprint(os)\n\n```", "import os\n\nprint(os)"),
    ],
)
def test_code_block(text, expected):
    assert extract_answer(text, "code_block") == expected


@pytest.mark.parametrize("text", ["def f(): return 1", "```python", "``` ```", "```python\n\n```"])
def test_code_block_none(text):
    assert extract_answer(text, "code_block") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("first\nsecond\n\n   \n", "second"),
        ("  only line  ", "only line"),
        ("a\n\n  Final: 7  \n\n", "Final: 7"),
        ("x\r\ny\r\n", "y"),
    ],
)
def test_last_line(text, expected):
    assert extract_answer(text, "last_line") == expected


@pytest.mark.parametrize("fmt", ANSWER_FORMATS)
def test_every_format_gives_none_for_blank_and_none(fmt):
    assert extract_answer(None, fmt) is None
    assert extract_answer("", fmt) is None
    assert extract_answer("  \n\t \n", fmt) is None


def test_raw_strips_but_keeps_inner_text():
    assert extract_answer("  Hello,\n world  ", "raw") == "Hello,\n world"
    assert extract_answer("x") == "x"  # raw is the default


def test_every_spec_answer_format_has_an_extractor():
    sample = "Answer: (B) 12\n```python\nx = 1\n```\n\\boxed{3}"
    results = {fmt: extract_answer(sample, fmt) for fmt in ANSWER_FORMATS}
    assert results == {
        "raw": sample,
        "last_line": "\\boxed{3}",
        "last_number": "12",
        "boxed": "3",
        "choice_letter": "B",
        "code_block": "x = 1",
    }


def test_unknown_format_raises_value_error_naming_known_ones():
    with pytest.raises(ValueError, match=r"unknown answer_format 'nope'.*last_number"):
        extract_answer("1", "nope")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("  The   Answer. ", "the answer"),
        ("12.", "12"),
        ("Paris", "paris"),
        ("a\n\tb", "a b"),
        ("3.5", "3.5"),
        ("..", None),
        ("   ", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


def test_normalized_extractions_make_equivalent_answers_vote_together():
    texts = ["So the answer is (b).", "Answer: B", "b"]
    normed = {normalize_answer(extract_answer(t, "choice_letter")) for t in texts}
    assert normed == {"b"}
    numbers = ["Answer: 1,234", "#### 1234", "The total is 1234.0"]
    assert {normalize_answer(extract_answer(t, "last_number")) for t in numbers} == {"1234"}
