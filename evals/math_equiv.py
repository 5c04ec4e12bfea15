"""Are two MATH final answers the same? Normalise like the MATH paper's ``is_equiv``, then more.

MATH is scored on the last ``\\boxed{}`` of a solution. Two answers count as equal when, after
normalisation (``\\left``/``\\right``, spacing, ``\\text{}``, units, degrees, ``\\$``, ``dfrac``,
``\\frac12``, ``\\sqrt2``, a leading ``x =``...), they are the same string, the same number
(``0.5`` = ``\\frac{1}{2}`` = ``1/2``; a percentage may also equal its fraction), the same
tuple/interval/matrix element by element, the same set or list in any order, or (with sympy
installed) symbolically equal within a time limit. Nothing here raises on odd input: an answer
that cannot be understood is simply not equal to a different one.
"""

from __future__ import annotations

import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

from ann_langgraph.answers import extract_answer

__all__ = [
    "Verdict",
    "compare",
    "is_equiv",
    "last_boxed",
    "normalize",
]

T = TypeVar("T")

SYMBOLIC_TIMEOUT_S = 2.0
_MAX_SYMBOLIC_CHARS = 160


def last_boxed(text: str | None) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces), or None."""
    return extract_answer(text, "boxed")


# -- brace helpers -------------------------------------------------------------------------


def _group(s: str, i: int) -> tuple[str, int] | None:
    """The balanced ``{...}`` group starting at ``s[i]``: (content, index after it)."""
    if i >= len(s) or s[i] != "{":
        return None
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    return None


def _arg(s: str, i: int) -> tuple[str, int] | None:
    """One macro argument at ``s[i]``: a ``{group}``, a ``\\command`` or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        return _group(s, i)
    if s[i] == "\\":
        m = re.match(r"\\[A-Za-z]+", s[i:])
        if m:
            return m.group(0), i + m.end()
        return s[i : i + 2], i + 2
    if s[i] in "}^_":
        return None
    return s[i], i + 1


def _unwrap(s: str, commands: tuple[str, ...]) -> str:
    """Replace ``\\cmd{x}`` by ``x`` for each command (nested groups kept balanced)."""
    pattern = re.compile(r"\\(?:" + "|".join(commands) + r")(?![A-Za-z])\s*")
    out = s
    for _ in range(20):
        m = pattern.search(out)
        if not m:
            break
        g = _group(out, m.end())
        if g is None:  # "\text x" or a broken group: just drop the command
            out = out[: m.start()] + out[m.end() :]
            continue
        out = out[: m.start()] + g[0] + out[g[1] :]
    return out


