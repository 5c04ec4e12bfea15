"""Structural spec diff and the `ann patch` / `ann diff` commands."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import ann_langgraph as ann
from ann_langgraph.cli import app
from ann_langgraph.diff import diff_specs, format_diff

runner = CliRunner()


def test_diff_names_each_structural_change():
    old = ann.load_spec("graphs/math.yaml")
    new = ann.apply_patch(
        old,
        {
            "ops": [
                {
                    "op": "set_prompt",
                    "layer": "solve",
                    "agent": "solver_b",
                    "prompt": "New prompt.",
                },
                {"op": "remove_agent", "layer": "solve", "agent": "solver_c"},
                {
                    "op": "add_agent",
                    "layer": "understand",
                    "agent": {"id": "x", "role": "R", "prompt": "P"},
                },
                {"op": "set_aggregator", "layer": "solve", "aggregator": "debate"},
                {
                    "op": "add_layer",
                    "after": "solve",
                    "layer": {
                        "name": "check",
                        "agents": [{"id": "c", "role": "Checker", "prompt": "Check."}],
                    },
                },
            ]
        },
    )
    changes = {(c.kind, c.path) for c in diff_specs(old, new)}
    assert changes == {
        ("changed", "solve.solver_b.prompt"),
        ("removed", "solve.solver_c"),
        ("added", "understand.x"),
        ("changed", "solve.aggregator"),
        ("added", "check"),
    }
    assert diff_specs(old, old) == [] and format_diff([]) == "no changes"
    text = format_diff(diff_specs(old, new))
    assert "'parallel_vote' -> 'debate'" in text and "+New prompt." in text


def test_diff_shows_demonstrations_by_source():
    """The report's diff of an accepted set_demos patch said "no changes" (GSM8K, v0 -> v1)."""
    old = ann.load_spec("graphs/math.yaml")
    demos = [
        {"input": "1+1?", "output": "2", "source": "train:t3"},
        {"input": "2+2?", "output": "4"},
    ]
    new = ann.apply_patch(
        old,
        {"ops": [{"op": "set_demos", "layer": "solve", "agent": "solver_a", "demos": demos}]},
    )
    (change,) = diff_specs(old, new)
    assert change.path == "solve.solver_a.demos" and change.before == []
    assert change.after == ["train:t3", "demo 2 (4 chars)"]
    assert "~ solve.solver_a.demos: [] -> ['train:t3', 'demo 2 (4 chars)']" in format_diff([change])


def test_cli_patch_and_diff(tmp_path):
    patch = tmp_path / "p.json"
    patch.write_text(
        json.dumps(
            {
                "rationale": "r",
                "ops": [
                    {
                        "op": "set_role",
                        "layer": "solve",
                        "agent": "solver_a",
                        "role": "a meticulous solver",
                    }
                ],
            }
        )
    )
    out = tmp_path / "new.yaml"
    result = runner.invoke(app, ["patch", "graphs/math.yaml", str(patch), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert ann.load_spec(out).layer("solve").agents[0].role == "a meticulous solver"
    result = runner.invoke(app, ["diff", "graphs/math.yaml", str(out), "--json"])
    assert json.loads(result.output) == [
        {
            "kind": "changed",
            "path": "solve.solver_a.role",
            "before": "a careful solver",
            "after": "a meticulous solver",
        }
    ]

    patch.write_text(
        json.dumps({"ops": [{"op": "remove_agent", "layer": "understand", "agent": "reader"}]})
    )
    result = runner.invoke(app, ["patch", "graphs/math.yaml", str(patch)])
    assert (
        result.exit_code == 2
        and "op 0 (remove_agent)" in result.output
        and "last agent" in result.output
    )
