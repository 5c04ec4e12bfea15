"""Generate the demo task: write the date a short sentence mentions as an ISO date (YYYY-MM-DD).

Why this task for ``make demo``: the embedded model reads dates easily, but a first, naive spec
("Say which date the sentence mentions.") answers in words ("March 3, 2021"), which the metric
(``exact_match`` on the last line) rejects with feedback showing the expected form. Whether the
optimizer turns that feedback into a better spec (an instruction, or demonstrations) is what
the demo measures; the test split is only ever scored. Dates are written many ways (spelled-out
days, abbreviations, weekday prefixes, relative phrasing), so one fixed rewrite rule is not
enough. Deterministic (seeded):

    python data/dates/make_data.py
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

SEED = 20261203
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
ORDINALS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
    "thirty-first",
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
EVENTS = [
    "the wedding",
    "the product launch",
    "her dentist appointment",
    "the board meeting",
    "the school concert",
    "his flight to Lisbon",
    "the final exam",
    "the move to Oslo",
    "the first match of the season",
    "the museum opening",
]
TEMPLATES = [
    "{p} said {e} is on {d}.",
    "{e_cap} was moved to {d}, according to {p}.",
    "{p} wrote '{d}' in the calendar for {e}.",
    "The invitation from {p} puts {e} on {d}.",
]


def _suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def spell(date: dt.date, rng: random.Random) -> str:
    """One of several ways people write a date."""
    d, m, y = date.day, MONTHS[date.month - 1], date.year
    weekday = date.strftime("%A")
    forms = [
        f"{m} {d}, {y}",
        f"{d} {m} {y}",
        f"the {ORDINALS[d - 1]} of {m}, {y}",
        f"{m} {d}{_suffix(d)} {y}",
        f"{weekday}, {d} {m[:3]}. {y}",
        f"{weekday} {m} {d}, {y}",
        f"{d}{_suffix(d)} of {m} {y}",
    ]
    return rng.choice(forms)


def make(n: int, rng: random.Random) -> list[dict[str, str]]:
    rows = []
    start = dt.date(1990, 1, 1).toordinal()
    end = dt.date(2035, 12, 31).toordinal()
    for _ in range(n):
        date = dt.date.fromordinal(rng.randint(start, end))
        event = rng.choice(EVENTS)
        text = rng.choice(TEMPLATES).format(
            p=rng.choice(PEOPLE), e=event, e_cap=event[0].upper() + event[1:], d=spell(date, rng)
        )
        rows.append({"input": f"Sentence: {text}", "target": date.isoformat()})
    return rows


def main() -> None:
    rng = random.Random(SEED)
    here = Path(__file__).parent
    splits = {"train": 16, "val": 24, "test": 48}
    for split, n in splits.items():
        rows = make(n, rng)
        with (here / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for i, row in enumerate(rows):
                fh.write(json.dumps({"id": f"{split}-{i}", **row}) + "\n")
    print(dict(splits))


if __name__ == "__main__":
    main()
