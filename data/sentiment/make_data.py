"""Generate the demo dataset: short product/movie reviews labelled positive or negative.

Deterministic (seeded), so the committed JSONL files can be regenerated exactly:

    python data/sentiment/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20261125
POSITIVE = [
    "loved",
    "really enjoyed",
    "was delighted by",
    "would happily recommend",
    "adored",
    "was impressed by",
    "had a great time with",
    "am thrilled with",
]
NEGATIVE = [
    "hated",
    "really disliked",
    "was disappointed by",
    "would never recommend",
    "regret buying",
    "was annoyed by",
    "had a terrible time with",
    "am unhappy with",
]
THINGS = [
    "this movie",
    "the new phone",
    "this restaurant",
    "the hotel room",
    "this book",
    "the headphones",
    "this coffee maker",
    "the concert",
    "this video game",
    "the running shoes",
]
POS_TAIL = [
    "It was wonderful.",
    "Everything worked perfectly.",
    "Five stars.",
    "Great value.",
    "I will buy it again.",
    "Absolutely fantastic.",
]
NEG_TAIL = [
    "It was awful.",
    "Nothing worked.",
    "One star.",
    "A waste of money.",
    "I want a refund.",
    "Absolutely terrible.",
]


def make(n: int, rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        verbs, tails = (POSITIVE, POS_TAIL) if label == "positive" else (NEGATIVE, NEG_TAIL)
        text = f"I {rng.choice(verbs)} {rng.choice(THINGS)}. {rng.choice(tails)}"
        rows.append({"input": f"Review: {text}", "target": label})
    return rows


def main() -> None:
    rng = random.Random(SEED)
    here = Path(__file__).parent
    splits = {"train": 16, "val": 12, "test": 24}
    for split, n in splits.items():
        rows = make(n, rng)
        with (here / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for i, row in enumerate(rows):
                fh.write(json.dumps({"id": f"{split}-{i}", **row}) + "\n")
    print({k: v for k, v in splits.items()})


if __name__ == "__main__":
    main()
