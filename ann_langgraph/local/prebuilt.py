"""The prebuilt engine: llama.cpp's own server from the ``xllamacpp`` wheel, run without a compile.

Why: compiling ``llama-server`` costs a newcomer 4-6 minutes on 2 cores before the first answer.
``xllamacpp`` (Xinference's llama.cpp backend, MIT) ships manylinux wheels that embed the same
C++ server (parallel slots, continuous batching, prompt cache, JSON-schema output, ``--jinja``
tool calls) and start its HTTP listener in-process. Its Linux CPU wheels are built for AVX2, not
``-march=native``, so the compiled engine stays the faster one where it is built; this module is
what ``auto`` runs until then (``ann engine --build`` compiles it).

The server process runs ``prebuilt_server.py`` (by path, so it does not import this package and
its dependencies) with the subset of ``llama-server``'s flags that :class:`LocalServer`
passes, so both engines start from one command line.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

__all__ = [
    "LAUNCHER",
    "PREBUILT_DIST",
    "prebuilt_available",
    "prebuilt_command",
    "prebuilt_version",
]

PREBUILT_DIST = "xllamacpp"
LAUNCHER = Path(__file__).with_name("prebuilt_server.py")


def prebuilt_available() -> bool:
    """True when the prebuilt server's wheel is installed (checked without importing it: the
    import loads a 100 MB shared library)."""
    return importlib.util.find_spec(PREBUILT_DIST) is not None


def prebuilt_version() -> str | None:
    try:
        return importlib.metadata.version(PREBUILT_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None


def prebuilt_command() -> list[str]:
    """The command prefix that stands where the ``llama-server`` binary's path would (``-P``:
    the launcher's folder, this package's, is not put on ``sys.path``, so none of its modules
    can shadow one the server imports)."""
    return [sys.executable, "-P", str(LAUNCHER)]
