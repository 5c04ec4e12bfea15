"""Metrics: score a graph's final output against an example, with feedback text for the critic.

A metric is ``metric(example, output_text) -> float | Score``. ``Score.feedback`` is a short,
specific sentence the optimizer's critic reads (as GEPA does with feedback metrics), e.g.
``"expected 12, got 7 (extracted '7' as the output's final number)"``.

Built-ins (factories; ``get_metric(name, **kwargs)`` builds one by name, as ``--metric`` does):

- ``exact_match(answer_format="raw")``: the extracted answer equals the target (loosely
  normalized: case, whitespace, a trailing dot). A list target means "any of these".
- ``numeric_match(answer_format="last_number", rel_tol=1e-6, abs_tol=1e-9)``: numbers compare
  equal; targets may be ``72``, ``"1,234"``, ``"$5"`` or a GSM8K solution ending ``#### 72``.
- ``multiple_choice()``: the output's choice letter (A-D) equals the target (a letter, or an
  integer index 0-3).
- ``code_passes_tests(timeout_s=10)``: the output's code block (else the raw output) followed by
  the example's test code (``example["tests"]``, else ``example["target"]``) runs without error
  in ``ann_langgraph.sandbox.run_python``. If the example has ``entry_point`` and the tests
  define ``check(candidate)`` without calling it, ``check(<entry_point>)`` is appended; if the
  code does not define ``entry_point`` but the example has a ``prompt`` (HumanEval), the prompt
  is put in front of the code.
- ``contains(case_sensitive=False)``: every target string (a string or a list) is in the output.

Metrics raise ``ValueError`` for an unusable *target* (a dataset problem, not a model error);
``evaluate`` records that as the example's error.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from pydantic import BaseModel

from .answers import extract_answer, normalize_answer, unclosed_code_block

__all__ = [
    "Metric",
    "Score",
    "as_score",
    "code_passes_tests",
    "contains",
    "exact_match",
    "get_metric",
    "label_match",
    "metric_for_format",
    "metric_names",
    "multiple_choice",
    "numeric_match",
    "register_metric",
]


class Score(BaseModel):
    """A metric's verdict: ``value`` (0..1 typical) and feedback text for the critic."""

    value: float
    feedback: str = ""


Metric = Callable[[dict[str, Any], str], float | Score]

_FORMAT_PHRASE = {
    "raw": "the whole output",
    "last_line": "the last line of the output",
    "last_number": "the output's final number ('Answer:'/'####' marker, else the last number)",
    "boxed": "the last \\boxed{} of the output",
    "choice_letter": "the output's choice letter",
    "code_block": "the output's last code block",
}


def as_score(x: Any) -> Score:
    """Coerce a metric's return value (``Score``, number, bool, or ``(value, feedback)``)."""
    if isinstance(x, Score):
        return x
    if isinstance(x, bool):
        return Score(value=1.0 if x else 0.0)
    if isinstance(x, int | float):
        value = float(x)
        if math.isnan(value):
            raise ValueError("metric returned NaN")
        return Score(value=value)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], int | float):
        return Score(value=float(x[0]), feedback=str(x[1]))
    raise TypeError(
        f"a metric must return a float or an ann_langgraph.Score, got {type(x).__name__}"
    )


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _target(example: dict[str, Any], key: str = "target") -> Any:
    if key not in example or example[key] is None:
        raise ValueError(f"example {example.get('id', '?')!r} has no '{key}'")
    return example[key]


def _nothing_found(what: str, output: str, fmt: str) -> str:
    where = _FORMAT_PHRASE.get(fmt, f"answer_format '{fmt}'")
    if not output.strip():
        return f"the output is empty (expected {what})"
    return f"no answer found in {where} (expected {what}); the output ends with: '{_tail(output)}'"


# -- exact match ---------------------------------------------------------------------------


