"""Progress on stderr for long runs: a rich bar on a terminal, plain lines in a log.

A rich bar is invisible when stderr is not a terminal (nohup, CI), and an hour-long evaluation
or training run that prints nothing looks hung; so there a line is printed at most every
``PLAIN_EVERY_S`` seconds and whenever the caller says a milestone was reached.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["PLAIN_EVERY_S", "PlainLines", "rich_bar", "stderr_is_terminal"]

PLAIN_EVERY_S = 60.0


def stderr_is_terminal() -> bool:
    from rich.console import Console

    return Console(stderr=True).is_terminal


def rich_bar(label: str, fields: str, **options: Any) -> Any:
    """A ``rich.progress.Progress`` on stderr: label, bar, n/total, ``fields``, elapsed time."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        **options,
    )


class PlainLines:
    """Throttled plain progress lines on stderr, each ending with the elapsed time."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()

    def print(self, text: str, *, milestone: bool = False) -> None:
        """Print ``text`` if it is a milestone or ``PLAIN_EVERY_S`` passed since the last line."""
        now = time.monotonic()
        if not milestone and now - self.last < PLAIN_EVERY_S:
            return
        self.last = now
        elapsed = int(now - self.started)
        print(f"{text}elapsed {elapsed // 60}m{elapsed % 60:02d}s", file=sys.stderr, flush=True)
