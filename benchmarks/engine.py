"""The embedded engines side by side, same run: llama-cpp-python's server, the compiled
llama-server and the prebuilt one (``xllamacpp``'s wheel); ratios are over the first engine.

For each embedded model and each engine, on a fresh server of that engine:

1. aggregate generation throughput (tokens/s) at 1, 2, 4 and 8 concurrent requests (each asks
   for ``--gen`` tokens with a ~100-token prompt; the llama-server here gets 8 slots);
2. a parallel vote of 3 and of 5 agents (one ann layer, real graph) against one call of the
   same agent: wall time of the vote divided by the one call's (1.0 would be free voters;
   k means no overlap at all);
3. ``ann eval``'s path (``ann.evaluate``) on the first ``--eval-rows`` GSM8K dev rows with the
   CoT baseline spec at the default concurrency (the slots the engine serves): examples per
   minute, and prompt tokens the server processed against the prompt tokens sent.

    python benchmarks/engine.py [--models qwen2.5-coder-1.5b,smollm2] [--eval-rows 20]
        [--engines python,llama-server,prebuilt]

Two model servers never run at once (each is stopped before the next starts). Prints one table
per model and the new/old ratios. Needs the GSM8K data (``ANN_DATA_DIR`` or ../shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import ann_langgraph as ann
from ann_langgraph.cache import SQLiteLLMCache
from ann_langgraph.local import LocalChatModel, LocalServer, find_gguf
from ann_langgraph.local.catalogue import CATALOGUE

QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?"
)
STORY = "Write a long, detailed story about a lighthouse keeper and a storm. " * 6


def _vote_spec(k: int) -> ann.GraphSpec:
    agents = [
        {
            "id": f"v{i}",
            "role": "Step-by-step solver",
            "prompt": "Solve step by step. End with 'Answer: <number>'.",
            "temperature": 0.7,
            "max_tokens": 160,
        }
        for i in range(k)
    ]
    return ann.GraphSpec.model_validate(
        {
            "name": f"vote-{k}",
            "description": "Solve a grade-school math word problem.",
            "answer_format": "last_number",
            "layers": [
                {
                    "name": "solve",
                    "aggregator": "parallel_vote" if k > 1 else "sequential_cot",
                    "agents": agents,
                }
            ],
        }
    )


async def _throughput(url: str, concurrency: int, gen: int) -> dict[str, float]:
    body = {
        "messages": [{"role": "user", "content": STORY}],
        "max_tokens": gen,
        "temperature": 0.8,
        "seed": 0,
    }
    async with httpx.AsyncClient(timeout=1800, trust_env=False) as client:

        async def one(i: int) -> int:
            response = await client.post(url + "/v1/chat/completions", json={**body, "seed": i})
            response.raise_for_status()
            return int(response.json()["usage"]["completion_tokens"])

        began = time.perf_counter()
        tokens = await asyncio.gather(*(one(i) for i in range(concurrency)))
        wall = time.perf_counter() - began
    return {"tokens": float(sum(tokens)), "wall_s": wall, "tok_s": sum(tokens) / wall}


def _vote_ratios(model: LocalChatModel, repeats: int) -> dict[str, float]:
    times: dict[int, list[float]] = {1: [], 3: [], 5: []}
    for r in range(repeats):
        for k in times:
            graph = ann.compile_graph(_vote_spec(k), models=model, checkpointer=False)
            began = time.perf_counter()
            graph.invoke(
                {"input": QUESTION},
                config={"max_concurrency": 8, "metadata": {"ann_example_id": f"r{r}"}},
            )
            times[k].append(time.perf_counter() - began)
    one = statistics.median(times[1])
    return {
        "one_call_s": one,
        "vote3_s": statistics.median(times[3]),
        "vote5_s": statistics.median(times[5]),
        "vote3_ratio": statistics.median(times[3]) / one,
        "vote5_ratio": statistics.median(times[5]) / one,
    }


def _eval_rate(model: LocalChatModel, rows: int, concurrency: int) -> dict[str, float]:
    from evals.base import get_benchmark
    from evals.baselines import cot_spec

    bench = get_benchmark("gsm8k")
    data = bench.load("dev", limit=rows)
    spec = cot_spec(bench)
    with tempfile.TemporaryDirectory() as tmp:
        cache = SQLiteLLMCache(Path(tmp) / "ledger.sqlite")  # fresh: every call is paid
        began = time.perf_counter()
        report = ann.evaluate(
            spec,
            data,
            bench.metric(),
            models=model,
            cache=cache,
            concurrency=concurrency,
            timeout_s=3600,
            progress=False,
            langsmith=None,
        )
        wall = time.perf_counter() - began
        spent = cache.spent()
        cache.close()
    sent = int(spent["input_tokens"])
    reused = int(spent["reused_input_tokens"])
    return {
        "examples_per_min": 60 * len(data) / wall,
        "wall_s": wall,
        "accuracy": report.mean,
        "concurrency": float(concurrency),
        "prompt_sent": float(sent),
        "prompt_processed": float(sent - reused),
        "processed_share": (sent - reused) / sent if sent else 1.0,
    }


def _measure(entry: str, engine: str, args: argparse.Namespace) -> dict[str, Any]:
    path = find_gguf(entry)
    n_ctx = CATALOGUE[entry].n_ctx
    out: dict[str, Any] = {"model": entry, "engine": engine}
    # 1. throughput sweep (8 slots on the engine, so 8 requests can decode together)
    slots = 1 if engine == "python" else 8
    with LocalServer(path, n_ctx=n_ctx, engine=engine, slots=slots) as srv:  # type: ignore[arg-type]
        asyncio.run(_throughput(srv.url, 1, 16))  # warm-up
        out["throughput"] = {
            c: asyncio.run(_throughput(srv.url, c, args.gen)) for c in (1, 2, 4, 8)
        }
        print(f"  {engine}: throughput {_fmt_tp(out['throughput'])}", file=sys.stderr)
    # 2-3. votes and eval on a server with the default slots (what a user gets)
    with LocalServer(path, n_ctx=n_ctx, engine=engine) as srv:  # type: ignore[arg-type]
        model = LocalChatModel(embedded=entry)
        model._server = srv
        out["slots"] = srv.slots
        out["votes"] = _vote_ratios(model, args.repeats)
        print(f"  {engine}: votes {json.dumps(_round(out['votes']))}", file=sys.stderr)
        if args.eval_rows:
            out["eval"] = _eval_rate(model, args.eval_rows, srv.slots)
            print(f"  {engine}: eval {json.dumps(_round(out['eval']))}", file=sys.stderr)
    return out


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in d.items()}


def _fmt_tp(tp: dict[int, dict[str, float]]) -> str:
    return ", ".join(f"{c}: {v['tok_s']:.1f} tok/s" for c, v in tp.items())


def _field(*path: str) -> Any:
    def get(run: dict[str, Any]) -> Any:
        for key in path:
            run = run[key]
        return run

    return get


def _table(results: list[dict[str, Any]], engines: list[str]) -> str:
    """One table per model: a column per engine, then each later engine over the first."""
    by = {(r["model"], r["engine"]): r for r in results}
    base, others = engines[0], engines[1:]
    head = " | ".join(engines) + "".join(f" | {e}/{base}" for e in others)
    lines = []
    for entry in dict.fromkeys(r["model"] for r in results):
        runs = [by.get((entry, e)) for e in engines]
        lines += [f"## {entry}", "", f"| measure | {head} |"]
        lines.append("| --- " * (1 + len(engines) + len(others)) + "|")

        def row(
            name: str, get: Any, fmt: str = "{:.1f}", out: list[str] = lines, runs: Any = runs
        ) -> None:
            vals = [get(r) if r else None for r in runs]
            cells = [fmt.format(v) if v is not None else "" for v in vals]
            ratios = [f"{v / vals[0]:.2f}" if vals[0] and v is not None else "" for v in vals[1:]]
            out.append(f"| {name} | " + " | ".join(cells + ratios) + " |")

        for c in (1, 2, 4, 8):
            row(f"generation tok/s, {c} concurrent", lambda r, c=c: r["throughput"][c]["tok_s"])
        for k in ("3", "5"):
            ratio = f"vote{k}_ratio"
            row(f"vote-of-{k} wall / one call", lambda r, q=ratio: r["votes"][q], "{:.2f}")
        row("one call (s)", lambda r: r["votes"]["one_call_s"])
        if any(r and r.get("eval") for r in runs):
            row("ann eval examples/min (GSM8K CoT)", _field("eval", "examples_per_min"), "{:.2f}")
            row("prompt tokens processed / sent", lambda r: r["eval"]["processed_share"], "{:.2f}")
            row("eval accuracy (n rows)", lambda r: r["eval"]["accuracy"], "{:.2f}")
        slots = ", ".join(f"{e} {r['slots']}" for e, r in zip(engines, runs, strict=True) if r)
        lines += [f"(slots: {slots})", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen2.5-coder-1.5b,smollm2")
    parser.add_argument("--engines", default="python,llama-server")
    parser.add_argument("--gen", type=int, default=64, help="tokens per throughput request")
    parser.add_argument("--repeats", type=int, default=2, help="vote timings (median)")
    parser.add_argument("--eval-rows", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    results = []
    for entry in args.models.split(","):
        for engine in args.engines.split(","):
            print(f"{entry} on {engine} ...", file=sys.stderr)
            results.append(_measure(entry, engine, args))
            if args.json:
                args.json.write_text(json.dumps(results, indent=2, default=str))
    print(_table(results, args.engines.split(",")))


if __name__ == "__main__":
    main()
