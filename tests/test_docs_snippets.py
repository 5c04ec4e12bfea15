"""The README's and docs' snippets use names that exist: CLI commands and options, make
targets, extras, scripts, importable modules and ``ann.`` / ``ann_langgraph.`` names.

Nothing here runs a snippet (most need a model or data); it checks every name a snippet uses,
which is what goes stale when code moves: a renamed option, a moved class, a dropped target.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

import ann_langgraph
from ann_langgraph.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.md")]
)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
EXTRAS = set(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
)
TARGETS = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
# python -m modules whose options are checked (typer apps); others must only import
TYPER_MODULES = {"evals.compare": "app", "evals.record": "app"}


def _blocks(kind: str) -> Iterator[tuple[str, str]]:
    for path in DOCS:
        for lang, body in FENCE.findall(path.read_text()):
            if lang == kind:
                yield path.relative_to(ROOT).as_posix(), body


def _commands(body: str) -> Iterator[list[str]]:
    """Each shell command line (continuations joined, comments dropped) as tokens."""
    for line in body.replace("\\\n", " ").splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote in prose-like lines: check what splits
            tokens = line.split("#", 1)[0].split()
        while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):
            tokens = tokens[1:]  # VAR=value prefixes
        for part in _split_on(tokens, {"&&", "||", ";", "|"}):
            if part:
                yield part


def _split_on(tokens: list[str], seps: set[str]) -> Iterator[list[str]]:
    part: list[str] = []
    for token in tokens:
        if token in seps:
            yield part
            part = []
        else:
            part.append(token)
    yield part


def _click(typer_app: typer.Typer) -> Any:
    """The click command typer builds (typer vendors its own click, so duck-typed here)."""
    return typer.main.get_command(typer_app)


def _check_options(command: Any, args: list[str], where: str) -> list[str]:
    """Walk subcommands, then check every --option against the command found."""
    problems = []
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            if rest[0] in ("...", "…"):
                return problems
            return [f"{where}: no command {rest[0]!r}"]
        command, rest = sub, rest[1:]
    known = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    for token in rest:
        if token.startswith("--") and len(token) > 2:
            name = token.split("=", 1)[0]
            if name not in known:
                problems.append(f"{where}: {command.name} has no option {name}")
    return problems


def _shell_problems(where: str, tokens: list[str]) -> list[str]:
    head = tokens[0]
    if head == "ann":
        return _check_options(_click(app), tokens[1:], where)
    if head == "make":
        return [
            f"{where}: no make target {t!r}"
            for t in tokens[1:]
            if not t.startswith("-") and "=" not in t and t not in TARGETS
        ]
    if head in ("python", "python3") and len(tokens) > 2 and tokens[1] == "-m":
        module = tokens[2]
        if module in ("pip", "pytest", "venv"):
            return []
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            return [f"{where}: python -m {module}: {exc}"]
        if module in TYPER_MODULES:
            return _check_options(_click(getattr(loaded, TYPER_MODULES[module])), tokens[3:], where)
        return []
    if (
        head in ("python", "python3", "bash")
        and len(tokens) > 1
        and tokens[1].endswith((".py", ".sh"))
    ):
        script = tokens[1]
        if not script.startswith(("/", "~")) and not (ROOT / script).exists():
            return [f"{where}: no script {script}"]
        return []
    if head == "pip" or tokens[:3] == ["python", "-m", "pip"]:
        problems = []
        for token in tokens:
            match = re.search(r"(?:^|ann-langgraph|\.)\[([\w,-]+)\]", token)
            if match and ("ann-langgraph" in token or token.startswith((".", "-e"))):
                problems += [
                    f"{where}: no extra {e!r}" for e in match.group(1).split(",") if e not in EXTRAS
                ]
        return problems
    return []


def test_every_shell_snippet_names_real_commands_options_targets_and_extras() -> None:
    problems: list[str] = []
    checked = 0
    for where, body in _blocks("bash"):
        for tokens in _commands(body):
            checked += 1
            problems += _shell_problems(where, tokens)
    assert checked > 40  # the snippets were found at all
    assert not problems, "\n".join(problems)


def _resolves(dotted: str) -> bool:
    """``a.b.C``: a module, or an attribute reached from the longest importable prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def _python_problems(where: str, body: str) -> list[str]:
    try:
        tree = ast.parse(body)
    except SyntaxError as exc:
        return [f"{where}: python block does not parse: {exc}"]
    problems = []
    aliases = {"ann": "ann_langgraph"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for item in node.names:
                if item.name.split(".")[0] in ("ann_langgraph", "evals") and not _resolves(
                    item.name
                ):
                    problems.append(f"{where}: import {item.name}")
                aliases[item.asname or item.name] = item.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in ("ann_langgraph", "evals"):
                for item in node.names:
                    if not _resolves(f"{node.module}.{item.name}"):
                        problems.append(f"{where}: from {node.module} import {item.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if (
                module
                and module.startswith("ann_langgraph")
                and not _resolves(f"{module}.{node.attr}")
            ):
                problems.append(f"{where}: {node.value.id}.{node.attr}")
    return problems


def test_every_python_snippet_imports_and_uses_real_names() -> None:
    problems: list[str] = []
    blocks = list(_blocks("python"))
    assert len(blocks) > 5
    for where, body in blocks:
        problems += _python_problems(where, body)
    assert not problems, "\n".join(problems)


INLINE = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"\b(ann_langgraph(?:\.[A-Za-z_]\w*)+)")
ANN_ATTR = re.compile(r"(?<![\w.])ann\.([A-Za-z_]\w*)")


def test_every_name_in_inline_code_exists() -> None:
    """``ann_langgraph.executors.RayExecutor`` or ``ann.train`` in prose resolves as written."""
    problems = []
    for path in DOCS:
        where = path.relative_to(ROOT).as_posix()
        for code in INLINE.findall(path.read_text()):
            for dotted in DOTTED.findall(code):
                if not _resolves(dotted):
                    problems.append(f"{where}: {dotted}")
            for attr in ANN_ATTR.findall(code):
                if not hasattr(ann_langgraph, attr):
                    problems.append(f"{where}: ann.{attr}")
    assert not problems, "\n".join(sorted(set(problems)))


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["ann", "train", "x.yaml", "--no-such-option"], "has no option --no-such-option"),
        (["ann", "nosuchcommand"], "no command 'nosuchcommand'"),
        (["make", "no-such-target"], "no make target"),
        (["pip", "install", "ann-langgraph[nosuchextra]"], "no extra 'nosuchextra'"),
        (["python", "-m", "evals.compare", "--no-such"], "has no option --no-such"),
        (["python", "benchmarks/no_such.py"], "no script"),
    ],
)
def test_the_checks_catch_stale_names(tokens: list[str], expected: str) -> None:
    assert any(expected in p for p in _shell_problems("here", tokens))
    assert _python_problems("here", "import ann_langgraph as ann\nann.no_such_name") == [
        "here: ann.no_such_name"
    ]
    assert not _resolves("ann_langgraph.executors.NoSuchExecutor")
