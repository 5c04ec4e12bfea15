"""The embedded model's error types (their own module so every part can raise them)."""

from __future__ import annotations

__all__ = ["LocalModelError", "ModelLoadError"]


class LocalModelError(RuntimeError):
    """The embedded model cannot run; the message says what to install or set."""


class ModelLoadError(LocalModelError):
    """The model file itself could not be loaded: no other server would load it either, so
    this never falls back to the python server."""
