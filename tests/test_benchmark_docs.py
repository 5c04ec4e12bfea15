"""docs/benchmarks.md and the README: every benchmark command they show parses (its options
exist, its benchmark is registered, its spec file is shipped), so the docs cannot drift from
the CLI. Parsing only: nothing runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from ann_langgraph.cli import app as ann_app
from evals import base as evals_base
from evals.compare import app as compare_app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "benchmarks.md", ROOT / "README.md"]


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        lines = [line.strip() for block in blocks for line in block.splitlines()]
        inline = re.findall(r"`((?:python -m evals\.compare|ann eval) [^`]+)`", text)
        lines += [" ".join(line.split()) for line in inline]
        for line in lines:
            line = line.split("  #")[0].strip()
            if line.startswith(("python -m evals.compare ", "ann eval ")):
                found.append((doc.name, line))
    return found


COMMANDS = _commands()


def test_the_docs_show_compare_and_eval_commands():
    kinds = {line.split()[0] for _, line in COMMANDS}
    assert kinds == {"python", "ann"} and len(COMMANDS) >= 8


@pytest.mark.parametrize(("doc", "command"), COMMANDS)
def test_a_documented_command_parses(doc, command):
    for placeholder in ('"$b"', "$b", "<b>"):  # the docs' loop variable / placeholder
        command = command.replace(placeholder, "gsm8k")
    words = shlex.split(command)
    if words[0] == "python":
        cli, args = typer.main.get_command(compare_app), words[3:]
    else:
        group = typer.main.get_command(ann_app)
        assert isinstance(group, typer.core.TyperGroup)
        cli, args = group.commands[words[1]], words[2:]
    ctx = cli.make_context("cmd", list(args))  # raises on an unknown option or a bad value
    bench = ctx.params.get("benchmark")
    if bench:
        assert bench in evals_base.benchmark_names(), f"{doc}: unknown benchmark {bench!r}"
    spec = ctx.params.get("spec")
    if spec:
        assert (ROOT / str(spec)).exists(), f"{doc}: {spec} is not shipped"
