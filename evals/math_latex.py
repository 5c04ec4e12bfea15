"""LaTeX answer clean-up for MATH: balanced-brace helpers and the normalisation (spacing,
``\\text{}``, units, degrees, ``dfrac``, ``\\frac12``, a leading ``x =``...) that
``math_equiv`` compares after."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ann_langgraph.answers import braced_group

__all__ = ["Norm", "group", "normalize", "normalize_parts"]

# -- brace helpers -------------------------------------------------------------------------


group = braced_group  # the balanced ``{...}`` at ``s[i]``: (content, index after it)


def _arg(s: str, i: int) -> tuple[str, int] | None:
    """One macro argument at ``s[i]``: a ``{group}``, a ``\\command`` or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        return group(s, i)
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
        g = group(out, m.end())
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
class Norm:
    text: str
    percent: bool = False


def normalize_parts(answer: str, *, strip_lhs: bool = True) -> Norm:
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
    return Norm(s, percent)


def normalize(answer: str) -> str:
    """The canonical string form of a MATH answer (what is compared first)."""
    return normalize_parts(answer).text
