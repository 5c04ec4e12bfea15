"""The one error type of the embedded model (its own module so every part can raise it)."""

from __future__ import annotations

__all__ = ["LocalModelError"]


class LocalModelError(RuntimeError):
    """The embedded model cannot run; the message says what to install or set."""
