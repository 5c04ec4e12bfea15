"""Model prices (USD per 1M tokens) and the cost of a call.

The table holds list prices of a few well-known OpenAI and Anthropic models (standard tier, no
batch or cached-input discounts), as published by the providers in 2025; check the providers'
pages and pass ``prices=`` to override or extend it. Local models (``"local"``, any ``*.gguf``)
and the scripted test model cost nothing. Unknown models are priced 0 with one warning each.

Names match exactly, then without a ``provider:`` prefix, then by the longest table entry that
is a prefix of the name (``"gpt-4o-mini-2024-07-18"`` -> ``"gpt-4o-mini"``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping

__all__ = ["PRICES", "Price", "cost_usd", "price_for"]

#: (input, output) USD per 1M tokens.
Price = tuple[float, float]

PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    # Anthropic
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    # free
    "local": (0.0, 0.0),
    "ann-local": (0.0, 0.0),
    "scripted": (0.0, 0.0),
}

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _lookup(name: str, table: Mapping[str, Price]) -> Price | None:
    if name in table:
        return table[name]
    best: str | None = None
    for key in table:
        if name.startswith(key) and (best is None or len(key) > len(best)):
            best = key
    return table[best] if best is not None else None


def price_for(model_name: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """``(input, output)`` USD per 1M tokens for ``model_name``, or ``None`` if unknown.

    ``prices`` entries are looked up first (exact, then prefix), then the built-in table.
    """
    name = model_name.strip()
    bare = name.split(":", 1)[1] if ":" in name else name
    if bare.lower().endswith(".gguf"):
        return (0.0, 0.0)
    for table in (prices or {}, PRICES):
        for candidate in (name, bare):
            found = _lookup(candidate, table)
            if found is not None:
                return (float(found[0]), float(found[1]))
    return None


def cost_usd(
    model_name: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, Price] | None = None,
) -> float:
    """USD for one call (or a sum of calls) of ``model_name``; 0 with one warning if unknown."""
    price = price_for(model_name, prices)
    if price is None:
        with _warned_lock:
            first = model_name not in _warned
            _warned.add(model_name)
        if first:
            warnings.warn(
                f"no price known for model '{model_name}'; counting it as free "
                "(pass prices={name: (usd_per_1M_input, usd_per_1M_output)})",
                RuntimeWarning,
                stacklevel=2,
            )
        return 0.0
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
