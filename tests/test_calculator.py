"""The calculator tool: correct arithmetic, and hostile input rejected with a clear error."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ann_langgraph.calculator import CalculatorError, calculator_tool, format_number, safe_eval


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2+3*4", 14),
        ("(2+3)*4", 20),
        ("  7 - 10 ", -3),
        ("-3 ** 2", -9),
        ("2 ** -1", 0.5),
        ("2^10", 1024),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("7 / 2", 3.5),
        ("3×4÷2", 6.0),  # noqa: RUF001 - the sign is the point of the test
        ("+5", 5),
        ("--5", 5),
        ("1.5e3 + 1", 1501.0),
        ("12345678901234567890 * 10", 123456789012345678900),
        ("2 ** 0.5", math.sqrt(2)),
        ("2+3 =", 5),
        ("+".join(["1"] * 240), 240),
    ],
)
def test_arithmetic(expression: str, expected: float) -> None:
    result = safe_eval(expression)
    assert result == pytest.approx(expected)
    assert not isinstance(result, bool)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os')", "function calls"),
        ("__import__('os').system('true')", "not allowed"),
        ("(1).real", "attribute"),
        ("().__class__.__bases__[0]", "not allowed"),
        ("x + 1", "names"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 2", "only numbers"),
        ("9**9**9", "exponent too large"),
        ("10**5000", "exponent too large"),
        ("999**999 * 999**999 * 999**999 * 999**999", "too large"),
        ("10.0**400", "too large"),
        ("1e309", "too large"),
        ("(-8) ** (1/3)", "complex"),
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("1 << 10", "not allowed"),
        ("1 < 2", "comparisons"),
        ("[1, 2]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("1 +", "not a valid"),
        ("", "empty"),
        ("   ", "empty"),
        ("1" * 501, "too long"),
        ("(" * 100 + "1" + ")" * 100, "nested too deeply"),
        ("\x00", "not a valid"),
    ],
)
def test_rejects_hostile_or_invalid(expression: str, reason: str) -> None:
    with pytest.raises(CalculatorError, match=reason):
        safe_eval(expression)


def test_rejects_non_string() -> None:
    with pytest.raises(CalculatorError):
        safe_eval(42)  # type: ignore[arg-type]


def test_calculator_error_is_value_error() -> None:
    assert issubclass(CalculatorError, ValueError)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (14, "14"),
        (1.0, "1"),
        (0.1 + 0.2, "0.3"),
        (1 / 3, "0.333333333333"),
        (2.5, "2.5"),
        (-0.0, "0"),
        (1e-12, "1e-12"),
        (1e20, "1e+20"),
        (10**30, str(10**30)),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


def test_tool_returns_text() -> None:
    assert calculator_tool.name == "calculator"
    assert set(calculator_tool.args) == {"expression"}
    assert calculator_tool.invoke({"expression": "2+3*4"}) == "14"
    assert calculator_tool.invoke({"expression": "10 / 4"}) == "2.5"


@pytest.mark.parametrize("expression", ["__import__('os')", "9**9**9", "1/0", "1" * 600, "hi"])
def test_tool_never_raises(expression: str) -> None:
    out = calculator_tool.invoke({"expression": expression})
    assert out.startswith("error: ")


def _number_or_calculator_error(text: str) -> None:
    try:
        result = safe_eval(text)
    except CalculatorError:
        return
    assert isinstance(result, int | float) and not isinstance(result, bool)
    assert not isinstance(result, float) or math.isfinite(result)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_is_number_or_calculator_error(text: str) -> None:
    _number_or_calculator_error(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789+-*/%^().e ", max_size=80))
def test_random_arithmetic_is_number_or_calculator_error(text: str) -> None:
    _number_or_calculator_error(text)
