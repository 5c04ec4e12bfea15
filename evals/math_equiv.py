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

import re
from dataclasses import dataclass
from fractions import Fraction

from ann_langgraph.answers import extract_answer

from .math_latex import normalize, normalize_parts
from .math_symbolic import SYMBOLIC_TIMEOUT_S, close, sympy_equal

__all__ = [
    "SYMBOLIC_TIMEOUT_S",
    "Verdict",
    "compare",
    "is_equiv",
    "last_boxed",
    "normalize",
]


def last_boxed(text: str | None) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces), or None."""
    return extract_answer(text, "boxed")


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
        if na == nb or close(float(na), float(nb)):
            return "same number"
        return None
    sa, sb = _shape(a), _shape(b)
    if sa is not None or sb is not None:
        if sa is None or sb is None:
            return None
        return _equal_shapes(sa, sb, symbolic=symbolic)
    if symbolic and sympy_equal(a, b):
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
    b = normalize_parts(expected)
    if predicted is None:
        return Verdict(False, "no answer", "", b.text)
    a = normalize_parts(predicted)
    if not a.text:
        return Verdict(False, "empty answer", a.text, b.text)
    how = _equal_item(a.text, b.text, symbolic=symbolic)
    if how is None and a.percent != b.percent:  # "10\%" vs "0.1"
        na, nb = _number(a.text), _number(b.text)
        if na is not None and nb is not None:
            scaled = (na / 100, nb) if a.percent else (na, nb / 100)
            if close(float(scaled[0]), float(scaled[1])):
                how = "same number (as a percentage)"
    if how is None and symbolic and "=" in predicted + expected:  # "2x-y+3=0" vs "y=2x+3"
        ea, eb = (
            normalize_parts(predicted, strip_lhs=False),
            normalize_parts(expected, strip_lhs=False),
        )
        if ea.text.count("=") == eb.text.count("=") == 1 and sympy_equal(ea.text, eb.text):
            how = "the same equation"
    return Verdict(how is not None, how or "different", a.text, b.text)


def is_equiv(predicted: str | None, expected: str, *, symbolic: bool = True) -> bool:
    """True if the two final answers are mathematically the same (never raises)."""
    try:
        return compare(predicted, expected, symbolic=symbolic).equal
    except Exception:
        return False
