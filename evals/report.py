"""Result files and tables for ``ann eval`` and ``evals.compare``.

One evaluation (a spec or a baseline on some examples) becomes a :class:`RunSummary` (mean,
95% CI, n, tokens, calls, cost, wall time, per-example averages, extra metrics, breakdowns)
plus one JSON row per example. These functions turn them into JSONL/JSON/Markdown files and
rich tables; nothing here calls a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ann_langgraph.evaluate import EvalReport, ExampleResult, confidence_interval
from ann_langgraph.metrics import Metric, as_score
from ann_langgraph.stats import holm, paired_sign_test

__all__ = [
    "BreakdownCell",
    "RunSummary",
    "breakdown_markdown",
    "compare_markdown",
    "compare_table",
    "eval_markdown",
    "read_jsonl",
    "result_row",
    "summarize",
    "write_jsonl",
]


class BreakdownCell(BaseModel):
    """Accuracy on the examples sharing one value of a breakdown key (e.g. level 3)."""

    n: int
    mean: float
    ci_low: float
    ci_high: float


class RunSummary(BaseModel):
    """One evaluated method or spec: what ``ann eval`` prints and ``evals.compare`` tabulates."""

    method: str = ""
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    metric: str = ""
    mean: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 1.0
    n: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    cost_usd: float = 0.0
    wall_time_s: float = 0.0
    tokens_per_example: float = 0.0
    calls_per_example: float = 0.0
    cost_per_example: float = 0.0
    extra_metrics: dict[str, float] = Field(default_factory=dict)
    breakdown: dict[str, dict[str, BreakdownCell]] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _score(metric: Metric, example: Mapping[str, Any], output: str) -> float:
    try:
        return float(as_score(metric(dict(example), output)).value)
    except Exception:  # an extra metric failing on one example scores it 0, like evaluate()
        return 0.0


def _cells(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, BreakdownCell]:
    groups: dict[str, list[float]] = {}
    for row in rows:
        value = row.get("breakdown", {}).get(key)
        groups.setdefault("(none)" if value is None else str(value), []).append(row["score"])
    out: dict[str, BreakdownCell] = {}
    for value in sorted(groups, key=_natural):
        scores = groups[value]
        low, high = confidence_interval(scores)
        out[value] = BreakdownCell(
            n=len(scores), mean=sum(scores) / len(scores), ci_low=low, ci_high=high
        )
    return out


def _natural(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def result_row(
    result: ExampleResult,
    example: Mapping[str, Any],
    *,
    method: str = "",
    extras: Mapping[str, Metric] | None = None,
    breakdown: Sequence[str] = (),
) -> dict[str, Any]:
    """One example's row of ``results.jsonl``: the result, its extra metrics and breakdown."""
    row = result.model_dump(mode="json")
    if method:
        row["method"] = method
    row["extra"] = {
        name: (0.0 if result.error is not None else _score(fn, example, result.output))
        for name, fn in (extras or {}).items()
    }
    row["breakdown"] = {key: example.get(key) for key in breakdown}
    return row


