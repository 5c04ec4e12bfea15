"""What a candidate is committed for: higher validation accuracy (``objective="accuracy"``),
or, under ``objective="cost"``, also fewer tokens at an accuracy that is not worse.

The cost rule (a non-inferiority test): the one-sided lower confidence bound (at ``alpha``) of
the mean paired difference (candidate minus current, per validation example) must stay above
``-margin``, and the candidate's validation tokens per example must fall by at least
``min_saving``. Tokens are what a user pays, input plus output, and a call the response cache
served counts like a paid one (its record carries the tokens of the call it replays), so the
cache cannot make a version look cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from statistics import NormalDist
from typing import Any, NamedTuple

__all__ = [
    "CostVerdict",
    "cost_cannot_pass",
    "cost_verdict",
    "example_tokens",
    "noninferiority_bound",
    "tokens_per_example",
    "version_cost",
]


def example_tokens(results: Iterable[Any]) -> dict[str, int]:
    """Per example id, the input plus output tokens of its calls, cached ones included."""
    return {str(r.id): int(r.input_tokens) + int(r.output_tokens) for r in results}


def tokens_per_example(tokens: Mapping[str, int]) -> float:
    return sum(tokens.values()) / max(1, len(tokens))


def version_cost(results: list[Any], wall_time_s: float | None = None) -> dict[str, Any]:
    """A version's validation cost per example (versions.jsonl): input and output tokens,
    calls (cached ones included: what a user of the version pays), and wall time."""
    n = max(1, len(results))
    cost: dict[str, Any] = {
        "input_tokens_per_example": sum(int(r.input_tokens) for r in results) / n,
        "output_tokens_per_example": sum(int(r.output_tokens) for r in results) / n,
        "calls_per_example": sum(int(r.calls) for r in results) / n,
    }
    cost["tokens_per_example"] = (
        cost["input_tokens_per_example"] + cost["output_tokens_per_example"]
    )
    if wall_time_s is not None:
        cost["wall_s_per_example"] = wall_time_s / n
    return cost


def noninferiority_bound(diffs: list[float], *, alpha: float) -> float:
    """One-sided lower ``1 - alpha`` confidence bound of the mean of ``diffs`` (normal
    approximation; equal to the mean when every difference is the same)."""
    n = len(diffs)
    if n == 0:
        return -math.inf
    mean = sum(diffs) / n
    if n == 1:
        return mean if diffs[0] >= 0 else -math.inf
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean - NormalDist().inv_cdf(1 - alpha) * math.sqrt(var / n)


class CostVerdict(NamedTuple):
    """Whether a candidate is committed for its cost, and the numbers that decided it."""

    accept: bool
    reason: str
    lower_bound: float
    saving: float
    tokens: float
    tokens_before: float


def cost_verdict(
    scores: Mapping[str, float],
    current: Mapping[str, float],
    tokens: Mapping[str, int],
    current_tokens: Mapping[str, int],
    *,
    margin: float,
    min_saving: float,
    alpha: float,
) -> CostVerdict:
    """The cost rule on a fully scored candidate (``scores``/``tokens`` per validation id)
    against the current version (``current``/``current_tokens``)."""
    diffs = [scores.get(k, 0.0) - v for k, v in current.items()]
    lower = noninferiority_bound(diffs, alpha=alpha)
    mine, theirs = tokens_per_example(tokens), tokens_per_example(current_tokens)
    saving = 1.0 - mine / theirs if theirs > 0 else 0.0
    if lower <= -margin:
        why = (
            f"not non-inferior: the {1 - alpha:.0%} lower bound of the accuracy difference is "
            f"{lower:+.3f}, not above -{margin}"
        )
        return CostVerdict(False, why, lower, saving, mine, theirs)
    if mine > theirs * (1.0 - min_saving) + 1e-9:  # (a ratio, so 90 against 100 is 10%)
        why = (
            f"non-inferior but not cheaper enough: {mine:.0f} tokens per example against "
            f"{theirs:.0f} ({saving:+.0%} saved; at least {min_saving:.0%} needed)"
        )
        return CostVerdict(False, why, lower, saving, mine, theirs)
    why = (
        f"as accurate (lower bound {lower:+.3f} > -{margin}) at {mine:.0f} tokens per example "
        f"instead of {theirs:.0f} ({saving:.0%} saved)"
    )
    return CostVerdict(True, why, lower, saving, mine, theirs)


def cost_cannot_pass(
    scores: Mapping[str, float], current: Mapping[str, float], *, margin: float, alpha: float
) -> str | None:
    """Why a partly scored candidate can no longer be non-inferior, whatever the remaining
    examples score, or None while it still can.

    The best case is not always "win every remaining one": a win adds variance, and ties can
    bound higher. So every count of wins among the remaining examples the current version
    fails is tried (the others tie), and the highest bound decides."""
    diffs = [scores[k] - current[k] for k in scores]
    rest = [k for k in current if k not in scores]
    can_win = [k for k in rest if current[k] < 1.0]
    ties = [0.0] * (len(rest) - len(can_win))
    best = max(
        noninferiority_bound(
            diffs
            + ties
            + [1.0 - current[k] for k in can_win[:wins]]
            + [0.0] * (len(can_win) - wins),
            alpha=alpha,
        )
        for wins in range(len(can_win) + 1)
    )
    if best <= -margin:
        return (
            f"after {len(scores)} of {len(current)} examples no outcome of the remaining ones "
            f"lifts the accuracy difference's lower bound above -{margin} (at best {best:+.3f})"
        )
    return None