def _fix_macro_args(s: str, name: str, nargs: int) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``: brace every argument."""
    token = "\\" + name
    out: list[str] = []
    i = 0
    while True:
        j = s.find(token, i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        k = j + len(token)
        out.append(s[i:k])
        if k < len(s) and s[k].isalpha():  # a longer command name, not ours
            i = k
            continue
        if name == "sqrt" and s[k : k + 1] == "[":  # \sqrt[3]{x}
            end = s.find("]", k)
            if end < 0:
                out.append(s[k:])
                return "".join(out)
            out.append(s[k : end + 1])
            k = end + 1
        for _ in range(nargs):
            a = _arg(s, k)
            if a is None:
                break
            inner = a[0]
            if s[k:].lstrip(" ").startswith("{"):
                inner = _fix_macro_args(inner, name, nargs)
            out.append("{" + inner + "}")
            k = a[1]
        i = k


# -- normalisation -------------------------------------------------------------------------

_UNIT_WORDS = [
    "square units",
    "sq units",
    "square feet",
    "square inches",
    "square meters",
    "square centimeters",
    "square yards",
    "square miles",
    "cubic units",
    "cubic feet",
    "cubic inches",
    "cubic meters",
    "cubic centimeters",
    "sq ft",
    "units",
    "unit",
    "inches",
    "inch",
    "feet",
    "foot",
    "ft",
    "yards",
    "yard",
    "miles",
    "mile",
    "mph",
    "meters",
    "meter",
    "centimeters",
    "centimeter",
    "cm",
    "mm",
    "km",
    "kilometers",
    "degrees",
    "degree",
    "dollars",
    "dollar",
    "cents",
    "cent",
    "hours",
    "hour",
    "minutes",
    "minute",
    "seconds",
    "second",
    "days",
    "day",
    "weeks",
    "week",
    "months",
    "years",
    "year",
    "pounds",
    "ounces",
    "gallons",
    "liters",
    "grams",
    "kg",
    "people",
    "students",
    "ways",
    "percent",
]
_UNITS = re.compile(
    r"(?<=[\d}).\s])\s*(?:"
    + "|".join(re.escape(u).replace(r"\ ", r"\s+") for u in _UNIT_WORDS)
    + r")(?:\s*\^\s*\{?[23]\}?)?\s*$",
    re.IGNORECASE,
)
_TEXT_COMMANDS = ("text", "textbf", "textit", "textnormal", "textrm", "mbox", "mathrm", "mathbf")
_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\quad|\\qquad|~")
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|bigg|Bigg)(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°")
_LHS = re.compile(r"^\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?\s*=\s*(?P<rest>[^=]+)$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


@dataclass(frozen=True)
class _Norm:
    text: str
    percent: bool = False


def _normalize(answer: str, *, strip_lhs: bool = True) -> _Norm:
    s = str(answer).strip()
    s = s.replace("\n", " ").replace("\r", " ")
    s = _SPACING.sub(" ", s)
    s = s.replace("\\$", "").replace("$", "")
    s = _unwrap(s, ("boxed", "fbox"))
    s = _unwrap(s, _TEXT_COMMANDS)
    s = _SIZING.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\displaystyle", "")
    s = _DEGREES.sub("", s)
    percent = bool(re.search(r"\\%|%|\bpercent\b", s))
    s = re.sub(r"\\%|%", "", s)
    for _ in range(3):
        stripped = _UNITS.sub("", s).strip()
        if not stripped or stripped == s:
            break
        s = stripped
    s = s.strip().rstrip(".").strip()
    m = _LHS.match(s) if strip_lhs else None
    if m and m.group("rest").strip():
        s = m.group("rest")
    s = re.sub(r"\s+(?:and|or)\s+", ",", s)
    s = s.replace("{,}", "")
    s = _fix_macro_args(s, "frac", 2)
    s = _fix_macro_args(s, "sqrt", 1)
    s = re.sub(r"\s+", "", s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = re.sub(r"(?<![\d}])\.(?=\d)", "0.", s)  # ".5" -> "0.5", "{.5}" -> "{0.5}"
    s = s.rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    m2 = re.fullmatch(r"\(([A-Ea-e])\)", s)  # "(C)" -> "C"
    if m2:
        s = m2.group(1)
    return _Norm(s, percent)


def normalize(answer: str) -> str:
    """The canonical string form of a MATH answer (what is compared first)."""
    return _normalize(answer).text


# -- numbers -------------------------------------------------------------------------------

_INT = r"-?\d+"
_DEC = r"-?(?:\d+\.\d*|\d*\.\d+|\d+)(?:[eE][-+]?\d+)?"


def _number(s: str) -> Fraction | None:
    """A plain number from a normalised answer: ``3``, ``-0.5``, ``\\frac{1}{2}``, ``-3/4``."""
    if re.fullmatch(_DEC, s):
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
    m = re.fullmatch(r"(-?)\\frac\{(" + _DEC + r")\}\{(" + _DEC + r")\}", s) or re.fullmatch(
        r"(-?)\(?(" + _DEC + r")\)?/\(?(" + _DEC + r")\)?", s
    )
    if m:
        try:
            value = Fraction(m.group(2)) / Fraction(m.group(3))
        except (ValueError, ZeroDivisionError):
            return None
        return -value if m.group(1) else value
    return None


def _close(a: complex | float, b: complex | float, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


# -- structure: tuples, intervals, sets, lists, matrices -----------------------------------


def _split_top(s: str, seps: tuple[str, ...] = (",",)) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(s):
        c = s[i]
        if s.startswith("\\{", i):
            depth += 1
            i += 2
            continue
        if s.startswith("\\}", i):
            depth -= 1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for sep in seps:
                if s.startswith(sep, i):
                    parts.append(s[start:i])
                    start = i + len(sep)
                    i = start - 1
                    break
        i += 1
    parts.append(s[start:])
    return parts


def _enclosed(s: str, left: str, right: str) -> bool:
    """``s`` is one bracketed group from its first to its last character."""
    if not (s.startswith(left) and s.endswith(right)) or len(s) < len(left) + len(right):
        return False
    depth = 0
    i = 0
    while i < len(s):
        if s.startswith("\\{", i) or s.startswith("\\}", i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
        else:
            if s[i] in "([{":
                depth += 1
            elif s[i] in ")]}":
                depth -= 1
            i += 1
        if depth == 0 and i < len(s):
            return False
    return depth == 0


@dataclass(frozen=True)
class _Shape:
    kind: str  # "ordered" (tuple/interval/matrix/union) or "unordered" (set/list)
    left: str
    right: str
    items: tuple[str, ...]


_MATRIX = re.compile(r"^\\begin\{([pbvB]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}$")


def _shape(s: str) -> _Shape | None:
    m = _MATRIX.match(s)
    if m:
        rows = [r for r in m.group(2).split("\\\\") if r != ""]
        cells = tuple(c for r in rows for c in r.split("&"))
        return _Shape("ordered", f"matrix{len(rows)}", "", cells)
    unions = _split_top(s, ("\\cup",))
    if len(unions) > 1:
        return _Shape("ordered", "cup", "", tuple(unions))
    if _enclosed(s, "\\{", "\\}"):
        return _Shape("unordered", "{", "}", tuple(_split_top(s[2:-2])))
    for left in "([":
        for right in ")]":
            if _enclosed(s, left, right):
                items = _split_top(s[1:-1])
                if len(items) > 1:
                    return _Shape("ordered", left, right, tuple(items))
    items = _split_top(s)
    if len(items) > 1:
        return _Shape("unordered", "", "", tuple(items))
    return None


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
                g = _group(text, k)
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


class _Deadline(Exception):
    pass


def _run_with_deadline(fn: Callable[[], T], timeout_s: float) -> T:
    """Run ``fn`` in this thread, aborting pure-Python work after ``timeout_s`` seconds.

    Uses a call-level trace function (works in any thread, unlike SIGALRM); the previous
    tracer (a debugger or coverage) is restored afterwards.
    """
    deadline = time.monotonic() + timeout_s
    previous = sys.gettrace()

    def tracer(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and time.monotonic() > deadline:
            raise _Deadline()
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


def _sympy_equal(a: str, b: str) -> bool:
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
            return _close(va, vb)
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
                elif not _close(va, vb):
                    return False
        except (_Unsupported, TypeError, ValueError, ZeroDivisionError):
            return bool(sympy.simplify(ea - eb) == 0)
        if equations:
            return all(r != 0 and _close(r, ratios[0]) for r in ratios)
        return True

    if max(len(a), len(b)) > _MAX_SYMBOLIC_CHARS:
        return False
    try:
        return bool(_run_with_deadline(check, SYMBOLIC_TIMEOUT_S))
    except Exception:
        return False  # unparsable, timed out, or sympy failed: not shown equal


# -- comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of ``compare``: ``equal``, ``how`` (why, for feedback) and both normal forms."""

    equal: bool
    how: str
    predicted: str
    expected: str


