"""The training report: a Markdown summary, a learning-curve PNG and the diff of each commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .cost_front import cost_points, front_lines, plot_front
from .diff import diff_specs, format_diff
from .layer_usage import layer_usage, usage_lines
from .optimize.momentum import describe_ops
from .spec import GraphSpec

__all__ = [
    "learning_stats",
    "plot_learning_curve",
    "pool_summary",
    "structured_calls",
    "write_report",
]


def structured_calls(history: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, bool]]:
    """Every critic and repairer answer in a run's history: (row, who, parsed). A row's
    ``attempts`` counts its calls, retries included."""
    out: list[tuple[dict[str, Any], str, bool]] = []
    for h in history:
        step = h.get("global_step")
        grad = h.get("gradient") or {}
        rows = [(grad, f"step {step} critic")] if grad.get("attempts") else []
        rows += [
            (c, f"step {step} repair {c.get('layer')}")
            for c in h.get("candidates", [])
            if c.get("source", "repairer") == "repairer" and c.get("attempts")
        ]
        for row, who in rows:
            ok = bool(row.get("parsed", row.get("error") in (None, "the critic blamed no layer")))
            out.append((row, who, ok))
    return out


def learning_stats(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What a user needs to judge the optimizer itself: structured-output parse rate (critic
    and repairer calls, retries included) and what early rejection saved."""
    rows = structured_calls(history)
    calls = sum(int(row["attempts"]) for row, _, _ in rows)
    # a repairer row made more than one parsed call when it revised a rejected patch
    parsed = sum(int(row.get("parsed_calls", 1 if ok else 0)) for row, _, ok in rows)
    stopped = [
        c["early_stop"] for h in history for c in h.get("candidates", []) if c.get("early_stop")
    ]
    screens = [c["screen"] for h in history for c in h.get("candidates", []) if c.get("screen")]
    dropped = [s for s in screens if not s.get("passed")]
    kept: dict[str, int] = {}
    for h in history:
        for c in h.get("candidates", []):
            if c.get("accepted"):
                source = str(c.get("source", "repairer")).split(":")[0]
                kept[source] = kept.get(source, 0) + 1
    return {
        "screened": len(screens),
        "screened_out": len(dropped),
        "screen_examples_saved": sum(int(s.get("examples_saved", 0)) for s in dropped),
        "screen_calls_saved_est": sum(int(s.get("calls_saved_est", 0)) for s in dropped),
        # committed changes by where they came from: the textual gradient (repairer,
        # reflection), bootstrapped demos, fixed operators, merges
        "kept_by_source": kept,
        "front_sizes": [len(h.get("front") or []) for h in history if not h.get("skipped")],
        "structured_calls": calls,
        "structured_parsed": parsed,
        "parse_rate": parsed / calls if calls else None,
        "early_stopped": len(stopped),
        "examples_saved": sum(s["examples_saved"] for s in stopped),
        "calls_saved_est": sum(s["calls_saved_est"] for s in stopped),
    }


