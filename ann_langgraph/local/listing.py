"""What ``ann models`` shows: each embedded model, its size, licence, file, and readiness."""

from __future__ import annotations

import os
from typing import Any

from .catalogue import CATALOGUE, DEFAULT_ENTRY, ENV_MODEL, EmbeddedModel
from .errors import LocalModelError
from .weights import cached_path, chunk_files, installed_path

__all__ = ["model_rows"]


def _installed(entry: EmbeddedModel) -> tuple[str, str]:
    """(status, where) without assembling or hashing anything."""
    found = installed_path(entry)
    if found is not None:
        return "ready", str(found)
    if entry.source == "chunks":
        try:
            chunk_files(entry)
        except LocalModelError:
            return "not installed", entry.install
        return "installed (assembled on first use)", str(cached_path(entry))
    return "not installed", entry.install


def model_rows() -> list[dict[str, Any]]:
    """One row per catalogue entry, in catalogue order."""
    override = os.environ.get(ENV_MODEL, "").strip()
    rows = []
    for entry in CATALOGUE.values():
        status, where = _installed(entry)
        is_default = entry.name == (override.removeprefix("local:") or DEFAULT_ENTRY)
        rows.append(
            {
                "name": f"local:{entry.name}",
                "default": is_default,
                "title": entry.title,
                "size_gb": round(entry.size_bytes / 1e9, 2) if entry.size_bytes else None,
                "licence": entry.licence,
                "status": status,
                "where": where,
                "max_tokens": entry.max_tokens,
                "n_ctx": entry.n_ctx,
                "structured_output": entry.structured_output,
            }
        )
    if override and override.removeprefix("local:") not in CATALOGUE:
        rows.append(
            {
                "name": "local",
                "default": True,
                "title": f"{ENV_MODEL} file",
                "size_gb": round(os.path.getsize(override) / 1e9, 2)
                if os.path.isfile(override)
                else None,
                "licence": "?",
                "status": "ready" if os.path.isfile(override) else "missing",
                "where": override,
                "max_tokens": 256,
                "n_ctx": 8192,
                "structured_output": "function_calling",
            }
        )
    return rows
