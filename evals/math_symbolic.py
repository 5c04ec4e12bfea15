"""The symbolic fallback of ``math_equiv`` (sympy, optional): LaTeX to a sympy expression and an
equality check under a time limit, so a pathological answer cannot hang scoring."""

from __future__ import annotations

import math
import random
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .math_latex import group

__all__ = [
    "MAX_SYMBOLIC_CHARS",
    "SYMBOLIC_TIMEOUT_S",
    "Deadline",
    "close",
    "run_with_deadline",
    "sympy_equal",
]

T = TypeVar("T")

SYMBOLIC_TIMEOUT_S = 2.0
MAX_SYMBOLIC_CHARS = 160


def close(a: complex | float, b: complex | float, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


# -- symbolic fallback (sympy, optional) ----------------------------------------------------

_FUNCS = {
    "sqrt",
    "pi",
    "oo",
    "I",
    "E",
    "log",
    "ln",
    "exp",
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "asin",
    "acos",
    "atan",
    "Abs",
    "root",
}
_LATEX_WORDS = {
    "\\pi": " pi ",
    "\\infty": " oo ",
    "\\cdot": "*",
    "\\times": "*",
    "\\div": "/",
    "\\ln": " ln",
    "\\log": " log",
    "\\exp": " exp",
    "\\sin": " sin",
    "\\cos": " cos",
    "\\tan": " tan",
    "\\cot": " cot",
    "\\sec": " sec",
    "\\csc": " csc",
    "\\arcsin": " asin",
    "\\arccos": " acos",
    "\\arctan": " atan",
}


class _Unsupported(ValueError):
    pass


def _latex_to_expr(s: str) -> str:
    """A normalised LaTeX answer as a sympy-parsable expression, restricted to a safe alphabet."""
    out = s

    def replace_macro(text: str, name: str, build: Callable[[list[str], str | None], str]) -> str:
        token = "\\" + name
        for _ in range(50):
            j = text.find(token)
            if j < 0:
                return text
            k = j + len(token)
            index = None
            if name == "sqrt" and text[k : k + 1] == "[":
                end = text.find("]", k)
                if end < 0:
                    raise _Unsupported("bad \\sqrt[")
                index, k = text[k + 1 : end], end + 1
            args = []
            for _ in range(2 if name == "frac" else 1):
                g = group(text, k)
                if g is None:
                    raise _Unsupported(f"bad \\{name}")
                args.append(g[0])
                k = g[1]
            text = text[:j] + build(args, index) + text[k:]
        raise _Unsupported("too deeply nested")

    out = replace_macro(out, "frac", lambda a, _: f"(({a[0]})/({a[1]}))")
    out = replace_macro(
        out,
        "sqrt",
        lambda a, idx: f"(({a[0]})**(1/({idx})))" if idx else f"sqrt({a[0]})",
    )
    for word, repl in _LATEX_WORDS.items():
        out = re.sub(re.escape(word) + r"(?![A-Za-z])", repl, out)
    if "\\" in out:
        raise _Unsupported("unknown LaTeX command")
    out = out.replace("{", "(").replace("}", ")").replace("^", "**")
    out = re.sub(r"(?<![A-Za-z])i(?![A-Za-z])", "I", out)  # the imaginary unit
    if not re.fullmatch(r"[0-9A-Za-z+\-*/().,\s]*", out) or re.search(r"\.(?!\d)", out):
        raise _Unsupported("characters outside the safe alphabet")
    words = re.findall(r"[A-Za-z]+", out)
    for word in words:
        # "xy" is x*y; anything longer is more likely prose than algebra
        if word not in _FUNCS and len(word) > 3:
            raise _Unsupported(f"word {word!r}")
    out = re.sub(
        r"[A-Za-z]+",
        lambda m: m.group(0) if m.group(0) in _FUNCS else "*".join(m.group(0)),
        out,
    )
    if out.count("**") > 3 or any(len(e) > 4 for e in re.findall(r"\*\*\(?(\d+)", out)):
        raise _Unsupported("exponent too large to evaluate safely")
    return out


class Deadline(Exception):
    pass


def run_with_deadline(fn: Callable[[], T], timeout_s: float) -> T:
    """Run ``fn`` in this thread, aborting pure-Python work after ``timeout_s`` seconds.

    Uses a call-level trace function (works in any thread, unlike SIGALRM); the previous
    tracer (a debugger or coverage) is restored afterwards.
    """
    deadline = time.monotonic() + timeout_s
    previous = sys.gettrace()

    def tracer(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and time.monotonic() > deadline:
            raise Deadline()
        return None

    sys.settrace(tracer)
    try:
        return fn()
    finally:
        sys.settrace(previous)


_SYMPY: dict[str, Any] = {}


def _sympy() -> dict[str, Any] | None:
    if not _SYMPY:
        try:
            import sympy
            from sympy.parsing.sympy_parser import (
                implicit_multiplication_application,
                parse_expr,
                standard_transformations,
            )
        except ImportError:
            _SYMPY["missing"] = True
            return None
        namespace: dict[str, Any] = {}
        exec("from sympy import *", namespace)
        namespace["ln"] = sympy.log
        _SYMPY.update(
            sympy=sympy,
            parse=parse_expr,
            transformations=(*standard_transformations, implicit_multiplication_application),
            namespace=namespace,
        )
    return None if "missing" in _SYMPY else _SYMPY


def sympy_equal(a: str, b: str) -> bool:
    sp = _sympy()
    if sp is None:
        return False
    sympy = sp["sympy"]

    def parse(text: str) -> Any:
        if text.count("=") == 1:
            lhs, rhs = text.split("=")
            return sp["parse"](
                _latex_to_expr(lhs),
                global_dict=dict(sp["namespace"]),
                transformations=sp["transformations"],
            ) - sp["parse"](
                _latex_to_expr(rhs),
                global_dict=dict(sp["namespace"]),
                transformations=sp["transformations"],
            )
        if "=" in text:
            raise _Unsupported("several '='")
        return sp["parse"](
            _latex_to_expr(text),
            global_dict=dict(sp["namespace"]),
            transformations=sp["transformations"],
        )

    def check() -> bool:
        ea, eb = parse(a), parse(b)
        if (a.count("=") == 1) != (b.count("=") == 1):
            return False
        symbols = sorted(ea.free_symbols | eb.free_symbols, key=str)
        if not symbols:
            va, vb = complex(sympy.N(ea, 30)), complex(sympy.N(eb, 30))
            return close(va, vb)
        equations = "=" in a
        rng = random.Random(0)
        ratios: list[complex] = []
        try:
            for _ in range(4):  # equal at random points: equal (polynomials, rational functions)
                point = {s: sympy.Rational(rng.randint(2, 97), rng.randint(2, 13)) for s in symbols}
                va, vb = complex(sympy.N(ea.subs(point))), complex(sympy.N(eb.subs(point)))
                if not (math.isfinite(abs(va)) and math.isfinite(abs(vb))):
                    raise _Unsupported("not finite at a test point")
                if equations:  # the same equation up to a constant factor
                    if vb == 0:
                        raise _Unsupported("zero at a test point")
                    ratios.append(va / vb)
                elif not close(va, vb):
                    return False
        except (_Unsupported, TypeError, ValueError, ZeroDivisionError):
            return bool(sympy.simplify(ea - eb) == 0)
        if equations:
            return all(r != 0 and close(r, ratios[0]) for r in ratios)
        return True

    if max(len(a), len(b)) > MAX_SYMBOLIC_CHARS:
        return False
    try:
        return bool(run_with_deadline(check, SYMBOLIC_TIMEOUT_S))
    except Exception:
        return False  # unparsable, timed out, or sympy failed: not shown equal
