"""Benchmark harnesses: loaders, metrics, starter specs, baselines and comparison tables."""

from .base import (
    Benchmark,
    DataNotFoundError,
    UnknownSplitError,
    benchmark_names,
    get_benchmark,
    register_benchmark,
    resolve_data_dir,
    seeded_split,
)

__all__ = [
    "Benchmark",
    "DataNotFoundError",
    "UnknownSplitError",
    "benchmark_names",
    "get_benchmark",
    "register_benchmark",
    "resolve_data_dir",
    "seeded_split",
]
