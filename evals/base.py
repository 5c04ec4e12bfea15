"""What a benchmark is: a loader with written-down splits, a metric, a starter spec.

Every benchmark module under ``evals/`` defines ``BENCHMARK: Benchmark``; ``get_benchmark``
imports it lazily, so a missing optional dependency only hurts the benchmark that needs it.
Data comes from a path argument, ``ANN_DATA_DIR``, or ``../shared/datasets`` beside the
checkout; it is never copied into the repository.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import random
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ann_langgraph.metrics import Metric

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "ANN_DATA_DIR"

Example = dict[str, Any]
# (split, data dir) -> rows; the data dir is ``None`` only for ``needs_data_dir=False``
Loader = Callable[[str, Any], list[Example]]


def code_version() -> str:
    """The code a measurement ran: the checkout's commit (``+dirty`` when tracked code differs
    from it), else the installed version; so a recorded row says which optimizer produced it."""
    from importlib.metadata import PackageNotFoundError, version

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != REPO_ROOT:
            raise subprocess.SubprocessError("installed inside another repository")
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "ann_langgraph", "evals")
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return f"ann-langgraph {version('ann-langgraph')}"
        except PackageNotFoundError:
            return "unknown"


class DataNotFoundError(FileNotFoundError):
    """A benchmark's data folder or file is missing; the message says where it looked."""


_SPLIT_RANGE = re.compile(r"(?P<base>[\w-]+)\[(?P<start>\d*):(?P<stop>\d*)\]")


class UnknownSplitError(ValueError):
    """A split name the benchmark does not define."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The datasets folder: ``data_dir``, else ``$ANN_DATA_DIR``, else ``../shared/datasets``.

    The fallback is looked up beside the current directory and beside the checkout.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"data directory {str(path)!r} does not exist")
        return path
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"{DATA_ENV}={env!r} is not a directory")
        return path
    tried = []
    for base in (Path.cwd(), REPO_ROOT):
        path = (base / ".." / "shared" / "datasets").resolve()
        if str(path) not in tried:
            tried.append(str(path))
        if path.is_dir():
            return path
    raise DataNotFoundError(
        "no benchmark data found: pass --data-dir, set ANN_DATA_DIR, or place the datasets "
        f"at ../shared/datasets (looked in {', '.join(tried)})"
    )


def iter_jsonl(path: Path, *, what: str = "benchmark") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSONL (or ``.jsonl.gz``) file.

    A missing file is a ``DataNotFoundError`` naming ``what``; a bad line a ``ValueError``
    naming ``file:line``.
    """
    if not path.is_file():
        raise DataNotFoundError(f"{what} file {str(path)!r} does not exist")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, row


