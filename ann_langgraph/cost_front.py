"""The accuracy/cost front of a training run: every fully validated candidate is a point
(validation accuracy, tokens per example); the front is the points no other point beats on both.

``best.yaml`` is the most accurate version; ``cheapest.yaml`` the cheapest committed version
whose validation accuracy is within ``margin`` of the best. The report draws the points, the
front as a step line, and, where given, baselines measured on the same rows (io, CoT, CoT-SC
points from ``evals.compare``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = ["CostPoint", "cheapest_version", "cost_points", "front_lines", "pareto", "plot_front"]


class CostPoint(BaseModel):
    """One evaluated spec: its validation accuracy and what an example costs."""

    label: str
    accuracy: float
    tokens: float
    version: int | None = None  # a committed version's number
    kind: str = "candidate"  # version | candidate | baseline


def cost_points(
    versions: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]]
) -> list[CostPoint]:
    """Committed versions and every candidate validated in full, where their cost is known."""
    points = [
        CostPoint(
            label=f"v{v['version']}",
            accuracy=float(v["val_score"]),
            tokens=float(v["tokens_per_example"]),
            version=int(v["version"]),
            kind="version",
        )
        for v in versions
        if v.get("tokens_per_example") is not None
    ]
    for row in history:
        for index, cand in enumerate(row.get("candidates") or []):
            cost = cand.get("cost") or {}
            if cand.get("early_stop") or cand.get("val_score") is None or not cost:
                continue
            if cand.get("accepted"):  # already a version
                continue
            points.append(
                CostPoint(
                    label=f"step {row.get('global_step', 0) + 1}.{index + 1} "
                    f"({cand.get('source', 'repairer')})",
                    accuracy=float(cand["val_score"]),
                    tokens=float(cost["tokens_per_example"]),
                )
            )
    return points


def pareto(points: Sequence[CostPoint]) -> list[CostPoint]:
    """The points no other point matches or beats on both accuracy and tokens (and beats on
    one), cheapest first."""
    front = [
        p
        for p in points
        if not any(
            (q.accuracy >= p.accuracy and q.tokens <= p.tokens)
            and (q.accuracy > p.accuracy or q.tokens < p.tokens)
            for q in points
        )
    ]
    unique: dict[tuple[float, float], CostPoint] = {}
    for p in sorted(front, key=lambda p: (p.tokens, -p.accuracy, p.kind != "version")):
        unique.setdefault((p.accuracy, p.tokens), p)
    return list(unique.values())


def cheapest_version(versions: Sequence[dict[str, Any]], *, margin: float) -> dict[str, Any] | None:
    """The committed version with the fewest tokens per example among those within ``margin``
    of the most accurate one (ties: the more accurate, then the later)."""
    known = [v for v in versions if v.get("tokens_per_example") is not None]
    if not known:
        return None
    top = max(float(v["val_score"]) for v in known)
    near = [v for v in known if float(v["val_score"]) >= top - margin - 1e-12]
    return min(near, key=lambda v: (v["tokens_per_example"], -float(v["val_score"]), -v["version"]))


def front_lines(points: Sequence[CostPoint], *, margin: float) -> list[str]:
    """The report's section: the front as a table."""
    front = pareto(points)
    if not front:
        return []
    lines = [
        "## Accuracy and cost",
        "",
        f"{len(points)} evaluated specs; the front (no other spec is both as accurate and as "
        f"cheap) holds {len(front)}. `cheapest.yaml`: the cheapest version within {margin} of "
        "the best validation accuracy. ![accuracy and cost](cost_front.png)",
        "",
        "| spec | validation accuracy | tokens per example |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {p.label} | {p.accuracy:.3f} | {p.tokens:,.0f} |" for p in front]
    return [*lines, ""]


def plot_front(
    points: Sequence[CostPoint],
    path: Path,
    *,
    baselines: Sequence[CostPoint] = (),
    ylabel: str = "validation accuracy",
    title: str = "Accuracy and cost",
) -> Path | None:
    """Accuracy against tokens per example (log scale): versions, other candidates, the front
    as a step line, and baselines; the legend sits below the axes, so it covers no point."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=100)
    others = [p for p in points if p.kind == "candidate"]
    versions = [p for p in points if p.kind == "version"]
    if others:
        ax.plot(
            [p.tokens for p in others],
            [p.accuracy for p in others],
            "o",
            alpha=0.45,
            color="tab:gray",
            label="candidate (not committed)",
        )
    if versions:
        ax.plot(
            [p.tokens for p in versions],
            [p.accuracy for p in versions],
            "*",
            markersize=12,
            color="tab:green",
            label="committed version" if others or baselines else "method",
        )
        for p in versions:
            ax.annotate(p.label, (p.tokens, p.accuracy), textcoords="offset points", xytext=(5, 4))
    front = pareto([*points, *baselines])
    ax.step(
        [p.tokens for p in front],
        [p.accuracy for p in front],
        where="post",
        color="tab:blue",
        label="front",
    )
    for p in baselines:
        ax.plot(p.tokens, p.accuracy, "s", markersize=8, label=f"baseline: {p.label}")
    ax.set_xscale("log")
    ax.set_xlabel("tokens per example (input + output)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
