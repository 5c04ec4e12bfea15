"""Generate the second small task: name the city a short sentence mentions.

Format following within reach of the tiny embedded model: the answer is a word copied from the
input, scored with ``exact_match`` on the output's last line. Deterministic (seeded):

    python data/cities/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20261126
CITIES = [
    "Paris",
    "Tokyo",
    "Cairo",
    "Lima",
    "Oslo",
    "Madrid",
    "Berlin",
    "Nairobi",
    "Toronto",
    "Sydney",
    "Dublin",
    "Lisbon",
    "Prague",
    "Seoul",
    "Denver",
    "Boston",
    "Vienna",
    "Rome",
]
PEOPLE = [
    "Anna",
    "Ben",
    "Chloe",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lucia",
    "Maya",
    "Noah",
    "Omar",
    "Priya",
]
TEMPLATES = [
    "{p} flew to {c} last week to visit an old friend.",
    "After the conference in {c}, {p} took the night train home.",
    "{p} has lived in {c} for ten years and still loves the food.",
    "The parcel {p} ordered was shipped from a warehouse in {c}.",
    "{p} is planning a long weekend in {c} with two cousins.",
    "Last summer {p} ran a marathon through the streets of {c}.",
    "A storm delayed every flight leaving {c}, so {p} waited at the airport.",
    "{p} found a tiny bookshop near the old station in {c}.",
]


def make(n: int, rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        city = rng.choice(CITIES)
        text = rng.choice(TEMPLATES).format(p=rng.choice(PEOPLE), c=city)
        rows.append({"input": f"Sentence: {text}", "target": city})
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
    print(dict(splits))


if __name__ == "__main__":
    main()