def _equal_item(a: str, b: str, *, symbolic: bool) -> str | None:
    """How two normalised single answers are equal, or None."""
    if a == b:
        return "same after normalisation"
    if re.fullmatch(r"[A-Za-z ]+", a) and a.lower() == b.lower():
        return "same text"
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        if na == nb or _close(float(na), float(nb)):
            return "same number"
        return None
    sa, sb = _shape(a), _shape(b)
    if sa is not None or sb is not None:
        if sa is None or sb is None:
            return None
        return _equal_shapes(sa, sb, symbolic=symbolic)
    if symbolic and _sympy_equal(a, b):
        return "symbolically equal"
    return None


def _equal_shapes(sa: _Shape, sb: _Shape, *, symbolic: bool) -> str | None:
    if (sa.kind, sa.left, sa.right) != (sb.kind, sb.left, sb.right):
        return None
    if len(sa.items) != len(sb.items):
        return None
    if sa.kind == "ordered":
        ok = all(
            _equal_item(x, y, symbolic=symbolic) is not None
            for x, y in zip(sa.items, sb.items, strict=True)
        )
        return "equal element by element" if ok else None
    unused = list(sb.items)
    for x in sa.items:
        match = next((y for y in unused if _equal_item(x, y, symbolic=symbolic) is not None), None)
        if match is None:
            return None
        unused.remove(match)
    return "the same elements in some order"


def compare(predicted: str | None, expected: str, *, symbolic: bool = True) -> Verdict:
    """Whether ``predicted`` equals the reference ``expected`` (see the module docstring)."""
    b = _normalize(expected)
    if predicted is None:
        return Verdict(False, "no answer", "", b.text)
    a = _normalize(predicted)
    if not a.text:
        return Verdict(False, "empty answer", a.text, b.text)
    how = _equal_item(a.text, b.text, symbolic=symbolic)
    if how is None and a.percent != b.percent:  # "10\%" vs "0.1"
        na, nb = _number(a.text), _number(b.text)
        if na is not None and nb is not None:
            scaled = (na / 100, nb) if a.percent else (na, nb / 100)
            if _close(float(scaled[0]), float(scaled[1])):
                how = "same number (as a percentage)"
    if how is None and symbolic and "=" in predicted + expected:  # "2x-y+3=0" vs "y=2x+3"
        ea, eb = _normalize(predicted, strip_lhs=False), _normalize(expected, strip_lhs=False)
        if ea.text.count("=") == eb.text.count("=") == 1 and _sympy_equal(ea.text, eb.text):
            how = "the same equation"
    return Verdict(how is not None, how or "different", a.text, b.text)


def is_equiv(predicted: str | None, expected: str, *, symbolic: bool = True) -> bool:
    """True if the two final answers are mathematically the same (never raises)."""
    try:
        return compare(predicted, expected, symbolic=symbolic).equal
    except Exception:
        return False