def summarize(
    report: EvalReport,
    examples: Sequence[Mapping[str, Any]],
    *,
    method: str = "",
    extra_metrics: Mapping[str, Metric] | None = None,
    breakdown: Sequence[str] = (),
    details: Mapping[str, Any] | None = None,
    known_extra: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[RunSummary, list[dict[str, Any]]]:
    """The summary and per-example rows of ``report`` (run on ``examples``, same ids).

    Extra metrics score each example's output (0 for an example that errored), except those
    ``known_extra`` gives by example id (rows carried from an earlier sitting, whose recorded
    output is cut: ``evals.carry``); breakdown keys are read from the examples.
    """
    by_id = {str(ex["id"]): ex for ex in examples}
    extras = dict(extra_metrics or {})
    known = known_extra or {}
    rows: list[dict[str, Any]] = []
    for result in report.results:
        row = result_row(
            result, by_id.get(result.id, {}), method=method, extras=extras, breakdown=breakdown
        )
        if result.id in known:  # scored in an earlier sitting, from its whole output
            row["extra"] = {name: float(known[result.id].get(name, 0.0)) for name in extras}
        rows.append(row)
    n = report.n
    summary = RunSummary(
        method=method,
        metric=report.metric,
        mean=report.mean,
        ci_low=report.ci_low,
        ci_high=report.ci_high,
        n=n,
        errors=report.errors,
        input_tokens=report.input_tokens,
        output_tokens=report.output_tokens,
        calls=report.calls,
        cached_calls=report.cached_calls,
        cost_usd=report.cost_usd,
        wall_time_s=report.wall_time_s,
        tokens_per_example=(report.input_tokens + report.output_tokens) / n if n else 0.0,
        calls_per_example=report.calls / n if n else 0.0,
        cost_per_example=report.cost_usd / n if n else 0.0,
        extra_metrics={
            name: (sum(r["extra"][name] for r in rows) / len(rows) if rows else 0.0)
            for name in extras
        },
        breakdown={key: _cells(rows, key) for key in breakdown},
        details=dict(details or {}),
    )
    return summary, rows


# -- files ---------------------------------------------------------------------------------


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows as JSON lines (atomically: a temp file renamed over ``path``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    tmp.replace(p)
    return p


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def write_text(path: str | Path, text: str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)
    return p


# -- markdown ------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _ci(s: RunSummary | BreakdownCell) -> str:
    return f"{_pct(s.ci_low)}-{_pct(s.ci_high)}"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def breakdown_markdown(summary: RunSummary) -> str:
    parts = []
    for key, cells in summary.breakdown.items():
        parts.append(f"### By {key}\n")
        parts.append(
            _md_table(
                [key, "n", "accuracy", "95% CI"],
                [[v, str(c.n), _pct(c.mean), _ci(c)] for v, c in cells.items()],
            )
        )
        parts.append("")
    return "\n".join(parts)


def eval_markdown(summary: RunSummary, *, title: str, facts: Mapping[str, Any]) -> str:
    """The Markdown summary of one ``ann eval`` run."""
    lines = [f"# {title}", ""]
    lines += [
        f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}" for k, v in facts.items()
    ]
    lines.append("")
    lines.append(
        _md_table(
            [
                "metric",
                "mean",
                "95% CI",
                "n",
                "errors",
                "tokens",
                "calls (cached)",
                "cost",
                "wall time",
            ],
            [
                [
                    summary.metric or "score",
                    _pct(summary.mean),
                    _ci(summary),
                    str(summary.n),
                    str(summary.errors),
                    str(summary.tokens),
                    f"{summary.calls} ({summary.cached_calls})",
                    f"${summary.cost_usd:.4f}",
                    f"{summary.wall_time_s:.1f}s",
                ]
            ],
        )
    )
    if summary.extra_metrics:
        lines += ["", "## Extra metrics", ""]
        lines.append(
            _md_table(["metric", "mean"], [[k, _pct(v)] for k, v in summary.extra_metrics.items()])
        )
    if summary.breakdown:
        lines += ["", "## Breakdown", "", breakdown_markdown(summary)]
    return "\n".join(lines).rstrip() + "\n"


def training_line(t: Mapping[str, Any]) -> str:
    """One line about a training/compile run (fields it lacks are left out)."""
    parts = []
    if t.get("best_score") is not None and t.get("baseline_score") is not None:
        steps = f", {t.get('steps', 0)} steps" if t.get("steps") is not None else ""
        parts.append(
            f"validation {float(t['baseline_score']):.3f} -> {float(t['best_score']):.3f}{steps}"
            + (f" ({t['stop_reason']})" if t.get("stop_reason") else "")
        )
    elif t.get("stop_reason"):
        parts.append(str(t["stop_reason"]))
    if t.get("rollouts") is not None:
        budget = f" (budget {t['rollout_budget']})" if t.get("rollout_budget") else ""
        parts.append(f"{int(t['rollouts'])} rollouts{budget}")
    parts.append(f"{int(t.get('tokens', 0))} tokens, {int(t.get('calls', 0))} calls")
    parts.append(f"${float(t.get('cost_usd') or 0):.4f}, {float(t.get('wall_time_s') or 0):.0f}s")
    if t.get("run_dir"):
        parts.append(f"run dir `{t['run_dir']}`")
    return ", ".join(parts)


COMPARE_COLUMNS = [
    "method",
    "accuracy",
    "95% CI",
    "n",
    "errors",
    "tokens/example",
    "cost/example",
    "calls",
    "wall time",
]


def _compare_cells(s: RunSummary, extra_names: Sequence[str]) -> list[str]:
    if s.status != "ok":
        error = (s.error or "failed").splitlines()[0][:120]
        return [s.method, "error", error, *([""] * (len(COMPARE_COLUMNS) - 3 + len(extra_names)))]
    return [
        s.method,
        _pct(s.mean),
        _ci(s),
        str(s.n),
        str(s.errors),
        f"{s.tokens_per_example:.0f}",
        f"${s.cost_per_example:.5f}",
        f"{s.calls} ({s.cached_calls} cached)" if s.cached_calls else str(s.calls),
        f"{s.wall_time_s:.1f}s",
        *(_pct(s.extra_metrics[n]) if n in s.extra_metrics else "" for n in extra_names),
    ]


def _extra_names(summaries: Sequence[RunSummary]) -> list[str]:
    names: list[str] = []
    for s in summaries:
        names += [n for n in s.extra_metrics if n not in names]
    return names


# Which rows to test against which: the trained spec against its starter, the strongest
# baselines and every peer optimizer; each ablation against the starter; the starter against
# chain-of-thought. Pairs whose rows are missing are skipped.
PAIRS = (
    ("ann-trained", "ann"),
    ("ann-trained", "cot-sc"),
    ("ann-trained", "dspy"),
    ("ann-trained", "dspy-bootstrap-rs"),
    ("ann-trained", "dspy-miprov2"),
    ("ann-trained", "dspy-gepa"),
    ("ann-textual", "ann"),
    ("ann-demos", "ann"),
    ("ann", "cot"),
)


def paired_tests(scores: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Two-sided exact sign tests on the examples both rows scored, with Holm's correction
    across the table's comparisons (``p_holm``); ``better``/``worse`` count the first row's
    wins and losses."""
    out = []
    for a, b in PAIRS:
        if a not in scores or b not in scores:
            continue
        common = sorted(set(scores[a]) & set(scores[b]))
        if not common:
            continue
        diffs = [scores[a][k] - scores[b][k] for k in common]
        out.append({"better": a, "than": b, "n": len(common), **paired_sign_test(diffs)})
    for test, adjusted in zip(out, holm([t["p_value"] for t in out]), strict=True):
        test["p_holm"] = adjusted
    return out


def compare_markdown(
    summaries: Sequence[RunSummary],
    *,
    title: str,
    facts: Mapping[str, Any],
    paired: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The Markdown comparison table (plus paired tests, training costs and breakdowns)."""
    extra = _extra_names(summaries)
    lines = [f"# {title}", ""]
    lines += [
        f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}" for k, v in facts.items()
    ]
    lines += [
        "",
        _md_table([*COMPARE_COLUMNS, *extra], [_compare_cells(s, extra) for s in summaries]),
    ]
    if paired:
        lines += [
            "",
            "Paired exact sign tests on the same examples (two-sided; Holm-adjusted across "
            f"the table's {len(paired)} comparisons):",
            "",
        ]
        for t in paired:
            p_holm = f"; Holm p = {t['p_holm']:.3g}" if "p_holm" in t else ""
            lines.append(
                f"- {t['better']} vs {t['than']}: {t['wins']} better, {t['losses']} worse, "
                f"{t['ties']} the same (n={t['n']}); p = {t['p_value']:.3g}{p_holm}"
            )
    trained = [s for s in summaries if s.status == "ok" and s.details.get("training")]
    if trained:
        lines += ["", "Training (one-time cost, not included in the per-example columns):", ""]
        for s in trained:
            lines.append(f"- {s.method}: {training_line(s.details['training'])}")
    with_breakdown = [s for s in summaries if s.status == "ok" and s.breakdown]
    if with_breakdown:
        lines += ["", "## Breakdowns", ""]
        keys: list[str] = []
        for s in with_breakdown:
            keys += [k for k in s.breakdown if k not in keys]
        for key in keys:
            values: list[str] = []
            for s in with_breakdown:
                values += [v for v in s.breakdown.get(key, {}) if v not in values]
            values.sort(key=_natural)
            lines += [f"### Accuracy by {key}", ""]
            header = [key, *(s.method for s in with_breakdown)]
            body = []
            for v in values:
                cells = [v]
                for s in with_breakdown:
                    c = s.breakdown.get(key, {}).get(v)
                    cells.append(f"{_pct(c.mean)} (n={c.n})" if c else "")
                body.append(cells)
            lines += [_md_table(header, body), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- rich ----------------------------------------------------------------------------------


def compare_table(summaries: Sequence[RunSummary], *, title: str = "") -> Any:
    """A rich ``Table`` of the comparison (same columns as the Markdown)."""
    from rich.table import Table

    extra = _extra_names(summaries)
    table = Table(title=title or None)
    for col in [*COMPARE_COLUMNS, *extra]:
        table.add_column(col, justify="left" if col == "method" else "right")
    for s in summaries:
        cells = _compare_cells(s, extra)
        if s.status != "ok":
            cells = [cells[0], "[red]error[/]", f"[red]{cells[2]}[/]", *cells[3:]]
        table.add_row(*cells)
    return table


def breakdown_tables(summary: RunSummary) -> list[Any]:
    """One rich ``Table`` per breakdown key of ``summary``."""
    from rich.table import Table

    tables = []
    for key, cells in summary.breakdown.items():
        table = Table(title=f"accuracy by {key}")
        for col in (key, "n", "accuracy", "95% CI"):
            table.add_column(col, justify="left" if col == key else "right")
        for value, c in cells.items():
            table.add_row(value, str(c.n), _pct(c.mean), _ci(c))
        tables.append(table)
    return tables
