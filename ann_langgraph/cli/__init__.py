"""The ``ann`` command: run, show, validate, train, evaluate and export graph specs.

One Typer app (``_common.app``); each module registers one group of commands on it.
"""

from __future__ import annotations

from . import evaluate, graph, setup, train  # noqa: F401  (they register their commands)
from ._common import app

__all__ = ["app", "main"]

_ORDER = [
    "run", "show", "validate", "schema", "patch", "diff", "train", "eval", "init",
    "metrics", "models", "engine", "export",
]  # fmt: skip


def _rank(command: object) -> int:
    name = getattr(command, "name", None) or getattr(
        getattr(command, "callback", None), "__name__", ""
    )
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)


# `ann --help` lists the commands in this order, whatever order the modules were imported in
app.registered_commands.sort(key=_rank)


def main() -> None:  # pragma: no cover
    app()
