"""The examples a coding task states, parsed and run against code in the sandbox."""

from __future__ import annotations

import pytest

from ann_langgraph.code_examples import check_examples, defined_functions, stated_examples

TASK = '''Complete the function.

```python
def add(x, y):
    """Add two numbers.
    >>> add(2, 3)
    5
    >>> add(-1, 1)
    0
    add(1, 1) == 2
    add(2, 2) ➞ 4
    add(a, b) == 7
    add(1, 9) = 1 + 9 = 10
    For example, add(0, 0) should return 0.
    """
```'''


def test_every_stated_format_is_parsed_and_non_literals_are_skipped():
    examples = stated_examples(TASK, defined_functions(TASK))
    assert [(e.call, e.expected) for e in examples] == [
        ("add(2, 3)", "5"),
        ("add(-1, 1)", "0"),
        ("add(1, 1)", "2"),
        ("add(2, 2)", "4"),
        ("add(0, 0)", "0"),
    ]  # add(a, b): `a` is no literal; `1 + 9 = 10` is an expression, not the value 1


def test_function_names_come_from_def_lines_even_when_code_does_not_parse():
    assert defined_functions("def f(x):\n    return (x\n", "def g():\n  pass") == ["f", "g"]
    assert stated_examples("helper(1) == 2, and f(1) == 3", ["f"])[0].call == "f(1)"
    assert stated_examples("obj.f(1) == 3", ["f"]) == []  # a method of something else
    assert stated_examples('f("ab") == ""ab"', ["f"]) == []  # a broken quote, not '' + prose
    [ex] = stated_examples("f(2) == 4 (two doubled)", ["f"])
    assert ex.expected == "4"


def test_a_correct_function_passes_and_a_wrong_one_shows_what_it_returned():
    examples = stated_examples(TASK, ["add"])
    good = check_examples("def add(x, y):\n    return x + y\n", examples)
    assert good.all_passed and good.passed == 5 and good.failures == []
    bad = check_examples("def add(x, y):\n    return x * y\n", examples)
    assert not bad.all_passed and bad.passed == 2  # only 2*2 == 4 and 0*0 == 0 hold
    assert "add(2, 3) returned 6; expected 5" in bad.report()


def test_floats_compare_closely_and_exceptions_are_reported():
    examples = stated_examples("f(1) == 0.3", ["f"])
    assert check_examples("def f(x):\n    return 0.1 + 0.2\n", examples).all_passed
    raised = check_examples("def f(x):\n    return {}[x]\n", examples)
    assert raised.passed == 0 and "f(1) raised KeyError: 1; expected 0.3" in raised.report()


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (None, "no code"),
        ("def f(x):\n    return (x\n", "does not parse"),
        ("import sys\nsys.exit(3)\n", "failed before the examples ran"),
    ],
)
def test_code_that_cannot_run_is_an_error_not_a_crash(code, said):
    check = check_examples(code, stated_examples("f(1) == 1", ["f"]))
    assert check.passed == 0 and not check.all_passed
    assert said in (check.error or "") and check.report() == check.error


def test_an_endless_loop_is_stopped_and_the_examples_before_it_count():
    examples = stated_examples("f(1) == 1\nf(2) == 2\nf(3) == 3", ["f"])
    code = "def f(x):\n    while x == 2:\n        pass\n    return x\n"
    check = check_examples(code, examples, timeout_s=2)
    assert check.passed == 1 and "at f(2)" in (check.error or "")
