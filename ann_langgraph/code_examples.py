"""The examples a coding task states (``f(2, 3) == 5``, ``>>> f(2)`` then ``4``, ``f(1) ➞ 2``),
run against a candidate's code in the sandbox.

A small model that is asked to test its own code writes poor tests (measured on HumanEval with
the 1.5B model: it called the tool on file names and pasted docstring lines as code). The task's
own examples are a test it cannot get wrong, so the ``test_revise`` aggregator runs them itself
and shows the model the real failure. Only examples whose call arguments and expected value are
Python literals are used; anything else is skipped, never guessed.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "ExampleCheck",
    "StatedExample",
    "check_examples",
    "defined_functions",
    "stated_examples",
]

# What separates a call from its expected value in docstrings: f(x) == y, f(x) = y, f(x) ➞ y,
# f(x) -> y, f(x) => y, f(x) returns y, f(x) should return y.
_SEPARATOR = re.compile(
    r"\s*(?:==|=>|->|➞|→|=|\bshould\s+return\b|\bshould\s+be\b|\breturns?\b)\s*(?P<value>.+)$"
)
_MAX_EXAMPLES = 12
_MAX_SHOWN = 4


class StatedExample(BaseModel):
    """One example from the task: a call with literal arguments and its expected value."""

    call: str
    expected: str = Field(description="repr of the expected value")


class ExampleCheck(BaseModel):
    """The result of running a candidate on the task's stated examples."""

    total: int = 0
    passed: int = 0
    failures: list[str] = Field(default_factory=list)
    error: str | None = None  # the code did not run at all (syntax error, no code, timeout)

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total and self.error is None

    def report(self) -> str:
        """What the model is shown: which examples failed and how."""
        if self.error:
            return self.error
        if self.all_passed:
            return f"All {self.total} examples gave the expected result."
        lines = [f"{self.passed} of {self.total} examples gave the expected result. Failed:"]
        lines += [f"- {f}" for f in self.failures[:_MAX_SHOWN]]
        if len(self.failures) > _MAX_SHOWN:
            lines.append(f"- ... and {len(self.failures) - _MAX_SHOWN} more")
        return "\n".join(lines)


_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.M)


def defined_functions(*texts: str) -> list[str]:
    """Names of the functions defined in ``texts`` (a task's signature, a candidate's code),
    found by their ``def`` lines, so code that does not parse still names its function."""
    return list(dict.fromkeys(name for text in texts for name in _DEF.findall(text or "")))


def _call_end(line: str, open_paren: int) -> int | None:
    depth = 0
    quote: str | None = None
    for i in range(open_paren, len(line)):
        c = line[i]
        if quote:
            if c == quote and line[i - 1] != "\\":
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _literal_call(call: str) -> bool:
    """A call whose arguments are all literals (``f(a)`` with ``a`` undefined is not usable)."""
    try:
        node = ast.parse(call, mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(node, ast.Call):
        return False
    try:
        for arg in node.args:
            ast.literal_eval(arg)
        for kw in node.keywords:
            ast.literal_eval(kw.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _literal(text: str) -> str | None:
    """repr of the literal ``text`` starts with, if what follows it is prose, not more code
    (``1 + 9 = 10`` is an expression, not the value 1)."""
    text = text.strip()
    for cut in range(len(text), 0, -1):
        head, rest = text[:cut].rstrip(), text[cut:].strip()
        # what may follow a value: punctuation, or prose after a space (not `""abc"`)
        prose = text[cut : cut + 1].isspace() and re.match(r"^(?:\(|#|[A-Za-z])", rest)
        if rest and not (prose or re.match(r"^[.,;:]", rest)):
            continue
        try:
            value = ast.literal_eval(head.rstrip(".,;:") if rest or head[-1:] in ".,;:" else head)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        return repr(value)
    return None


def stated_examples(task: str, names: Iterable[str]) -> list[StatedExample]:
    """The examples ``task`` states for the functions ``names``, in order, without repeats."""
    wanted = [n for n in dict.fromkeys(names) if n]
    if not wanted:
        return []
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, wanted)) + r")\(")
    lines = task.splitlines()
    found: dict[str, StatedExample] = {}
    for i, line in enumerate(lines):
        for match in pattern.finditer(line):
            end = _call_end(line, match.end() - 1)
            if end is None:
                continue
            call = line[match.start() : end]
            if not _literal_call(call):
                continue
            rest = line[end:]
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            expected: str | None = None
            if sep := _SEPARATOR.match(rest):
                expected = _literal(sep.group("value"))
            elif not rest.strip() and nxt:
                if line.lstrip().startswith(">>>") and not nxt.startswith(">>>"):
                    expected = _literal(nxt)  # doctest: the value is on the next line
                elif sep := _SEPARATOR.match(nxt):
                    expected = _literal(sep.group("value"))
            if expected is not None and call not in found:
                found[call] = StatedExample(call=call, expected=expected)
    return list(found.values())[:_MAX_EXAMPLES]


_RUNNER = """
import json as _json, math as _math

def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return _math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        except TypeError:
            return False
    return a == b

for _call, _expected in _EXAMPLES:
    try:
        _got = eval(_call)
        _want = eval(_expected)
        _ok = _same(_got, _want)
        _line = {"ok": _ok, "call": _call, "want": _expected, "got": repr(_got)[:200]}
    except BaseException as _exc:
        _line = {"ok": False, "call": _call, "want": _expected,
                 "raised": (type(_exc).__name__ + ": " + str(_exc))[:200]}
    print("@@EXAMPLE " + _json.dumps(_line), flush=True)
"""


def _script(code: str, examples: list[StatedExample]) -> str:
    pairs = [(e.call, e.expected) for e in examples]
    return f"{code}\n\n_EXAMPLES = {pairs!r}\n{_RUNNER}"


def check_examples(
    code: str | None, examples: list[StatedExample], *, timeout_s: float = 10.0
) -> ExampleCheck:
    """Run ``code`` on ``examples`` in the sandbox; never raises for what the code does."""
    total = len(examples)
    if not code or not code.strip():
        return ExampleCheck(total=total, error="The answer has no code to run.")
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return ExampleCheck(
            total=total, error=f"The code does not parse: {exc.msg} (line {exc.lineno})."
        )
    from .sandbox import run_python  # the sandbox only when code really runs

    result = run_python(_script(code, examples), timeout_s=timeout_s)
    rows: list[dict[str, Any]] = []
    for line in result.stdout.splitlines():
        if line.startswith("@@EXAMPLE "):
            try:
                rows.append(json.loads(line[len("@@EXAMPLE ") :]))
            except json.JSONDecodeError:
                continue
    failures = []
    for row in rows:
        if row.get("ok"):
            continue
        got = f"raised {row['raised']}" if "raised" in row else f"returned {row.get('got')}"
        failures.append(f"{row['call']} {got}; expected {row['want']}")
    check = ExampleCheck(total=total, passed=sum(1 for r in rows if r.get("ok")), failures=failures)
    if len(rows) < total:
        if result.timed_out or result.killed_reason:
            why = f"was stopped ({result.killed_reason or 'timeout'} after {timeout_s:g} s)"
        else:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            why = f"failed before the examples ran: {tail[:300]}"
        done = f" ({check.passed} of the {len(rows)} before it passed)" if rows else ""
        check.error = f"Running the code {why}, at {examples[len(rows)].call}{done}."
    return check