def exact_match(answer_format: str = "raw") -> Metric:
    """The extracted answer equals the target (case, spaces and a trailing dot ignored)."""
    extract_answer("", answer_format)  # validate the format now

    def metric(example: dict[str, Any], output: str) -> Score:
        raw_target = _target(example)
        targets = (
            [str(t) for t in raw_target]
            if isinstance(raw_target, list | tuple)
            else [str(raw_target)]
        )
        wanted = [normalize_answer(t) for t in targets]
        shown = " or ".join(repr(_short(t)) for t in targets)
        got = extract_answer(output, answer_format)
        if got is None:
            return Score(value=0.0, feedback=_nothing_found(shown, output, answer_format))
        if normalize_answer(got) in wanted:
            return Score(value=1.0, feedback=f"correct: {_short(got)!r}")
        return Score(
            value=0.0,
            feedback=f"expected {shown}, got {_short(got)!r} "
            f"(extracted from {_FORMAT_PHRASE.get(answer_format, answer_format)})",
        )

    metric.__name__ = "exact_match"
    return metric


# -- numeric match -------------------------------------------------------------------------

_NUM_CLEAN = re.compile(r"[\s,$€£%]")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_ANY_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _parse_number(text: str) -> Fraction | None:
    """A number from a short answer: ``"1,234"``, ``"$5"``, ``"-3.5"``, ``"1e3"``, ``"3/4"``,
    ``"\\frac{3}{4}"``, ``"72 dollars"``; ``None`` if it holds no number or several."""
    text = _FRAC.sub(r"\1/\2", text)
    cleaned = _NUM_CLEAN.sub("", text.strip()).rstrip(".")
    if re.fullmatch(r"[-+]?\d+/\d+", cleaned):
        num, den = cleaned.split("/")
        return Fraction(int(num), int(den)) if int(den) else None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        pass
    if len(_ANY_NUMBER.findall(text)) != 1:  # "x = 5" yes; "3 + 4" or "a^2" no
        return None
    found = extract_answer(text, "last_number")
    try:
        return Fraction(found) if found is not None else None
    except (ValueError, ZeroDivisionError):
        return None


def _fmt_number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):g}"


def _target_number(target: Any) -> Fraction:
    if isinstance(target, bool):
        raise ValueError(f"numeric target is a bool: {target!r}")
    if isinstance(target, int):
        return Fraction(target)
    if isinstance(target, float):
        if not math.isfinite(target):
            raise ValueError(f"numeric target is not finite: {target!r}")
        return Fraction(target)
    text = str(target)
    value = _parse_number(text)  # "72", "1,234", "3/4", "\\frac{3}{4}", "#### 72"
    if value is None:  # a worked solution: its "#### 72" / "Answer: 72" / last number
        found = extract_answer(text, "last_number")
        value = _parse_number(found) if found is not None else None
    if value is None:
        raise ValueError(f"target {_short(text)!r} contains no number")
    return value


def numeric_match(
    answer_format: str = "last_number", rel_tol: float = 1e-6, abs_tol: float = 1e-9
) -> Metric:
    """The output's number equals the target's within ``rel_tol``/``abs_tol``."""
    extract_answer("", answer_format)

    def metric(example: dict[str, Any], output: str) -> Score:
        want = _target_number(_target(example))
        shown = _fmt_number(want)
        raw = extract_answer(output, answer_format)
        if raw is None:
            if not output.strip():
                return Score(value=0.0, feedback=f"the output is empty (expected {shown})")
            return Score(
                value=0.0,
                feedback=f"no number found in the output (expected {shown}); "
                f"the output ends with: '{_tail(output)}'",
            )
        got = _parse_number(raw)
        if got is None:
            return Score(
                value=0.0,
                feedback=f"expected {shown}, but {_short(raw)!r} (extracted from "
                f"{_FORMAT_PHRASE.get(answer_format, answer_format)}) is not a number",
            )
        same = got == want or math.isclose(
            float(got), float(want), rel_tol=rel_tol, abs_tol=abs_tol
        )
        if same:
            return Score(value=1.0, feedback=f"correct: {shown}")
        return Score(
            value=0.0,
            feedback=f"expected {shown}, got {_fmt_number(got)} (extracted {_short(raw)!r} "
            f"from {_FORMAT_PHRASE.get(answer_format, answer_format)})",
        )

    metric.__name__ = "numeric_match"
    return metric


