"""Where an evaluation's examples run: this process (default) or a Ray cluster.

``evaluate``, ``train``, the optimizer graph and ``evals.compare`` take ``executor=``: an
:class:`Executor` or a string, resolved by :func:`resolve_executor`:

- ``None`` / ``"local"``: :class:`LocalExecutor`, asyncio in this process (the default);
- ``"ray"``: :class:`~ann_langgraph.executors.ray.RayExecutor` on the cluster ``RAY_ADDRESS``
  names, else a local Ray started on demand; ``"ray://HOST:PORT"`` (Ray Client) or
  ``"ray:HOST:PORT"`` / ``"ray:auto"`` (a node of the cluster) name one. Needs the ``ray``
  extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import EvalJob, ExampleOutcome, ExampleResult, Executor, OnResult, run_example
from .local import LocalExecutor

if TYPE_CHECKING:
    from .ray import RayExecutor

__all__ = [
    "EvalJob",
    "ExampleOutcome",
    "ExampleResult",
    "Executor",
    "LocalExecutor",
    "OnResult",
    "RayExecutor",
    "parse_executor",
    "resolve_executor",
    "run_example",
]


def __getattr__(name: str) -> Any:
    """``RayExecutor`` imports on first use, so ``ray`` stays an optional extra (without it,
    starting the executor says which extra to install)."""
    if name == "RayExecutor":
        from .ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_executor(text: str) -> tuple[str, str | None]:
    """``(kind, address)`` of an executor string; ``ValueError`` naming the forms otherwise."""
    value = text.strip()
    if value in ("", "local"):
        return "local", None
    if value == "ray":
        return "ray", None
    if value.startswith("ray://"):
        if len(value) == len("ray://"):
            raise ValueError("executor 'ray://' needs HOST:PORT (e.g. ray://head:10001)")
        return "ray", value
    if value.startswith("ray:"):
        address = value[len("ray:") :]
        if not address:
            raise ValueError("executor 'ray:' needs an address (ray:auto or ray:HOST:PORT)")
        return "ray", address
    raise ValueError(
        f"unknown executor {text!r}: use 'local', 'ray', 'ray://HOST:PORT' (Ray Client) or "
        "'ray:HOST:PORT' / 'ray:auto' (from a node of the cluster)"
    )


def resolve_executor(executor: Executor | str | None, **ray_options: Any) -> Executor:
    """The executor an ``executor=`` argument names (a new one for a string); ``ray_options``
    go to ``RayExecutor`` (``ValueError`` if the string names the local executor)."""
    if isinstance(executor, Executor):
        return executor
    if executor is None:
        executor = "local"
    if not isinstance(executor, str):
        raise TypeError(f"executor must be an Executor or a string, got {type(executor).__name__}")
    kind, address = parse_executor(executor)
    if kind == "local":
        if ray_options:
            raise ValueError(f"{', '.join(sorted(ray_options))} applies to the ray executor only")
        return LocalExecutor()
    from .ray import RayExecutor

    return RayExecutor(address=address, **ray_options)
