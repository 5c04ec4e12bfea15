"""The run directory: what a run is (``run.json``), whether a resume may continue it, and the
files rewritten from checkpointed state as the optimizer goes (versions, history, records)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .models import model_label
from .optimize.graph import Budget, OptimizerConfig
from .spec import GraphSpec, save_spec

__all__ = ["RunDirError", "open_run_dir", "sync_outputs", "with_ids", "write_run_file"]


class RunDirError(RuntimeError):
    """The run directory holds another run (or none to resume)."""


# Options that change how fast a run goes, never what it computes: free to differ on resume.
_OPERATIONAL = frozenset({"concurrency"})


def _config_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a resumed run's options differ from the saved ones.

    An option added in a later version, absent from the saved run, counts as unchanged while it
    keeps its default (so upgrading the package does not strand older run directories);
    ``concurrency`` may change freely (responses are cached and seeded per example).
    """
    defaults = OptimizerConfig().model_dump(mode="json")
    return any(
        (old[k] if k in old else defaults.get(k)) != v
        for k, v in new.items()
        if k not in _OPERATIONAL
    ) or any(k not in new for k in old)


def _dataset_hash(rows: list[dict[str, Any]]) -> str:
    text = json.dumps(rows, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_ids(rows: Iterable[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        row["id"] = str(row.get("id", f"{prefix}{i}"))
        out.append(row)
    ids = [r["id"] for r in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate example ids in the {prefix.rstrip('-')} set")
    return out


def _model_label(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _model_label(v) for k, v in value.items()}
    return model_label(value)


def open_run_dir(
    run_path: Path,
    *,
    spec: GraphSpec,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    metric: Any,
    models: Any,
    optimizer_model: Any,
    config: OptimizerConfig,
    budget: Budget | None,
    resume: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, old)``: this run's ``run.json`` content and the saved one (empty when new).

    Raises ``RunDirError`` when the folder holds a run and ``resume`` is off, or when the saved
    run's spec, data or options differ (a resume must continue the same computation)."""
    meta = {
        "spec": spec.name,
        "spec_fingerprint": spec.fingerprint,
        "train": {"n": len(train_rows), "hash": _dataset_hash(train_rows)},
        "val": {"n": len(val_rows), "hash": _dataset_hash(val_rows)},
        "metric": metric if isinstance(metric, str) else getattr(metric, "__name__", "custom"),
        "models": _model_label(models),
        "optimizer_model": _model_label(optimizer_model),
        "config": config.model_dump(mode="json"),
        "budget": (budget or Budget()).model_dump(mode="json"),
        "created": time.time(),
    }
    run_file = run_path / "run.json"
    old: dict[str, Any] = {}
    if run_file.exists():
        if not resume:
            raise RunDirError(
                f"{run_path} already holds a run; pass resume=True (--resume) to continue it, "
                "or choose another run directory"
            )
        old = json.loads(run_file.read_text())
        changed = [k for k in ("spec_fingerprint", "train", "val") if old.get(k) != meta[k]]
        if _config_changed(old.get("config") or {}, meta["config"]):
            changed.append("config")
        meta["created"] = old.get("created")
        if changed:
            raise RunDirError(
                f"cannot resume {run_path}: {', '.join(changed)} differ from the saved run"
            )
    return meta, old


def write_run_file(
    run_path: Path, spec: GraphSpec, meta: dict[str, Any], old: dict[str, Any]
) -> None:
    """Create the folder, ``run.json`` (kept as first written, but for a new run id) and
    ``spec.v0.yaml``."""
    run_path.mkdir(parents=True, exist_ok=True)
    run_file = run_path / "run.json"
    if not run_file.exists() or old.get("run_id") != meta["run_id"]:
        run_file.write_text(json.dumps({**meta, **old}, indent=2) + "\n")
    if not (run_path / "spec.v0.yaml").exists():
        save_spec(spec, run_path / "spec.v0.yaml")


def sync_outputs(run_path: Path, state: dict[str, Any], node: str, data: dict[str, Any]) -> None:
    """Rewrite the run directory's files from checkpointed state (idempotent, so resume-safe)."""
    if node in ("forward",) and isinstance(data, dict) and data.get("batch"):
        step = state.get("global_step", 0)
        path = run_path / "records" / f"step-{step:04d}.jsonl"
        path.parent.mkdir(exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for record in data["batch"]["records"]:
                fh.write(json.dumps(record, default=str) + "\n")
    if node in ("setup", "decide", "momentum", "final"):
        versions = state.get("versions") or []
        lineage = []
        for row in versions:
            path = run_path / f"spec.v{row['version']}.yaml"
            if not path.exists():
                save_spec(GraphSpec.model_validate(row["spec"]), path)
            lineage.append({k: v for k, v in row.items() if k != "spec"})
        _write_jsonl(run_path / "versions.jsonl", lineage)
        _write_jsonl(run_path / "history.jsonl", state.get("history") or [])


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
    tmp.replace(path)