# -- multiple choice -----------------------------------------------------------------------

_LETTERS = "ABCD"


def _target_letter(target: Any) -> str:
    if isinstance(target, int) and not isinstance(target, bool):
        if 0 <= target < len(_LETTERS):
            return _LETTERS[target]
        raise ValueError(f"choice index {target} is out of range 0-3")
    text = str(target).strip()
    letter = text.upper() if len(text) == 1 else extract_answer(text, "choice_letter")
    if letter is None or letter not in _LETTERS:
        raise ValueError(f"target {_short(text)!r} is not a choice letter A-D")
    return letter


def multiple_choice() -> Metric:
    """The output's choice letter equals the target (``"B"``, ``"(b)"`` or index ``1``)."""

    def metric(example: dict[str, Any], output: str) -> Score:
        want = _target_letter(_target(example))
        got = extract_answer(output, "choice_letter")
        if got is None:
            if not output.strip():
                return Score(value=0.0, feedback=f"the output is empty (expected {want})")
            return Score(
                value=0.0,
                feedback=f"no choice letter (A-D) found in the output (expected {want}); "
                f"the output ends with: '{_tail(output)}'",
            )
        if got == want:
            return Score(value=1.0, feedback=f"correct: {want}")
        return Score(value=0.0, feedback=f"expected {want}, got {got}")

    metric.__name__ = "multiple_choice"
    return metric


# -- code ----------------------------------------------------------------------------------


def _stderr_tail(stderr: str, lines: int = 8, limit: int = 600) -> str:
    stderr = re.sub(r'File "[^"]*/main\.py"', 'File "main.py"', stderr)
    kept = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    text = "\n".join(kept)
    return text if len(text) <= limit else "..." + text[-limit:]


def code_passes_tests(timeout_s: float = 10) -> Metric:
    """The output's code plus the example's tests runs cleanly in the sandbox."""
    from .sandbox import run_python

    def metric(example: dict[str, Any], output: str) -> Score:
        tests = example.get("tests") or _target(example)
        if not isinstance(tests, str):
            raise ValueError(f"test code must be a string, got {type(tests).__name__}")
        code = extract_answer(output, "code_block")
        note = ""
        if code is not None and unclosed_code_block(output) is not None:
            note = " (the code block is never closed: the answer was probably cut off)"
        if code is None:
            code = output.strip("\n")  # keep indentation: it may be a function body
            note = " (no code block found; ran the raw output)"
        if not code.strip():
            return Score(value=0.0, feedback="the output contains no code")
        entry = example.get("entry_point")
        if entry and example.get("prompt") and not re.search(rf"def\s+{re.escape(entry)}\b", code):
            code = f"{str(example['prompt']).rstrip()}\n{code}"
        else:
            code = textwrap.dedent(code)
        program = f"{code}\n\n{tests}\n"
        if (
            entry
            and re.search(r"def\s+check\s*\(", tests)
            and not re.search(r"^check\s*\(", tests, flags=re.MULTILINE)
        ):
            program += f"\ncheck({entry})\n"
        result = run_python(program, timeout_s=timeout_s)
        if result.ok:
            return Score(value=1.0, feedback=f"all tests passed{note}")
        if result.timed_out:
            return Score(
                value=0.0, feedback=f"timed out after {timeout_s:g}s (infinite loop?){note}"
            )
        reason = result.killed_reason or f"exit code {result.returncode}"
        detail = _stderr_tail(result.stderr) or _stderr_tail(result.stdout) or "(no output)"
        return Score(value=0.0, feedback=f"tests failed ({reason}){note}:\n{detail}")

    metric.__name__ = "code_passes_tests"
    return metric


