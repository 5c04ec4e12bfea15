"""The embedded default model: a catalogue of GGUF models served by llama.cpp on 127.0.0.1.

``"local"`` is the catalogue's default entry (Qwen2.5-Coder-1.5B-Instruct); ``"local:NAME"``
names another (``local:smollm2``, the tiny model the test suite uses); ``ANN_LOCAL_MODEL``
overrides ``"local"`` with a catalogue name or a path to any GGUF. Parts, one concept each:
``catalogue`` (entries, names), ``weights`` (locate or assemble a file), ``engine`` (build and
find llama-server), ``slots`` (threads, parallel slots, the request gate), ``launch`` (what
starting a process needs: fallback, watchdog, ports, log reading), ``server`` (the child
process), ``registry`` (one server per model file per process, its clients), ``protocol`` (how
a call with tools or a schema becomes server requests), ``chat`` (the LangChain chat model).
"""

from __future__ import annotations

from .catalogue import (
    CATALOGUE,
    DEFAULT_ENTRY,
    ENV_MODEL,
    EmbeddedModel,
    UnknownEmbeddedModel,
    entry_for,
    is_local_string,
    parse_local_string,
)
from .chat import DEFAULT_MAX_TOKENS, LocalChatModel, is_local_model, local_chat_model
from .errors import LocalModelError, ModelLoadError
from .registry import get_local_server, shutdown_local_server
from .server import LocalServer
from .slots import DEFAULT_N_CTX, ENV_THREADS
from .weights import ENV_CACHE_DIR, cache_dir, find_gguf, installed_path, locate

__all__ = [
    "CATALOGUE",
    "DEFAULT_ENTRY",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_N_CTX",
    "ENV_CACHE_DIR",
    "ENV_MODEL",
    "ENV_THREADS",
    "EmbeddedModel",
    "LocalChatModel",
    "LocalModelError",
    "LocalServer",
    "ModelLoadError",
    "UnknownEmbeddedModel",
    "cache_dir",
    "entry_for",
    "find_gguf",
    "get_local_server",
    "installed_path",
    "is_local_model",
    "is_local_string",
    "local_chat_model",
    "locate",
    "parse_local_string",
    "shutdown_local_server",
]
