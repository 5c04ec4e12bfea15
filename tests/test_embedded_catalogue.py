"""The embedded model catalogue and chunk assembly, with small fake chunk packages (offline).

Assembly must join chunks in numeric order, verify size and sha256, rename atomically, survive
two processes at once, and fail with one clear message (never a half-written model) on a
missing chunk, a bad hash or a full disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ann_langgraph.cli import app
from ann_langgraph.local import (
    CATALOGUE,
    DEFAULT_ENTRY,
    LocalChatModel,
    LocalModelError,
    UnknownEmbeddedModel,
    parse_local_string,
    weights,
)
from ann_langgraph.local.catalogue import Chunk, EmbeddedModel
from ann_langgraph.models import ModelError, init_model, structured_output_method

N_CHUNKS = 12  # more than 9, so lexical order (1, 10, 11, 12, 2, ...) would be wrong


def _chunk_bytes(i: int) -> bytes:
    head = b"GGUF" if i == 1 else b""
    return head + bytes([i]) * (1000 + i)


def _fake_packages(root: Path, prefix: str, n: int = N_CHUNKS, *, skip: int | None = None) -> None:
    for i in range(1, n + 1):
        if i == skip:
            continue
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(_chunk_bytes(i))


def _entry(prefix: str, *, sha: str | None = None, n: int = N_CHUNKS) -> EmbeddedModel:
    joined = b"".join(_chunk_bytes(i) for i in range(1, n + 1))
    return EmbeddedModel(
        name=f"fake-{prefix}",
        title="Fake model",
        licence="MIT",
        size_bytes=len(joined),
        sha256=sha or hashlib.sha256(joined).hexdigest(),
        source="chunks",
        chunks=tuple(
            Chunk(package=f"{prefix}-pkg{i}", module=f"{prefix}{i}", path=f"data/part{i:02d}.bin")
            for i in range(1, n + 1)
        ),
        install=f"pip install {prefix}-pkg1..{n}",
    )


@pytest.fixture
def chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """Fake chunk packages importable from tmp_path, and a fresh cache dir."""
    prefix = f"fakechunk_{tmp_path.name.replace('-', '_')}_"
    site = tmp_path / "site"
    site.mkdir()
    _fake_packages(site, prefix)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ANN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache", prefix


def test_assembly_joins_chunks_in_numeric_order_and_verifies(chunks: tuple[Path, str]) -> None:
    cache, prefix = chunks
    entry = _entry(prefix)
    seen: list[tuple[int, int]] = []
    path = weights.assemble(entry, progress=lambda done, total: seen.append((done, total)))
    expected = b"".join(_chunk_bytes(i) for i in range(1, N_CHUNKS + 1))
    assert path.read_bytes() == expected  # 1, 2, ... 12, not 1, 10, 11, 12, 2
    assert path.parent == cache / "models" and path.name == entry.file_name
    assert seen[-1] == (len(expected), len(expected))  # progress reached 100%
    assert weights.installed_path(entry) == path
    leftovers = [p.name for p in path.parent.iterdir() if ".partial" in p.name]
    assert leftovers == []


def test_later_uses_trust_the_stamp_and_skip_hashing(
    chunks: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, prefix = chunks
    entry = _entry(prefix)
    first = weights.locate(entry, progress=lambda *_: None)
    monkeypatch.setattr(weights, "_hash_file", lambda *_: pytest.fail("re-hashed a ready file"))
    monkeypatch.setattr(weights, "_join", lambda *_: pytest.fail("re-assembled a ready file"))
    assert weights.locate(entry) == first
    # a file changed after its stamp is not trusted
    first.write_bytes(b"GGUF tampered")
    assert weights.installed_path(entry) is None


def test_bad_hash_leaves_no_model_behind(chunks: tuple[Path, str]) -> None:
    cache, prefix = chunks
    entry = _entry(prefix, sha="0" * 64)
    with pytest.raises(LocalModelError, match="sha256") as info:
        weights.assemble(entry, progress=None)
    assert "reinstall" in str(info.value)
    models = cache / "models"
    assert not (models / entry.file_name).exists()
    assert [p for p in models.iterdir() if ".partial" in p.name] == []
    assert weights.installed_path(entry) is None


def test_missing_chunk_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = "fakemissing_"
    _fake_packages(tmp_path, prefix, skip=7)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ANN_CACHE_DIR", str(tmp_path / "cache"))
    entry = _entry(prefix)
    with pytest.raises(LocalModelError, match="1 of 12 chunk packages") as info:
        weights.locate(entry)
    assert f"{prefix}-pkg7" in str(info.value) and entry.install in str(info.value)
    assert not (tmp_path / "cache" / "models" / entry.file_name).exists()


def test_wrong_total_size_is_refused_before_writing(chunks: tuple[Path, str]) -> None:
    cache, prefix = chunks
    entry = _entry(prefix).model_copy(update={"size_bytes": 5})
    with pytest.raises(LocalModelError, match="hold 12,082 bytes, expected 5;"):
        weights.assemble(entry, progress=None)
    assert not any(".partial" in p.name for p in (cache / "models").iterdir())


def test_full_disk_is_one_clear_error(
    chunks: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, prefix = chunks
    entry = _entry(prefix)
    real_join = weights._join

    def full(files: list[Path], out: Path, total: int, progress: Any) -> str:
        real_join(files[:2], out, total, progress)  # some bytes land, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(weights, "_join", full)
    with pytest.raises(LocalModelError, match="not enough disk space") as info:
        weights.assemble(entry, progress=None)
    assert "ANN_CACHE_DIR" in str(info.value)
    assert sorted(p.name for p in (cache / "models").iterdir()) == [entry.file_name + ".lock"]


def _assemble_in_child(site: str, cache: str, prefix: str, out: str) -> None:
    import os

    sys.path.insert(0, site)
    os.environ["ANN_CACHE_DIR"] = cache
    from ann_langgraph.local import weights as w

    path = w.assemble(_entry(prefix), progress=None)
    Path(out).write_text(str(path))


def test_two_processes_assembling_at_once_make_one_correct_file(
    chunks: tuple[Path, str], tmp_path: Path
) -> None:
    cache, prefix = chunks
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"out{i}" for i in range(2)]
    procs = [
        ctx.Process(
            target=_assemble_in_child, args=(str(tmp_path / "site"), str(cache), prefix, str(o))
        )
        for o in outs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    paths = {o.read_text() for o in outs}
    assert len(paths) == 1
    expected = b"".join(_chunk_bytes(i) for i in range(1, N_CHUNKS + 1))
    assert Path(paths.pop()).read_bytes() == expected
    names = sorted(p.name for p in (cache / "models").iterdir())
    entry = _entry(prefix)
    assert names == sorted(
        [entry.file_name, entry.file_name + ".lock", entry.file_name + ".verified"]
    )


def test_model_strings_name_catalogue_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_local_string("local") is None
    assert parse_local_string("local:smollm2") == "smollm2"
    with pytest.raises(UnknownEmbeddedModel, match="local:smollm2"):
        parse_local_string("local:nope")
    with pytest.raises(ModelError, match="unknown embedded model 'nope'"):
        init_model("local:nope")
    tiny = init_model("local:smollm2")
    assert isinstance(tiny, LocalChatModel) and tiny.entry is CATALOGUE["smollm2"]
    assert tiny.max_tokens == CATALOGUE["smollm2"].max_tokens
    monkeypatch.delenv("ANN_LOCAL_MODEL", raising=False)
    default = init_model("local")
    assert isinstance(default, LocalChatModel) and default.entry is CATALOGUE[DEFAULT_ENTRY]
    # the capable model reasons at length and answers structured calls in JSON-schema mode
    assert default.max_tokens == CATALOGUE[DEFAULT_ENTRY].max_tokens > 256
    assert structured_output_method(default) == "json_schema"
    assert structured_output_method(tiny) == "function_calling"
    monkeypatch.setenv("ANN_LOCAL_MODEL", "smollm2")  # a name works as well as a path
    assert init_model("local").entry is CATALOGUE["smollm2"]


def test_ann_models_lists_the_catalogue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ANN_LOCAL_MODEL", raising=False)
    monkeypatch.setenv("ANN_CACHE_DIR", str(tmp_path))  # not assembled there
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in map(json.loads, result.output.splitlines())}
    assert set(rows) == {f"local:{name}" for name in CATALOGUE}
    default = rows[f"local:{DEFAULT_ENTRY}"]
    assert default["default"] and default["licence"] == "Apache-2.0"
    assert default["size_gb"] == 1.12
    assert default["status"] in ("installed (assembled on first use)", "not installed")
    assert not rows["local:smollm2"]["default"]
    bad = CliRunner().invoke(app, ["models", "--prepare", "nope"])
    assert bad.exit_code == 2 and "unknown embedded model" in bad.output
