"""The ``calculator`` tool: arithmetic parsed with :mod:`ast`, never ``eval``.

Agents (and the models behind them) send arbitrary text here, so the evaluator walks a small
whitelist of AST nodes and bounds the work: input length, nesting depth, exponent size and the
number of digits a result may have. Anything else is a :class:`CalculatorError` with a message
the model can act on.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from langchain_core.tools import tool

__all__ = ["CalculatorError", "calculator_tool", "format_number", "safe_eval"]

MAX_LENGTH = 500
MAX_NESTING = 60  # brackets
MAX_DEPTH = 400  # AST depth: a flat 250-term sum is fine, the Python stack is too
MAX_EXPONENT = 1000
MAX_DIGITS = 10_000
# A non-negative int with more than this many bits has more than MAX_DIGITS decimal digits.
_MAX_BITS = math.ceil(MAX_DIGITS * math.log2(10))

Number = int | float

_TRANSLATE = str.maketrans({"^": "**", "×": "*", "÷": "/", "−": "-"})  # noqa: RUF001

_BINOPS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}

_FORBIDDEN: dict[type[ast.AST], str] = {
    ast.Name: "names/variables are not allowed",
    ast.Call: "function calls are not allowed",
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "indexing is not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "boolean operators are not allowed",
    ast.Lambda: "lambdas are not allowed",
}


class CalculatorError(ValueError):
    """The expression is not plain, bounded arithmetic."""


def safe_eval(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely.

    Supports ``+ - * / // % **``, unary ``+``/``-``, parentheses, int and float literals;
    ``^`` is read as power and the multiplication/division signs as ``*``/``/``. Raises
    :class:`CalculatorError` for anything else, including huge results and division by zero.
    """
    if not isinstance(expression, str):
        raise CalculatorError(f"expression must be a string, got {type(expression).__name__}")
    text = expression.strip()
    if len(text) > MAX_LENGTH:
        raise CalculatorError(f"expression too long ({len(text)} > {MAX_LENGTH} characters)")
    text = text.rstrip("=").strip().translate(_TRANSLATE)
    if not text:
        raise CalculatorError("empty expression")
    _check_bracket_depth(text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not a valid arithmetic expression ({exc.msg})") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise CalculatorError(f"not a valid arithmetic expression ({exc})") from None
    result = _eval(tree.body, 0)
    if isinstance(result, float) and not math.isfinite(result):
        raise CalculatorError("result is not a finite number")
    return result


def _check_bracket_depth(text: str) -> None:
    depth = 0
    for char in text:
        if char in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise CalculatorError(f"brackets nested too deeply (> {MAX_NESTING} levels)")
        elif char in ")]}":
            depth -= 1


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise CalculatorError(f"expression nested too deeply (> {MAX_DEPTH} levels)")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculatorError(f"only numbers are allowed, got {value!r:.40}")
        if isinstance(value, float) and not math.isfinite(value):
            raise CalculatorError("number literal is too large")
        return value
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, depth + 1)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
        raise CalculatorError(f"operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        return _binop(node.op, left, right)
    reason = _FORBIDDEN.get(type(node))
    if reason is None:
        reason = f"{type(node).__name__} is not allowed (only arithmetic on numbers)"
    raise CalculatorError(reason)


def _binop(op: ast.operator, left: Number, right: Number) -> Number:
    try:
        if isinstance(op, ast.Pow):
            result = _power(left, right)
        else:
            func = _BINOPS.get(type(op))
            if func is None:
                raise CalculatorError(f"operator {type(op).__name__} is not allowed")
            result = func(left, right)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("result too large") from None
    if isinstance(result, complex):
        raise CalculatorError("result is a complex number")
    if isinstance(result, int) and result.bit_length() > _MAX_BITS:
        raise CalculatorError(f"result too large (more than {MAX_DIGITS} digits)")
    if isinstance(result, float) and not math.isfinite(result):
        raise CalculatorError("result too large")
    return result


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent too large (|{exponent}| > {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_DIGITS:
            raise CalculatorError(f"result too large (about {int(digits)} digits)")
    result: Number | complex = base**exponent
    if isinstance(result, complex):
        raise CalculatorError("result is a complex number")
    return result


def format_number(value: int | float) -> str:
    """Render a result for a model: ints exactly, floats to 12 significant digits."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = format(value, ".12g")
    if "e" not in text and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@tool("calculator")
def calculator_tool(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "(12.5 * 4) / 3 - 2**3".

    Supports + - * / // % ** (or ^) and parentheses on numbers only; no variables, no units.
    Returns the result, or "error: <reason>".
    """
    try:
        return format_number(safe_eval(expression))
    except CalculatorError as exc:
        return f"error: {exc}"
