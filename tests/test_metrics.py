"""Built-in metrics: right, wrong and edge cases, with the feedback text the critic reads."""

from __future__ import annotations

import math

import pytest

from ann_langgraph.metrics import (
    Score,
    as_score,
    code_passes_tests,
    contains,
    exact_match,
    get_metric,
    metric_names,
    multiple_choice,
    numeric_match,
    register_metric,
)


def ex(target, **extra):
    return {"id": "e1", "input": "q", "target": target, **extra}


# -- Score -----------------------------------------------------------------------------------


def test_as_score_coerces_numbers_bools_pairs_and_scores():
    assert as_score(0.25) == Score(value=0.25)
    assert as_score(1) == Score(value=1.0)
    assert as_score(True) == Score(value=1.0) and as_score(False) == Score(value=0.0)
    assert as_score((0.5, "half")) == Score(value=0.5, feedback="half")
    s = Score(value=0.1, feedback="f")
    assert as_score(s) is s
    with pytest.raises(TypeError, match=r"float or an ann_langgraph\.Score"):
        as_score("1")
    with pytest.raises(ValueError, match="NaN"):
        as_score(math.nan)


# -- exact_match -----------------------------------------------------------------------------


def test_exact_match_normalizes_case_space_and_trailing_dot():
    m = exact_match()
    assert m(ex("Paris"), "  paris. ").value == 1.0
    assert m(ex("New  York"), "new york").value == 1.0


def test_exact_match_wrong_answer_feedback_names_both_and_the_format():
    s = exact_match("last_line")(ex("Paris"), "Let me think.\nLondon")
    assert s.value == 0.0
    assert (
        s.feedback == "expected 'Paris', got 'London' (extracted from the last line of the output)"
    )


def test_exact_match_list_target_means_any_of_them():
    m = exact_match()
    assert m(ex(["NYC", "New York"]), "new york").value == 1.0
    s = m(ex(["NYC", "New York"]), "Boston")
    assert s.value == 0.0 and "expected 'NYC' or 'New York', got 'Boston'" in s.feedback


def test_exact_match_nothing_extracted():
    s = exact_match("boxed")(ex("5"), "I think it is five")
    assert s.value == 0.0
    assert s.feedback.startswith(
        "no answer found in the last \\boxed{} of the output (expected '5')"
    )
    assert "ends with: 'I think it is five'" in s.feedback
    assert exact_match()(ex("5"), "   ").feedback == "the output is empty (expected '5')"


def test_exact_match_rejects_an_unknown_format_and_a_missing_target():
    with pytest.raises(ValueError, match="unknown answer_format"):
        exact_match("nope")
    with pytest.raises(ValueError, match="no 'target'"):
        exact_match()({"id": "x", "input": "q"}, "a")


# -- numeric_match ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "output"),
    [
        ("#### 72", "She sold 72 clips in total."),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "Answer: 72"),
        ("1,234", "The total is 1234."),
        (1234, "so 1,234 apples"),
        ("72", "Answer: 72.0"),
        (0.3, "0.1 + 0.2 = 0.30000000000000004"),
        ("-5", "x = -5"),
        ("$18", "She makes $18 every day."),
    ],
)
def test_numeric_match_right(target, output):
    s = numeric_match()(ex(target), output)
    assert s.value == 1.0, s.feedback
    assert s.feedback.startswith("correct: ")


def test_numeric_match_wrong_feedback():
    s = numeric_match()(ex("#### 12"), "I count 3 and 4, so 7")
    assert s.value == 0.0
    assert s.feedback == (
        "expected 12, got 7 (extracted '7' from the output's final number "
        "('Answer:'/'####' marker, else the last number))"
    )


def test_numeric_match_prefers_the_answer_marker_over_later_numbers():
    s = numeric_match()(ex(12), "Answer: 12. (Checked with 3 methods.)")
    assert s.value == 1.0


def test_numeric_match_no_number_and_empty_output():
    s = numeric_match()(ex("12"), "I am not sure.")
    assert s.value == 0.0
    assert (
        s.feedback
        == "no number found in the output (expected 12); the output ends with: 'I am not sure.'"
    )
    assert numeric_match()(ex(12), "").feedback == "the output is empty (expected 12)"


def test_numeric_match_tolerances():
    assert numeric_match()(ex(100), "100.001").value == 0.0
    assert numeric_match()(ex(100), "100.00001").value == 1.0  # within rel_tol=1e-6
    assert numeric_match(rel_tol=1e-3)(ex(100), "100.05").value == 1.0
    assert numeric_match(abs_tol=0.5)(ex(0), "0.4").value == 1.0


def test_numeric_match_boxed_fractions_and_non_numbers():
    m = numeric_match("boxed")
    assert m(ex("0.75"), "so \\boxed{\\frac{3}{4}}").value == 1.0
    assert m(ex("3/4"), "\\boxed{0.75}").value == 1.0
    s = m(ex("2"), "\\boxed{x^2 + 1}")
    assert s.value == 0.0
    assert (
        "expected 2, but 'x^2 + 1' (extracted from the last \\boxed{} of the output) is not a number"
        in s.feedback
    )


def test_numeric_match_rejects_targets_without_a_number():
    with pytest.raises(ValueError, match="contains no number"):
        numeric_match()(ex("unknown"), "5")
    with pytest.raises(ValueError, match="bool"):
        numeric_match()(ex(True), "1")