# -- contains ------------------------------------------------------------------------------


def contains(case_sensitive: bool = False) -> Metric:
    """1 if every target string (one string or a list) occurs in the output, else 0."""

    def metric(example: dict[str, Any], output: str) -> Score:
        raw = _target(example)
        wanted = [str(t) for t in raw] if isinstance(raw, list | tuple) else [str(raw)]
        if not wanted:
            raise ValueError(f"example {example.get('id', '?')!r} has an empty target list")
        haystack = output if case_sensitive else output.lower()
        missing = [w for w in wanted if (w if case_sensitive else w.lower()) not in haystack]
        if not missing:
            n = len(wanted)
            return Score(
                value=1.0,
                feedback="all expected strings present"
                if n > 1
                else f"contains {_short(wanted[0])!r}",
            )
        found = len(wanted) - len(missing)
        return Score(
            value=0.0,
            feedback=f"missing {', '.join(repr(_short(m, 40)) for m in missing)} "
            f"({found}/{len(wanted)} expected strings present)",
        )

    metric.__name__ = "contains"
    return metric


def label_match(labels: list[str] | tuple[str, ...] = ("positive", "negative")) -> Metric:
    """1 if the first label word the output mentions is the target label (classification).

    Small models rarely answer with the bare label; the first label they name is their answer.
    """
    names = [str(label).lower() for label in labels]
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b", re.IGNORECASE)

    def metric(example: dict[str, Any], output: str) -> Score:
        target = str(_target(example)).strip().lower()
        if target not in names:
            raise ValueError(f"target {target!r} is not one of the labels {names}")
        hit = pattern.search(output)
        if hit is None:
            return Score(
                value=0.0,
                feedback=f"no label ({' / '.join(names)}) in the output (expected {target}); "
                f"it ends with: {_tail(output)!r}",
            )
        got = hit.group(1).lower()
        if got == target:
            return Score(value=1.0, feedback=f"correct: {target}")
        return Score(
            value=0.0,
            feedback=f"expected {target}, got {got} (the first label word in the output)",
        )

    metric.__name__ = "label_match"
    return metric


# -- registry ------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Metric]] = {
    "exact_match": exact_match,
    "numeric_match": numeric_match,
    "multiple_choice": multiple_choice,
    "code_passes_tests": code_passes_tests,
    "contains": contains,
    "label_match": label_match,
}


def register_metric(name: str, factory: Callable[..., Metric], *, replace: bool = False) -> None:
    """Make ``get_metric(name, **kwargs)`` (and ``--metric name``) build ``factory(**kwargs)``."""
    if not name or not isinstance(name, str):
        raise ValueError("a metric name must be a non-empty string")
    if name in _REGISTRY and not replace:
        raise ValueError(f"metric '{name}' is already registered (pass replace=True)")
    _REGISTRY[name] = factory


def metric_names() -> list[str]:
    """Registered metric names, sorted."""
    return sorted(_REGISTRY)


def get_metric(name: str, **kwargs: Any) -> Metric:
    """Build the metric registered as ``name`` with ``kwargs``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric '{name}' (known: {', '.join(metric_names())})") from None
    return factory(**kwargs)


def metric_for_format(name: str, answer_format: str) -> Metric:
    """The metric ``name`` reading answers in ``answer_format`` (a spec's), if it takes one."""
    import inspect

    factory = _REGISTRY.get(name)
    if factory is not None and "answer_format" in inspect.signature(factory).parameters:
        return get_metric(name, answer_format=answer_format)
    return get_metric(name)


def metric_name(metric: Metric | str) -> str:
    """A readable name for a metric (for reports)."""
    if isinstance(metric, str):
        return metric
    return str(getattr(metric, "__name__", None) or type(metric).__name__)