def seeded_split(
    rows: Sequence[Example], sizes: Mapping[str, int | None], *, seed: int
) -> dict[str, list[Example]]:
    """Cut ``rows`` into named parts after one seeded shuffle, in ``sizes`` order.

    A size of ``None`` takes the rest. The same rows and seed always give the same parts,
    and the parts never overlap.
    """
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    parts: dict[str, list[Example]] = {}
    start = 0
    for name, size in sizes.items():
        end = len(order) if size is None else min(len(order), start + size)
        parts[name] = [rows[i] for i in order[start:end]]
        start = end
    return parts


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: ``load(split)`` gives ``{"id", "input", "target", ...}`` examples.

    ``splits`` maps each split name to a one-line description of exactly which rows it holds
    (printed by ``ann eval --help`` and in result files). ``train`` and ``val`` never overlap
    the evaluation split. ``aliases`` maps extra accepted names to a split (e.g. ``test`` ->
    ``dev``). ``instruction`` tells a single-agent baseline how to format its answer;
    ``breakdown`` names example keys to report accuracy by (e.g. subject, level);
    ``extra_metrics`` are further named metrics averaged in reports beside the main one (e.g.
    DABench's per-sub-question accuracy, an optional LLM-judge score); ``tools`` are the tool
    names single-agent baselines get (e.g. ``python`` for DABench).
    """

    name: str
    description: str
    spec: str
    answer_format: str
    splits: Mapping[str, str]
    loader: Loader
    metric_factory: Callable[[], Metric]
    instruction: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)
    breakdown: tuple[str, ...] = ()
    extra_metrics: Mapping[str, Callable[[], Metric]] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    default_eval_split: str = "dev"
    #: False when the data can come from elsewhere (a package): the loader then gets ``None``
    #: instead of an error when no datasets folder is found.
    needs_data_dir: bool = True

    def split_name(self, split: str) -> str:
        """The canonical name of ``split``: aliases resolved, a row range kept (``dev[40:80]``)."""
        name, rows = self.split_range(split)
        if rows is None:
            return name
        return f"{name}[{rows.start}:{'' if rows.stop is None else rows.stop}]"

    def split_range(self, split: str) -> tuple[str, slice | None]:
        """``split``'s base split and, for ``name[start:stop]``, the row positions it keeps.

        A range lets validation come from rows of a split that evaluation does not use (say
        ``dev[40:80]`` beside an evaluation of ``dev`` rows 0-39) without redefining the splits.
        """
        base, rows = split, None
        match = _SPLIT_RANGE.fullmatch(split.strip())
        if match is not None:
            base = match["base"]
            start = int(match["start"] or 0)
            stop = int(match["stop"]) if match["stop"] else None  # dev[40:]: to the end
            if stop is not None and stop <= start:
                raise UnknownSplitError(f"split {split!r}: the range is empty (start >= stop)")
            rows = slice(start, stop)
        name = self.aliases.get(base, base)
        if name not in self.splits:
            known = sorted({*self.splits, *self.aliases})
            raise UnknownSplitError(
                f"benchmark {self.name!r} has no split {split!r} (known: {', '.join(known)}; "
                "a row range is written like dev[40:80])"
            )
        return name, rows

    def load(
        self, split: str, *, data_dir: str | Path | None = None, limit: int | None = None
    ) -> list[Example]:
        """The split's examples in a fixed order; ``limit`` keeps the first ``limit``.

        ``split`` may name a row range, ``dev[40:80]``: those positions of the split, then
        ``limit``.
        """
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        name, positions = self.split_range(split)
        try:
            root: Path | None = resolve_data_dir(data_dir)
        except DataNotFoundError:
            if self.needs_data_dir or data_dir is not None:
                raise
            root = None
        rows = self.loader(name, root)
        if positions is not None:
            if positions.start >= len(rows):
                raise UnknownSplitError(f"split {split!r}: {name!r} has only {len(rows)} rows")
            rows = rows[positions]
        return rows if limit is None else rows[:limit]

    def metric(self) -> Metric:
        return self.metric_factory()

    @property
    def spec_path(self) -> Path:
        return REPO_ROOT / self.spec


BUILTIN_BENCHMARKS: dict[str, str] = {
    "gsm8k": "evals.gsm8k",
    "math": "evals.competition_math",
    "mmlu-ml": "evals.mmlu",
    "humaneval": "evals.humaneval",
    "dabench": "evals.dabench",
    "creative-writing": "evals.creative_writing",
}
_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark, *, replace: bool = False) -> None:
    """Make ``benchmark`` available by name (to ``ann eval`` and ``evals.compare``)."""
    if benchmark.name in _REGISTRY and not replace:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered")
    _REGISTRY[benchmark.name] = benchmark


def benchmark_names() -> list[str]:
    return sorted({*BUILTIN_BENCHMARKS, *_REGISTRY})


def get_benchmark(name: str) -> Benchmark:
    """A registered or built-in benchmark by name (imports its module on first use)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name = BUILTIN_BENCHMARKS.get(name)
    if module_name is None:
        raise KeyError(f"unknown benchmark {name!r} (known: {', '.join(benchmark_names())})")
    module = importlib.import_module(module_name)
    benchmark: Benchmark = module.BENCHMARK
    _REGISTRY[name] = benchmark
    return benchmark
