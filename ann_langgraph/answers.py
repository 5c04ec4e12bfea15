"""Answer extraction: turn an agent's free text into the final answer votes and metrics compare."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

__all__ = ["braced_group", "extract_answer", "normalize_answer"]

# A minus sign counts only when it is not a hyphen between words/numbers ("pages 10-20");
# commas count only as thousands separators ("1,234"), not as list separators ("1,2,3").
_SIGN = r"(?:(?<![\w.])-)?"
_NUMBER = re.compile(
    _SIGN + r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+)"
)
_CHOICE_PATTERNS = [
    # "answer is (C)", "answer: D", "the answer is c." -- but not the article in "answer is a bit".
    re.compile(
        r"(?i:answer|choice|option)\s*(?:(?i:is)\s*:?|:)?\s*"
        r"(?:\(([A-Da-d])\)|([A-D])(?![A-Za-z])|([a-d])(?![A-Za-z])(?!\s+[A-Za-z]))"
    ),
    # A line that is only a letter: "B", "(c)", "d."
    re.compile(r"^\s*\(?([A-Da-d])\)?[.):]?\s*$", re.MULTILINE),
    re.compile(r"\(([A-D])\)"),
    re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])"),
]
_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[ \t]*\n(.*?)```", re.DOTALL)


def _raw(text: str) -> str | None:
    stripped = text.strip()
    return stripped or None


def _last_line(text: str) -> str | None:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()
    return None


# Numbers that are never the answer: clock times ("5:00 PM", "13:45:10"), dates ("2024-05-12",
# "5/12/2024") and list or step indexes at a line's start ("3. Add ...", "Step 2:"). A recorded
# run read a clock time as the answer (gsm8k-test-23: "\boxed{8} ... from 1:00 PM to 5:00 PM"
# gave 0); dates and indexes are the same artifact, so all are blanked before numbers are read.
_NOT_ANSWERS = re.compile(
    r"(?<![\d.])\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\.?(?![A-Za-z]))?(?!\d|\.\d)"
    r"|(?<![\d.])\d{4}-\d{1,2}-\d{1,2}(?!\d|\.\d)"
    r"|(?<![\d./])\d{1,2}/\d{1,2}/\d{2,4}(?!\d|\.\d|/)"
    r"|^[ \t]*(?:(?i:step)[ \t]+)?\d{1,2}[.):](?=[ \t]+\S)",
    re.MULTILINE,
)


def _last_number(text: str) -> str | None:
    # Prefer an explicit "#### ..." or "Answer: ..." marker, then the last \boxed{...} holding a
    # number, then the last number anywhere (never a clock time, a date or a list index). The
    # blanking keeps every other character in place, so offsets stay the text's own.
    text = _NOT_ANSWERS.sub(lambda m: " " * len(m.group(0)), text)
    for marker in (r"####\s*(.+)", r"answer\s*(?:is|:)\s*(.+)"):
        hits = re.findall(marker, text, flags=re.IGNORECASE)
        for hit in reversed(hits):
            nums = _NUMBER.findall(hit)
            if nums:
                return _clean_number(nums[0])
    for box in reversed(list(_BOXED.finditer(text))):
        group = braced_group(text, box.end())
        nums = _NUMBER.findall(group[0]) if group else []
        if nums:
            return _clean_number(nums[0])
    nums = _NUMBER.findall(text)
    return _clean_number(nums[-1]) if nums else None


def _clean_number(raw: str) -> str:
    value = raw.replace(",", "")
    if re.fullmatch(r"-?\d+", value):
        return str(int(value))  # exact, however many digits
    try:
        num = float(value)
    except ValueError:
        return value
    if not math.isfinite(num):
        return value
    if num.is_integer() and abs(num) < 1e16:
        return str(int(num))
    return repr(num)


def _boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    hits = list(_BOXED.finditer(text))
    if not hits:
        return None
    last = hits[-1]
    i = last.end()
    if i >= len(text) or text[i] != "{":
        # "\boxed 5" form: the argument is one token
        rest = text[i:].split(None, 1)
        if not rest:
            return None
        return rest[0].split("$")[0].strip() or None
    found = braced_group(text, i)
    return (found[0].strip() or None) if found else None


def braced_group(text: str, i: int) -> tuple[str, int] | None:
    """The balanced ``{...}`` group starting at ``text[i]``: (content, index after it)."""
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
    return None


def _choice_letter(text: str) -> str | None:
    for pattern in _CHOICE_PATTERNS:
        hits = pattern.findall(text)
        if hits:
            last = hits[-1]
            if isinstance(last, tuple):  # several alternative groups: the one that matched
                last = next(group for group in last if group)
            return str(last).upper()
    return None


_OPEN_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[ \t]*\n", re.DOTALL)


def unclosed_code_block(text: str) -> str | None:
    """The code after a last opening fence that never closes (an answer cut off mid-code)."""
    if text.count("```") % 2 == 0:
        return None
    openings = list(_OPEN_FENCE.finditer(text))
    if not openings:
        return None
    return text[openings[-1].end() :].strip("\n") or None


def _code_block(text: str) -> str | None:
    blocks = _CODE_BLOCK.findall(text)
    if not blocks:
        # A model cut off at its token cap opens a fence it never closes: its code still counts.
        return unclosed_code_block(text)
    # Prefer the last python block, else the last block of any language.
    for lang, body in reversed(blocks):
        if lang.lower() in ("python", "py", "python3"):
            return body.strip("\n") or None
    return blocks[-1][1].strip("\n") or None


_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "raw": _raw,
    "last_line": _last_line,
    "last_number": _last_number,
    "boxed": _boxed,
    "choice_letter": _choice_letter,
    "code_block": _code_block,
}


def extract_answer(text: str | None, answer_format: str = "raw") -> str | None:
    """The final answer in ``text`` for ``answer_format``, or ``None`` if there is none."""
    if text is None:
        return None
    try:
        extractor = _EXTRACTORS[answer_format]
    except KeyError:
        raise ValueError(
            f"unknown answer_format '{answer_format}' (known: {', '.join(_EXTRACTORS)})"
        ) from None
    return extractor(text)


def normalize_answer(answer: str | None) -> str | None:
    """Loose canonical form used to compare answers in votes (case, spaces, trailing dot)."""
    if answer is None:
        return None
    norm = " ".join(answer.split()).strip().rstrip(".").strip().lower()
    return norm or None
