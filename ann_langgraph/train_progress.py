"""What a person watches while ``train()`` runs: a rich bar over steps on a terminal; in a log,
a plain line per finished step and at most one a minute between (see ``progress``)."""

from __future__ import annotations

from typing import Any

from .progress import PlainLines, rich_bar, stderr_is_terminal

__all__ = ["TrainProgress"]


class TrainProgress:
    """The numbers a person watches during training: a rich bar over steps on a terminal; in a
    log a plain line per finished step and at most one a minute between (``progress``)."""

    def __init__(self, *, enabled: bool, epochs: int, steps: int) -> None:
        self.enabled = enabled
        self.total = epochs * steps
        self._progress: Any = None
        self._task: Any = None
        self._plain: PlainLines | None = None
        self._steps_seen = 0
        self._last = "starting"

    def __enter__(self) -> TrainProgress:
        if not self.enabled:
            return self
        if not stderr_is_terminal():
            self._plain = PlainLines()
            return self
        self._progress = rich_bar("[bold]train[/]", "{task.description}")
        self._progress.__enter__()
        self._task = self._progress.add_task(
            "starting: scoring the starting spec", total=self.total
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Progress inside a node: an evaluation that takes minutes says how far it got."""
        if kind != "evaluating" or (self._progress is None and self._plain is None):
            return
        text = f"{data['what']}: {data['done']}/{data['total']}, mean {data['mean']:.2f}"
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._last} | {text}")
        elif self._plain is not None:
            self._plain.print(
                f"train {self._steps_seen}/{self.total} steps | {text} | ",
                milestone=data["done"] == data["total"],
            )

    def update(self, node: str, state: dict[str, Any]) -> None:
        if self._progress is None and self._plain is None:
            return
        history = state.get("history") or []
        accepted = sum(1 for h in history if (h.get("decision") or {}).get("accepted"))
        rejected = sum(1 for h in history for c in h.get("candidates", []) if not c.get("accepted"))
        usage = state.get("usage") or {}
        tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        batch = (state.get("batch") or {}).get("mean")
        text = (
            f"epoch {state.get('epoch', 0) + 1} step {state.get('step', 0) + 1} | {node} | "
            f"batch {'-' if batch is None else f'{batch:.2f}'} | "
            f"best val {state.get('best_score', 0):.3f} (v{state.get('version', 0)}) | "
            f"{accepted} accepted, {rejected} rejected | {tokens} tok, "
            f"${float(usage.get('cost_usd', 0)):.4f}"
        )
        self._last = text
        if self._progress is not None:
            self._progress.update(self._task, completed=len(history), description=text)
        elif self._plain is not None:
            finished_a_step = len(history) > self._steps_seen
            self._steps_seen = len(history)
            self._plain.print(
                f"train {len(history)}/{self.total} steps | {text} | ", milestone=finished_a_step
            )
