"""Datasets as ``evaluate`` and ``train`` take them: JSONL/JSON files, LangSmith datasets, or
rows in memory, each normalized to ``input``/``target``/``id`` (plus ``files``), ids unique."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .langsmith_datasets import is_langsmith_dataset, load_dataset_spec

__all__ = ["load_dataset", "prepare_dataset"]


def _normalize_row(row: Any, where: str, index: int) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    out = dict(row)
    text = row.get("input", row.get("question"))
    if text is None:
        raise ValueError(f"{where}: no 'input' (or 'question') field")
    if not isinstance(text, str):
        raise ValueError(f"{where}: 'input' must be a string, got {type(text).__name__}")
    out["input"] = text
    out["target"] = row.get("target", row.get("answer"))
    raw_id = row.get("id")
    out["id"] = str(index) if raw_id is None else str(raw_id)
    _check_files(out, where)
    return out


def _check_files(row: dict[str, Any], where: str) -> None:
    """``files`` (optional): ``{name in the sandbox: host path}`` handed to the python tool."""
    files = row.get("files")
    if files is None:
        return
    if not isinstance(files, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | Path) for k, v in files.items()
    ):
        raise ValueError(f"{where}: 'files' must map file names to host paths")
    row["files"] = {k: str(v) for k, v in files.items()}


def load_dataset(path: str | Path) -> list[dict[str, Any]]:
    """Examples from a JSONL file (one object per line) or a JSON file (a list of objects, or
    an object with an ``examples``/``data`` list), or from a LangSmith dataset:
    ``"langsmith:<name>[?input=KEY&target=KEY&split=NAME&limit=N]"`` (field mapping in
    ``ann_langgraph.langsmith_io.load_langsmith_dataset``; needs ``LANGSMITH_API_KEY``).

    Each row needs ``input`` (alias ``question``); ``target`` (alias ``answer``) and ``id``
    are optional (the id defaults to the row's position, counting from 0); other keys are kept.
    ``files`` (``{name: path}``, for the python tool) paths are relative to the file's folder.
    Bad rows raise ``ValueError`` naming ``file:line`` (JSONL) or ``file[item]`` (JSON).
    """
    if is_langsmith_dataset(str(path)) and not Path(path).exists():
        remote = load_dataset_spec(str(path))
        _check_unique(remote, str(path))
        return remote
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise ValueError(f"{p}: unsupported dataset file type (use .jsonl or .json)")
    text = p.read_text(encoding="utf-8")
    rows: list[dict[str, Any]] = []
    if suffix in (".jsonl", ".ndjson"):
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{lineno}: invalid JSON ({exc.msg})") from None
            rows.append(_normalize_row(row, f"{p}:{lineno}", len(rows)))
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if isinstance(data, Mapping):
            lists = [data[k] for k in ("examples", "data") if isinstance(data.get(k), list)]
            if not lists:
                raise ValueError(f"{p}: expected a list of examples (or an 'examples' list)")
            data = lists[0]
        if not isinstance(data, list):
            raise ValueError(f"{p}: expected a list of examples, got {type(data).__name__}")
        rows = [_normalize_row(row, f"{p}[{i}]", i) for i, row in enumerate(data)]
    _check_unique(rows, str(p))
    for row in rows:  # relative file paths are relative to the dataset file
        if row.get("files"):
            row["files"] = {k: str(p.parent / v) for k, v in row["files"].items()}
    return rows


def _check_unique(rows: list[dict[str, Any]], where: str) -> None:
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise ValueError(f"{where}: duplicate example id {row['id']!r}")
        seen.add(row["id"])


def prepare_dataset(dataset: Iterable[Mapping[str, Any]] | str | Path) -> list[dict[str, Any]]:
    """A file or LangSmith name loaded, or in-memory rows checked, as ``load_dataset`` does."""
    if isinstance(dataset, str | Path):
        return load_dataset(dataset)
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(dataset):
        if not isinstance(row, Mapping):
            raise ValueError(f"dataset[{i}]: expected a dict, got {type(row).__name__}")
        if not isinstance(row.get("input"), str):
            raise ValueError(f"dataset[{i}]: 'input' must be a string")
        out = dict(row)
        out["id"] = str(i) if row.get("id") is None else str(row["id"])
        _check_files(out, f"dataset[{i}]")
        rows.append(out)
    _check_unique(rows, "dataset")
    return rows
