"""The prebuilt engine's server process: ``xllamacpp.Server`` on ``llama-server``'s flags.

Run by path (``python prebuilt_server.py --model ... --port ...``), not as a module of the
package: it needs only the standard library and ``xllamacpp``, and importing the package would
load LangChain and LangGraph into a process that only serves HTTP.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "parse_server_args", "server_params"]

PROG = "prebuilt_server.py"


def parse_server_args(argv: Sequence[str]) -> argparse.Namespace:
    """The ``llama-server`` flags :class:`LocalServer` passes; an unknown flag is an error (a
    flag silently dropped would change what the engine does)."""
    parser = argparse.ArgumentParser(prog=PROG, allow_abbrev=False)
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


def server_params(args: argparse.Namespace) -> Any:  # xllamacpp ships no type stubs
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
    server = xllamacpp.Server(server_params(args))  # starts the HTTP listener
    print(f"prebuilt llama.cpp server listening on {server.listening_address}", flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
