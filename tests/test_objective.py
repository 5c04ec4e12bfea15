"""``objective="cost"``: a candidate as accurate as the current version (a non-inferiority test
with a margin) and at least ``min_saving`` cheaper per validation example is committed."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

import ann_langgraph as ann
from ann_langgraph.cache import SQLiteCache
from ann_langgraph.optimize.objective import (
    cost_cannot_pass,
    cost_verdict,
    example_tokens,
    noninferiority_bound,
)
from ann_langgraph.testing import ScriptedChatModel

from .conftest import REPAIRER_PATH, agent, make_spec

IDS = [f"v{i}" for i in range(10)]


def _verdict(scores: list[float], current: list[float], tokens: int, before: int) -> Any:
    return cost_verdict(
        dict(zip(IDS, scores, strict=True)),
        dict(zip(IDS, current, strict=True)),
        dict.fromkeys(IDS, tokens),
        dict.fromkeys(IDS, before),
        margin=0.02,
        min_saving=0.10,
        alpha=0.1,
    )


def test_cheaper_and_as_accurate_is_accepted() -> None:
    same = [1.0] * 7 + [0.0] * 3
    verdict = _verdict(same, same, tokens=50, before=100)
    assert verdict.accept and verdict.saving == pytest.approx(0.5)
    assert verdict.lower_bound == 0.0 and "50% saved" in verdict.reason


def test_cheaper_but_worse_is_rejected() -> None:
    current = [1.0] * 7 + [0.0] * 3
    worse = [0.0, *current[1:]]  # one example lost
    verdict = _verdict(worse, current, tokens=10, before=100)
    assert not verdict.accept and "not non-inferior" in verdict.reason
    assert verdict.lower_bound < -0.02


def test_as_accurate_but_not_cheaper_enough_is_rejected() -> None:
    same = [1.0] * 10
    verdict = _verdict(same, same, tokens=95, before=100)  # 5% saved, 10% needed
    assert not verdict.accept and "not cheaper enough" in verdict.reason
    assert _verdict(same, same, tokens=90, before=100).accept  # exactly 10%: enough


def test_the_bound_is_the_mean_minus_its_normal_quantile_spread() -> None:
    assert noninferiority_bound([0.0] * 5, alpha=0.1) == 0.0
    diffs = [1.0, -1.0, 0.0, 0.0]
    # mean 0, sd sqrt(2/3), n 4: 0 - 1.2816 * 0.4082
    assert noninferiority_bound(diffs, alpha=0.1) == pytest.approx(-0.5231, abs=1e-4)
    assert noninferiority_bound([], alpha=0.1) == float("-inf")


def test_early_stop_for_cost_never_stops_a_candidate_that_could_still_pass() -> None:
    """Exhaustively on 6 examples: whenever some outcome of the rest passes, no stop."""
    current = dict(zip(IDS[:6], [1.0, 1.0, 0.0, 1.0, 0.0, 1.0], strict=True))
    for seen in range(1, 6):
        for scored in itertools.product([0.0, 1.0], repeat=seen):
            scores = dict(zip(IDS[:seen], scored, strict=True))
            stop = cost_cannot_pass(scores, current, margin=0.02, alpha=0.1)
            rest = IDS[seen:6]
            possible = any(
                noninferiority_bound(
                    [scores.get(k, dict(zip(rest, tail, strict=True)).get(k, 0.0)) - v
                     for k, v in current.items()],
                    alpha=0.1,
                )
                > -0.02
                for tail in itertools.product([0.0, 1.0], repeat=len(rest))
            )  # fmt: skip
            assert (stop is None) == possible, (scores, stop)


def test_cached_calls_count_as_paid_tokens(tmp_path: Path) -> None:
    spec = make_spec([{"name": "solve", "agents": [agent("solver", "a solver", "Answer.")]}])
    rows = [{"id": "a", "input": "What is 1?", "target": "1"}]
    model = ScriptedChatModel(default="Answer: 1 because one is one")
    cache = SQLiteCache(tmp_path / "cache.sqlite")
    first = ann.evaluate(spec, rows, "numeric_match", models=model, cache=cache, progress=False)
    again = ann.evaluate(spec, rows, "numeric_match", models=model, cache=cache, progress=False)
    assert again.cached_calls == 1 and len(model.calls) == 1  # served by the cache
    assert example_tokens(again.results) == example_tokens(first.results)
    assert example_tokens(again.results)["a"] > 0


# -- end to end: a scripted run under each objective ------------------------------------------


def _executor() -> ScriptedChatModel:
    """Right whatever the prompt; a prompt saying VERBOSE writes 60 more words."""

    def respond(messages: list[Any], **kw: Any) -> str:
        system, question = messages[0].content, messages[-1].content
        n = int(re.search(r"What is (\d+)", question).group(1))
        padding = " because" * 60 if "VERBOSE" in system else ""
        return f"Answer: {n + 1}{padding}"

    return ScriptedChatModel(respond=respond, model_name="executor")


def _data(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "input": f"What is {i} plus one?", "target": str(i + 1)}
            for i in range(n)]  # fmt: skip


def _train(tmp_path: Path, objective: str, *, threshold: float = 1.01) -> ann.TrainResult:
    spec = make_spec(
        [{"name": "solve", "agents": [agent("solver", "a solver", "Add one. VERBOSE.")]}],
        answer_format="last_number",
    )
    patch = {
        "rationale": "shorter",
        "ops": [{"op": "set_prompt", "layer": "solve", "agent": "solver", "prompt": "Add one."}],
    }
    critic = {"summary": "Answers are long.", "blame": [{"layer": "solve", "reason": "wordy"}]}
    opt = ScriptedChatModel(
        rules=[(r"global critic", critic), (r"repair one layer", patch)], model_name="optimizer"
    )
    cfg = ann.OptimizerConfig(
        objective=objective,  # type: ignore[arg-type]
        threshold=threshold,
        bootstrap_demos=False,
        early_rejection=False,
        **REPAIRER_PATH,
    )
    return ann.train(
        spec,
        train=_data(4, "t"),
        val=_data(12, "v"),
        metric="numeric_match",
        models=_executor(),
        optimizer_model=opt,
        epochs=1,
        batch_size=4,
        run_dir=tmp_path / objective,
        progress=False,
        config=cfg,
    )


def test_under_cost_the_shorter_prompt_is_committed_for_its_cost(tmp_path: Path) -> None:
    result = _train(tmp_path, "cost")
    assert len(result.versions) == 2 and result.versions[1]["committed_for"] == "cost"
    decision = result.history[0]["decision"]
    assert decision["accepted"] and decision["objective"] == "cost"
    assert decision["cost"]["saving"] > 0.5 and decision["cost"]["lower_bound"] == 0.0
    rows = [
        json.loads(line) for line in (result.run_dir / "versions.jsonl").read_text().splitlines()
    ]
    assert rows[1]["tokens_per_example"] < rows[0]["tokens_per_example"] / 2
    assert rows[0]["calls_per_example"] == 1.0 and "wall_s_per_example" in rows[0]
    assert result.best_spec.layers[0].agents[0].prompt == "Add one."


def test_under_accuracy_the_same_candidate_is_rolled_back(tmp_path: Path) -> None:
    result = _train(tmp_path, "accuracy")
    assert len(result.versions) == 1
    decision = result.history[0]["decision"]
    assert not decision["accepted"] and "cost" not in decision
    assert result.best_spec.layers[0].agents[0].prompt == "Add one. VERBOSE."


def test_the_cli_takes_the_objective_and_refuses_an_unknown_one() -> None:
    from typer.testing import CliRunner

    from ann_langgraph.cli import app

    args = ["train", "graphs/sentiment.yaml", "--train", "data/sentiment/train.jsonl"]
    args += ["--val", "data/sentiment/val.jsonl", "--metric", "label_match", "--dry-run"]
    assert CliRunner().invoke(app, [*args, "--objective", "cost", "--json"]).exit_code == 0
    bad = CliRunner().invoke(app, [*args, "--objective", "speed"])
    assert bad.exit_code == 2 and "--objective must be accuracy or cost" in bad.output


# -- the front, cheapest.yaml and the plot ----------------------------------------------------


def test_the_front_keeps_what_nothing_beats_on_both_axes() -> None:
    from ann_langgraph.cost_front import CostPoint, pareto

    pts = [
        CostPoint(label="a", accuracy=0.5, tokens=100),
        CostPoint(label="b", accuracy=0.7, tokens=300),
        CostPoint(label="c", accuracy=0.6, tokens=400),  # beaten by b on both
        CostPoint(label="d", accuracy=0.5, tokens=150),  # beaten by a (same accuracy, dearer)
        CostPoint(label="e", accuracy=0.9, tokens=1000),
    ]
    assert [p.label for p in pareto(pts)] == ["a", "b", "e"]


def test_cheapest_is_the_fewest_tokens_within_the_margin_of_the_best() -> None:
    from ann_langgraph.cost_front import cheapest_version

    versions = [
        {"version": 0, "val_score": 0.80, "tokens_per_example": 900.0},
        {"version": 1, "val_score": 0.90, "tokens_per_example": 1200.0},
        {"version": 2, "val_score": 0.89, "tokens_per_example": 400.0},
        {"version": 3, "val_score": 0.85, "tokens_per_example": 100.0},
    ]
    assert cheapest_version(versions, margin=0.02)["version"] == 2
    assert cheapest_version(versions, margin=0.0)["version"] == 1
    assert cheapest_version(versions, margin=0.1)["version"] == 3
    assert cheapest_version([{"version": 0, "val_score": 1.0}], margin=0.02) is None


def test_a_cost_run_writes_cheapest_yaml_and_the_front_plot(tmp_path: Path) -> None:
    from ann_langgraph.cost_front import cost_points, pareto

    result = _train(tmp_path, "cost")
    run = result.run_dir
    assert result.cheapest_version == 1
    assert ann.load_spec(run / "cheapest.yaml").fingerprint == result.best_spec.fingerprint
    png = run / "cost_front.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run / "report.md").read_text()
    assert "## Accuracy and cost" in report and "| v1 | 1.000 |" in report
    versions = [json.loads(line) for line in (run / "versions.jsonl").read_text().splitlines()]
    points = cost_points(versions, result.history)
    assert [p.label for p in pareto(points)] == ["v1"]  # as accurate and cheaper than v0
    # the growing operators (offered under cost) are points too, dearer than v1
    assert {p.label for p in points} == {
        "v0",
        "v1",
        "step 1.2 (operator:vote)",
        "step 1.3 (operator:checker)",
    }


def test_the_front_plot_draws_candidates_versions_the_front_and_baselines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ann_langgraph.cost_front import CostPoint, plot_front

    kept: list[Any] = []
    real = plt.subplots

    def subplots(*args: Any, **kwargs: Any) -> Any:
        fig, ax = real(*args, **kwargs)
        kept.append(ax)
        return fig, ax

    monkeypatch.setattr(plt, "subplots", subplots)
    points = [
        CostPoint(label="v0", accuracy=0.5, tokens=900, version=0, kind="version"),
        CostPoint(label="v1", accuracy=0.5, tokens=300, version=1, kind="version"),
        CostPoint(label="step 1.1", accuracy=0.4, tokens=200),
    ]
    cot = CostPoint(label="cot", accuracy=0.6, tokens=450, kind="baseline")
    path = plot_front(points, tmp_path / "front.png", baselines=[cot])
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    (ax,) = kept
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {
        "candidate (not committed)",
        "committed version",
        "front",
        "baseline: cot",
    }
    assert list(lines["committed version"].get_xdata()) == [900, 300]
    # the front over versions, candidates and baselines, cheapest first: 1.1, v1, cot
    assert list(lines["front"].get_xdata()) == [200, 300, 450]
    assert list(lines["front"].get_ydata()) == [0.4, 0.5, 0.6]
    assert ax.get_xscale() == "log" and "tokens per example" in ax.get_xlabel()
    assert ax.get_legend() is not None and ax.get_legend().get_bbox_to_anchor() is not None
