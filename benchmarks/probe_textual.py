"""What the textual path alone proposes on the real model, on validation rows no table scores.

One training step of the GSM8K one-layer starter with bootstrapped demos and operators off (the
``ann-textual`` ablation): the critic, the repairer and the reflective samples, then screening
and validation. Prints each candidate's source, screening verdict, validation score and edit.

    python benchmarks/probe_textual.py RUN_DIR [--train-limit 8] [--val 'val[40:64]']

Levers are chosen on these rows (docs/training.md), never on a table's. A re-run with the
same RUN_DIR replays from its response cache. Needs the GSM8K data (``ANN_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ann_langgraph as ann
from ann_langgraph.spec import load_spec
from ann_langgraph.train import train
from evals.base import get_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--train-limit", type=int, default=8)
    parser.add_argument("--val", default="val[40:64]")
    parser.add_argument("--spec", default="graphs/gsm8k-one-layer.yaml")
    args = parser.parse_args()
    bench = get_benchmark("gsm8k")
    began = time.time()
    result = train(
        load_spec(args.spec),
        train=bench.load("train", limit=args.train_limit),
        val=bench.load(args.val),
        metric=bench.metric(),
        models="local",
        optimizer_model="local",
        epochs=1,
        batch_size=args.train_limit,
        run_dir=args.run_dir,
        resume=(args.run_dir / "run.json").exists(),
        config=ann.OptimizerConfig(bootstrap_demos=False, operators=False),
    )
    print(
        f"wall {time.time() - began:.0f} s; validation {result.baseline_score:.3f} -> "
        f"{result.best_score:.3f}"
    )
    for step in result.history:
        print("critic:", json.dumps(step.get("gradient", {}).get("blame"))[:600])
        for c in step.get("candidates", []):
            keep = ("source", "accepted", "val_score", "before", "screen")
            print(json.dumps({k: c.get(k) for k in keep})[:400])
            print("   ops:", json.dumps((c.get("patch") or {}).get("ops", []))[:600])


if __name__ == "__main__":
    main()
