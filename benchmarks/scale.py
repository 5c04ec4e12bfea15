"""The Ray executor against the local one, on a model stand-in with a fixed latency per call.

A loopback OpenAI-compatible server answers every chat completion after ``--latency`` seconds
(the shape of a remote provider: the model's time is waiting, not CPU). The same one-layer
spec is evaluated through the local executor (asyncio, ``concurrency=N``) and the Ray executor
(``examples_in_flight=N``, ``requests_in_flight=N``) at N = 8, 32 and 128 examples in flight,
on ``--per-slot`` x N examples, no response cache. Prints throughput (examples/s) for both,
the ratio Ray/local, and each executor's overhead per example over the latency floor: the
extra time each example held its slot beyond the stand-in's own latency,
``(wall - ceil(examples / N) x latency) x N / examples`` (Ray's and local's, same run).

    python benchmarks/scale.py [--latency 0.5] [--in-flight 8,32,128] [--address ADDRESS]

Ray starts locally unless ``--address``/``RAY_ADDRESS`` names a cluster. The Ray pool is warmed
up (workers started, spec compiled) before timing; the local run needs no warm-up.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import ann_langgraph as ann
from ann_langgraph.executors.ray import RayExecutor

PRICES = {"stand-in": (0.0, 0.0)}


class _StandIn(BaseHTTPRequestHandler):
    latency = 0.5
    lock = threading.Lock()
    now = peak = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with _StandIn.lock:
            _StandIn.now += 1
            _StandIn.peak = max(_StandIn.peak, _StandIn.now)
        time.sleep(_StandIn.latency)
        with _StandIn.lock:
            _StandIn.now -= 1
        text = str(body.get("messages", [{}])[-1].get("content", ""))
        digits = [int(t) for t in text.replace("?", " ").split() if t.isdigit()]
        answer = f"Answer: {sum(digits)}"
        out = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "stand-in",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def _spec(port: int) -> ann.GraphSpec:
    return ann.GraphSpec.model_validate(
        {
            "name": "stand-in",
            "description": "Add two numbers.",
            "answer_format": "last_number",
            "models": {
                "default": {"model": "openai:stand-in", "base_url": f"http://127.0.0.1:{port}/v1"}
            },
            "layers": [{"name": "add", "agents": [{"id": "a", "role": "Adder", "prompt": "Add."}]}],
        }
    )


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": str(i), "input": f"What is {i} + 1 ?", "target": i + 1} for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per model call")
    parser.add_argument("--in-flight", default="8,32,128")
    parser.add_argument("--per-slot", type=int, default=4, help="examples = per-slot x N")
    parser.add_argument("--address", default=None, help="a Ray cluster (default: local Ray)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write results here")
    args = parser.parse_args()
    _StandIn.latency = args.latency
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = _spec(server.server_address[1])
    levels = [int(x) for x in args.in_flight.split(",")]
    results = []
    print(f"stand-in latency {args.latency:.3f} s per call; examples = {args.per_slot} x N")
    print(
        f"{'N':>5} {'n':>5} {'local ex/s':>11} {'ray ex/s':>9} {'ray/local':>9} "
        f"{'ray ms/ex':>10} {'local ms/ex':>11} {'peak calls':>10}"
    )
    for n_flight in levels:
        rows = _rows(args.per_slot * n_flight)
        _StandIn.peak = 0
        local = ann.evaluate(
            spec, rows, "numeric_match", concurrency=n_flight, progress=False, prices=PRICES
        )
        local_peak = _StandIn.peak
        with RayExecutor(
            address=args.address, examples_in_flight=n_flight, requests_in_flight=n_flight
        ) as ex:
            ann.evaluate(spec, _rows(4 * 2), "numeric_match", progress=False, executor=ex)
            _StandIn.peak = 0
            remote = ann.evaluate(
                spec, rows, "numeric_match", progress=False, executor=ex, prices=PRICES
            )
            ray_peak = _StandIn.peak
        if remote.mean != local.mean or remote.errors or local.errors:
            raise SystemExit(f"results differ or failed: {local.summary()} / {remote.summary()}")
        n = len(rows)
        floor = -(-n // n_flight) * args.latency  # the stand-in's latency alone

        def over(wall: float, n: int = n, floor: float = floor, width: int = n_flight) -> float:
            return 1000 * (wall - floor) * width / n

        row = {
            "in_flight": n_flight,
            "examples": n,
            "local_per_s": n / local.wall_time_s,
            "ray_per_s": n / remote.wall_time_s,
            "ratio": local.wall_time_s / remote.wall_time_s,
            "ray_overhead_ms": over(remote.wall_time_s),
            "local_overhead_ms": over(local.wall_time_s),
            "peak_local": local_peak,
            "peak_ray": ray_peak,
        }
        results.append(row)
        print(
            f"{n_flight:>5} {n:>5} {row['local_per_s']:>11.2f} {row['ray_per_s']:>9.2f} "
            f"{row['ratio']:>9.2f} {row['ray_overhead_ms']:>10.1f} "
            f"{row['local_overhead_ms']:>11.1f} {ray_peak:>10}",
            flush=True,
        )
    server.shutdown()
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump({"latency_s": args.latency, "rows": results}, fh, indent=2)


if __name__ == "__main__":
    main()