# -- multiple_choice -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "output"),
    [("C", "The answer is (C)."), ("c", "Answer: C"), (2, "I pick C"), ("(B)", "B")],
)
def test_multiple_choice_right(target, output):
    assert multiple_choice()(ex(target), output).value == 1.0


def test_multiple_choice_wrong_and_missing():
    m = multiple_choice()
    s = m(ex("B"), "The answer is (C)")
    assert (s.value, s.feedback) == (0.0, "expected B, got C")
    s = m(ex(0), "none of these look right")
    assert s.value == 0.0
    assert s.feedback.startswith("no choice letter (A-D) found in the output (expected A)")
    with pytest.raises(ValueError, match="not a choice letter"):
        m(ex("maybe"), "A")
    with pytest.raises(ValueError, match="out of range"):
        m(ex(7), "A")


# -- code_passes_tests -----------------------------------------------------------------------

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def test_code_passes_tests_passing_solution():
    out = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    s = code_passes_tests()(ex(TESTS), out)
    assert (s.value, s.feedback) == (1.0, "all tests passed")


def test_code_passes_tests_failing_solution_reports_the_assertion():
    out = "```python\ndef add(a, b):\n    return a - b\n```"
    s = code_passes_tests()(ex(TESTS), out)
    assert s.value == 0.0
    assert s.feedback.startswith("tests failed (exit code 1):")
    assert "assert add(2, 3) == 5" in s.feedback
    assert s.feedback.rstrip().endswith("AssertionError")
    assert 'File "main.py"' in s.feedback  # sandbox paths are not leaked into feedback


def test_code_passes_tests_uses_tests_key_and_humaneval_conventions():
    example = {
        "id": "HumanEval/0",
        "input": "def sq(x):\n    '''Square x.'''\n",
        "prompt": "def sq(x):\n    '''Square x.'''\n",
        "entry_point": "sq",
        "tests": "def check(candidate):\n    assert candidate(3) == 9\n",
        "target": None,
    }
    body_only = "    return x * x\n"  # a completion: the prompt goes in front, check(sq) after
    s = code_passes_tests()(example, body_only)
    assert s.value == 1.0
    assert "no code block found; ran the raw output" in s.feedback
    wrong = code_passes_tests()(example, "```python\ndef sq(x):\n    return x + x\n```")
    assert wrong.value == 0.0 and "check(sq)" in wrong.feedback


def test_code_passes_tests_timeout_and_no_code():
    s = code_passes_tests(timeout_s=1)(ex("pass"), "```python\nwhile True:\n    pass\n```")
    assert (s.value, s.feedback) == (0.0, "timed out after 1s (infinite loop?)")
    s = code_passes_tests()(ex(TESTS), "\n\n")
    assert (s.value, s.feedback) == (0.0, "the output contains no code")


# -- contains --------------------------------------------------------------------------------


def test_contains():
    m = contains()
    assert m(ex("Paris"), "It is PARIS, of course").value == 1.0
    assert (
        m(ex(["paris", "france"]), "Paris is in France").feedback == "all expected strings present"
    )
    s = m(ex(["paris", "germany", "spain"]), "Paris is in France")
    assert s.value == 0.0
    assert s.feedback == "missing 'germany', 'spain' (1/3 expected strings present)"
    assert contains(case_sensitive=True)(ex("Paris"), "paris").value == 0.0
    with pytest.raises(ValueError, match="empty target list"):
        m(ex([]), "x")


# -- registry --------------------------------------------------------------------------------


def test_registry_builds_builtins_with_kwargs():
    assert {
        "exact_match",
        "numeric_match",
        "multiple_choice",
        "code_passes_tests",
        "contains",
    } <= set(metric_names())
    boxed = get_metric("numeric_match", answer_format="boxed")
    assert boxed(ex(5), "5 then \\boxed{6}").value == 0.0
    assert get_metric("numeric_match")(ex(5), "5 then 6").value == 0.0
    assert get_metric("contains", case_sensitive=True)(ex("A"), "a").value == 0.0


def test_registry_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'f1' \(known: .*numeric_match"):
        get_metric("f1")


def test_register_metric():
    def length_under(limit: int = 10):
        def metric(example, output):
            return Score(value=float(len(output) < limit), feedback=f"{len(output)} chars")

        return metric

    register_metric("test_length_under", length_under)
    try:
        assert "test_length_under" in metric_names()
        assert get_metric("test_length_under", limit=3)(ex(None), "abcd").value == 0.0
        with pytest.raises(ValueError, match="already registered"):
            register_metric("test_length_under", length_under)
        register_metric("test_length_under", length_under, replace=True)
    finally:
        from ann_langgraph import metrics

        metrics._REGISTRY.pop("test_length_under", None)


def test_label_match_takes_the_first_label_word():
    from ann_langgraph.metrics import label_match

    metric = label_match(["positive", "negative"])
    ex = {"id": "1", "input": "x", "target": "Negative"}
    assert metric(ex, "The sentiment is negative, not positive.").value == 1.0
    wrong = metric(ex, "The review is positive, but harsh and negative.")
    assert wrong.value == 0.0 and "expected negative, got positive" in wrong.feedback
    none = metric(ex, "I cannot tell.")
    assert none.value == 0.0 and "no label" in none.feedback
    assert metric(ex, "non-negative? no: NEGATIVE").value == 1.0
    with pytest.raises(ValueError, match="not one of the labels"):
        metric({"id": "2", "input": "x", "target": "neutral"}, "positive")
