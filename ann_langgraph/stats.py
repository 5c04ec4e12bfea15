"""The statistics every score in ann-langgraph carries: a 95% interval for a mean (a report's
mean, each version's validation score, the compare table's rows), the exact paired sign test
between two methods scored on the same examples, and Holm's correction across a table."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Literal

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "BOOTSTRAP_SEED",
    "SIGN_TEST_NAME",
    "Z95",
    "Alternative",
    "confidence_interval",
    "holm",
    "paired_sign_test",
    "sign_test_p",
]

Alternative = Literal["two-sided", "greater"]
SIGN_TEST_NAME = "exact sign test"

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def confidence_interval(scores: list[float]) -> tuple[float, float]:
    """95% interval for the mean: Wilson score interval when every score is 0 or 1, else a
    percentile bootstrap (2000 resamples, fixed seed, so reports are reproducible).
    ``(0.0, 1.0)`` for no scores."""
    n = len(scores)
    if n == 0:
        return 0.0, 1.0
    if all(s in (0.0, 1.0) for s in scores):
        p = sum(scores) / n
        z2 = Z95 * Z95
        denom = 1 + z2 / n
        center = (p + z2 / (2 * n)) / denom
        half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
        return max(0.0, center - half), min(1.0, center + half)
    rng = random.Random(BOOTSTRAP_SEED)
    means = sorted(sum(rng.choices(scores, k=n)) / n for _ in range(BOOTSTRAP_SAMPLES))
    return _quantile(means, 0.025), _quantile(means, 0.975)


def sign_test_p(diffs: Sequence[float], *, alternative: Alternative = "two-sided") -> float:
    """Exact sign test on per-example differences (ties dropped). ``"two-sided"``: is there any
    difference (what a report states); ``"greater"``: P(at least this many wins | no
    difference), the directional question an acceptance rule asks."""
    wins = sum(1 for d in diffs if d > 0)
    n = sum(1 for d in diffs if d != 0)
    if n == 0:
        return 1.0
    if alternative == "greater":
        return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n
    if alternative != "two-sided":
        raise ValueError(f"alternative must be 'two-sided' or 'greater', not {alternative!r}")
    tail = min(wins, n - wins)
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(tail + 1)) / 2**n)


def paired_sign_test(
    diffs: Sequence[float], *, alternative: Alternative = "two-sided"
) -> dict[str, Any]:
    """Wins, losses, ties and the sign test's p for per-example differences, with the test
    named (``test``, ``alternative``) so a record says which p it holds."""
    return {
        "wins": sum(1 for d in diffs if d > 0),
        "losses": sum(1 for d in diffs if d < 0),
        "ties": sum(1 for d in diffs if d == 0),
        "p_value": sign_test_p(diffs, alternative=alternative),
        "test": SIGN_TEST_NAME,
        "alternative": alternative,
    }


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order: the family-wise error across
    a table's comparisons stays at the level each adjusted p is compared with."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
