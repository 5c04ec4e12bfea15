"""The confidence interval every score in ann-langgraph carries (a report's mean, each
version's validation score, the compare table's rows)."""

from __future__ import annotations

import math
import random

__all__ = ["BOOTSTRAP_SAMPLES", "BOOTSTRAP_SEED", "Z95", "confidence_interval"]

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
