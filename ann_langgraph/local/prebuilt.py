"""The prebuilt engine: llama.cpp's own server from the ``xllamacpp`` wheel, run without a compile.

Why: compiling ``llama-server`` costs a newcomer 4-6 minutes on 2 cores before the first answer.
``xllamacpp`` (Xinference's llama.cpp backend, MIT) ships manylinux wheels that embed the same
C++ server (parallel slots, continuous batching, prompt cache, JSON-schema output, ``--jinja``
tool calls) and start its HTTP listener in-process. Its Linux CPU wheels are built for AVX2, not
``-march=native``, so the compiled engine stays the faster one where it is built; this module is
what ``auto`` runs until then (``ann engine --build`` compiles it).

Run as ``python -m ann_langgraph.local.prebuilt`` with the subset of ``llama-server``'s flags
that :class:`LocalServer` passes, so both engines start from one command line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = [
    "PREBUILT_DIST",
    "PREBUILT_MODULE",
    "parse_server_args",
    "prebuilt_available",
    "prebuilt_command",
    "prebuilt_version",
]

PREBUILT_DIST = "xllamacpp"
PREBUILT_MODULE = "ann_langgraph.local.prebuilt"


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
    """The command prefix that stands where the ``llama-server`` binary's path would."""
    return [sys.executable, "-m", PREBUILT_MODULE]


def parse_server_args(argv: Sequence[str]) -> argparse.Namespace:
    """The ``llama-server`` flags :class:`LocalServer` passes; an unknown flag is an error (a
    flag silently dropped would change what the engine does)."""
    parser = argparse.ArgumentParser(prog=PREBUILT_MODULE, allow_abbrev=False)
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default=None)
    parser.add_argument("--ctx-size", type=int, default=4096)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--no-kv-unified", action="store_true")
    parser.add_argument("--threads", type=int, default=-1)
    parser.add_argument("--threads-batch", type=int, default=-1)
    parser.add_argument("--poll", type=int, default=50)
    parser.add_argument("--jinja", action="store_true")
    parser.add_argument("--no-webui", action="store_true")
    parser.add_argument("--metrics", action="store_true")
    parser.add_argument("--cache-ram", type=int, default=None)
    return parser.parse_args(list(argv))


def _params(args: argparse.Namespace) -> Any:  # xllamacpp ships no type stubs
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    if args.alias:
        params.model_alias = {args.alias}
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.kv_unified = not args.no_kv_unified
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads_batch
    params.cpuparams.poll = args.poll
    params.cpuparams_batch.poll = args.poll
    params.use_jinja = args.jinja
    params.ui = not args.no_webui
    params.endpoint_metrics = args.metrics
    if args.cache_ram is not None:
        params.cache_ram_mib = args.cache_ram
    # llama-server's context fitting may shrink n_ctx to fit memory; the caller sized it
    params.fit_params = False
    return params


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT (the LocalServer stops its process group)."""
    args = parse_server_args(sys.argv[1:] if argv is None else argv)
    import xllamacpp

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xllamacpp.Server(_params(args))  # starts the HTTP listener
    print(f"prebuilt llama.cpp server listening on {server.listening_address}", flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