def plot_learning_curve(
    history: list[dict[str, Any]],
    baseline: float,
    path: Path,
    *,
    test: dict[str, Any] | None = None,
) -> Path | None:
    """Best validation score and minibatch score per step, and the held-out score before and
    after when there is one (PNG, no display needed). Integer steps; the legend sits below the
    axes so it never covers the curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    steps = [0] + [h["global_step"] + 1 for h in history]
    best = [baseline] + [h["best_score"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=100)
    ax.step(steps, best, where="post", label="best validation score", color="tab:blue")
    mb = [(h["global_step"] + 1, h["minibatch"]) for h in history if h.get("minibatch") is not None]
    if mb:
        ax.plot(*zip(*mb, strict=True), "o", alpha=0.5, label="minibatch score", color="tab:orange")
    accepted = [
        (h["global_step"] + 1, h["best_score"])
        for h in history
        if (h.get("decision") or {}).get("accepted")
    ]
    if accepted:
        ax.plot(
            *zip(*accepted, strict=True),
            "*",
            markersize=12,
            label="accepted patch",
            color="tab:green",
        )
    if test and test.get("before") and test.get("after"):
        last = steps[-1]
        ax.plot(  # two points, no line: nothing was measured in between
            [0, last],
            [test["before"]["mean"], test["after"]["mean"]],
            "s",
            markersize=8,
            color="tab:purple",
            label=f"held-out test (n={test['after']['n']}), start and end",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("score")
    ax.set_ylim(-0.05, 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.3, max(steps) + 0.3)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.set_title("Learning curve")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _prompt_reuse_line(paid: dict[str, Any]) -> list[str]:
    """How many prompt tokens the model server really processed, when it reports reuse."""
    sent = int(paid.get("input_tokens", 0))
    reused = int(paid.get("reused_input_tokens", 0))
    if not sent or not reused:
        return []
    processed = sent - reused
    return [
        f"- Prompt tokens: {sent} sent, {processed} processed ({processed / sent:.0%}); "
        f"{reused} reused from the server's prompt cache"
    ]


def write_report(
    run_path: Path,
    state: dict[str, Any],
    *,
    wall_time_s: float,
    cache_stats: dict[str, Any] | None = None,
    paid: dict[str, Any] | None = None,
    test: dict[str, Any] | None = None,
    margin: float = 0.02,
) -> Path:
    history: list[dict[str, Any]] = state.get("history") or []
    versions: list[dict[str, Any]] = state.get("versions") or []
    usage: dict[str, Any] = state.get("usage") or {}
    baseline = versions[0]["val_score"] if versions else 0.0
    plot = plot_learning_curve(history, baseline, run_path / "learning_curve.png", test=test)
    stats = learning_stats(history)
    proposed = sum(len(h.get("candidates", [])) for h in history)
    valid = sum(1 for h in history for c in h.get("candidates", []) if c.get("valid"))
    accepted = sum(1 for h in history if (h.get("decision") or {}).get("accepted"))
    skipped = sum(1 for h in history if h.get("skipped"))
    paid = paid or usage
    tokens = int(paid.get("input_tokens", 0)) + int(paid.get("output_tokens", 0))
    redone = int(paid.get("calls", 0)) - int(usage.get("calls", 0))
    lines = [
        f"# Training report: {versions[0]['spec']['name'] if versions else 'spec'}",
        "",
        f"- Validation score: {baseline:.3f} (v0) -> {state.get('best_score', baseline):.3f} "
        f"(v{state.get('version', 0)})",
        f"- Steps: {len(history)} ({skipped} skipped: minibatch already at threshold); "
        f"stopped because: {state.get('stop_reason') or 'finished'}",
        f"- Patches: {proposed} proposed, {valid} format-valid, {accepted} accepted",
        f"- Model calls paid: {paid.get('calls', 0)}"
        + (
            f" ({redone} of them in steps a crash cut short, replayed free from the cache)"
            if redone > 0
            else ""
        )
        + f"; served from cache: {usage.get('cached_calls', 0)}; tokens paid: {tokens}; "
        f"cost: ${float(paid.get('cost_usd', 0)):.4f}",
        *_prompt_reuse_line(paid),
        f"- Wall time: {wall_time_s:.1f}s",
    ]
    if stats["parse_rate"] is not None:
        lines.append(
            f"- Optimizer structured output: {stats['structured_parsed']} of "
            f"{stats['structured_calls']} calls parsed ({100 * stats['parse_rate']:.0f}%)"
        )
    if stats["early_stopped"]:
        lines.append(
            f"- Early rejection: {stats['early_stopped']} candidates stopped early, "
            f"{stats['examples_saved']} validation examples (about {stats['calls_saved_est']} "
            "model calls) not run"
        )
    if stats["screened"]:
        lines.append(
            f"- Minibatch screening: {stats['screened']} candidates screened, "
            f"{stats['screened_out']} stopped; calls saved by minibatch screening: "
            f"{stats['screen_calls_saved_est']} ({stats['screen_examples_saved']} validation "
            "examples not run)"
        )
    kept = stats["kept_by_source"]
    lines.append(
        "- Committed changes by source: "
        + (", ".join(f"{k} {v}" for k, v in sorted(kept.items())) if kept else "none")
    )
    if cache_stats:
        lines.append(f"- Response cache (this process): {cache_stats}")
    if test:
        lines += ["", *_test_lines(test)]
    lines += [
        "",
        "## Versions (validation)",
        "",
        "| version | from step | mean | 95% CI | n | p (one-sided) |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for v in versions:
        ci = v.get("val_ci")
        p_value = "-" if v.get("p_value") is None else f"{v['p_value']:.3g}"
        lines.append(
            f"| v{v['version']} | {v.get('global_step', 0) + (1 if v['version'] else 0)} | "
            f"{v['val_score']:.3f} | {f'{ci[0]:.2f}-{ci[1]:.2f}' if ci else '-'} | "
            f"{v.get('val_n', '-')} | "
            f"{p_value} |"
        )
    if plot:
        lines += ["", f"![learning curve]({plot.name})"]
    lines += [
        "",
        "## Steps",
        "",
        "| step | epoch | minibatch | blamed | proposals | decision | best |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in history:
        blamed = ", ".join(b["layer"] for b in (h.get("gradient") or {}).get("blame", [])) or "-"
        decision = (
            "skipped"
            if h.get("skipped")
            else (
                "accepted"
                if (h.get("decision") or {}).get("accepted")
                else ("rejected" if h.get("decision") else "no valid patch")
            )
        )
        mb = h.get("minibatch")
        lines.append(
            f"| {h['global_step'] + 1} | {h['epoch'] + 1} | {'-' if mb is None else f'{mb:.2f}'} "
            f"| {blamed} | {len(h.get('candidates', []))} | {decision} | {h['best_score']:.3f} |"
        )
    lines += ["", "## Accepted patches", ""]
    by_version = {v["version"]: v for v in versions}
    for v in versions[1:]:
        parent = by_version.get(v["parent"])
        lines.append(f"### v{v['parent']} -> v{v['version']} (validation {v['val_score']:.3f})")
        lines.append("")
        lines.append(f"Rationale: {v.get('rationale') or '-'}")
        lines.append("")
        lines.append(f"Ops: {describe_ops(v.get('patch'))}")
        if parent:
            diff = format_diff(
                diff_specs(
                    GraphSpec.model_validate(parent["spec"]), GraphSpec.model_validate(v["spec"])
                )
            )
            lines += ["", "```diff", diff, "```", ""]
    if len(versions) <= 1:
        lines.append("None: no patch beat the starting spec on the validation set.")
    lines += ["", "## Rejected and invalid proposals", ""]
    for h in history:
        for c in h.get("candidates", []):
            if c.get("accepted"):
                continue
            status = (
                f"rejected (validation {c['val_score']:.3f})"
                if c.get("valid") and "val_score" in c
                else f"invalid: {str(c.get('reason'))[:200]}"
            )
            lines.append(
                f"- step {h['global_step'] + 1}, layer {c['layer']}: {status}; "
                f"{describe_ops(c.get('patch'))[:300]}"
            )
    lines += _pool_lines(state.get("pool") or [], history)
    lines += _layer_lines(run_path, state)
    points = cost_points(versions, history)
    if plot_front(points, run_path / "cost_front.png") is not None:
        lines += ["", *front_lines(points, margin=margin)]
    path = run_path / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pool_summary(pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pool without its specs (a fingerprint names each), for results and reports."""
    out = []
    for member in pool:
        row = {k: v for k, v in member.items() if k != "spec"}
        row["fingerprint"] = GraphSpec.model_validate(member["spec"]).fingerprint
        out.append(row)
    return out


def _pool_lines(pool: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[str]:
    """The candidate pool, its Pareto front and lineage, and the parent each step drew."""
    if not pool:
        return []
    from .optimize.pool import front_members

    front = set(front_members(pool))
    lines = [
        "",
        "## Candidate pool (Pareto front over validation examples)",
        "",
        "| id | parent | from step | source | validation | on front | version |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in pool:
        parent = "-" if m.get("parent") is None else str(m["parent"])
        version = "-" if m.get("version") is None else f"v{m['version']}"
        lines.append(
            f"| {m['id']} | {parent} | {m.get('global_step', 0)} | {m.get('source', '-')} | "
            f"{m['val_score']:.3f} | {'yes' if m['id'] in front else 'no'} | {version} |"
        )
    parents = [str(h.get("parent")) for h in history if not h.get("skipped")]
    if parents:
        lines += ["", f"Parents drawn per step: {', '.join(parents)}"]
    return lines


def _layer_lines(run_path: Path, state: dict[str, Any]) -> list[str]:
    """Tokens and answers per layer on a minibatch, for the starting spec (step 1's records)
    and for the best version where a later step ran on it: the evidence behind a shrink."""
    versions = {v["version"]: v for v in state.get("versions") or []}
    members = {m["id"]: m for m in state.get("pool") or []}
    wanted = {0: "the starting spec (v0)", state.get("version", 0): "the best version"}
    steps: dict[int, tuple[int, Path]] = {}  # version -> the step (and file) that shows it
    current = 0  # the version a step without a pool parent ran on
    for row in state.get("history") or []:
        member = members.get(row.get("parent")) or {}
        ran_on = int(member["version"]) if member.get("version") is not None else current
        current = int(row.get("version", current))
        if row.get("skipped") or ran_on not in wanted or ran_on not in versions:
            continue
        path = run_path / "records" / f"step-{int(row['global_step']):04d}.jsonl"
        if path.is_file() and not (ran_on == 0 and 0 in steps):
            # v0: the first step that ran on it; the best version: the last
            steps[ran_on] = (int(row["global_step"]), path)
    found = {version: (step, _records(path)) for version, (step, path) in steps.items()}
    if not found:
        return []
    lines = [
        "",
        "## Where the tokens go (per layer, on a step's minibatch)",
        "",
        "A layer that costs much while the answer is the one it was given, or whose output "
        "holds no answer the final one keeps, is what the shrinks try to remove "
        "(`--objective cost`); validation decides.",
    ]
    for version, (step, records) in sorted(found.items()):
        spec = GraphSpec.model_validate(versions[version]["spec"])
        title = f"{wanted[version]}, v{version} (step {step + 1}, {len(records)} records)"
        lines += ["", *usage_lines(layer_usage(spec, records), title=title)]
    return lines


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]


def _test_lines(test: dict[str, Any]) -> list[str]:
    """The held-out split: only ever scored, never used to decide anything."""
    before, after = test["before"], test["after"]
    out = [
        f"## Held-out test ({test.get('name', 'test')}, n={after['n']}; never used in training)",
        "",
        "| spec | mean | 95% CI |",
        "| --- | --- | --- |",
        f"| start (v0) | {before['mean']:.3f} | {before['ci'][0]:.2f}-{before['ci'][1]:.2f} |",
        f"| best (v{test.get('version', '?')}) | {after['mean']:.3f} | "
        f"{after['ci'][0]:.2f}-{after['ci'][1]:.2f} |",
        "",
        f"Paired exact sign test, best vs start ({test.get('alternative', 'greater')}): "
        f"{test['wins']} better, {test['losses']} worse, {test['ties']} the same; "
        f"p = {test['p_value']:.3g}.",
    ]
    return out
