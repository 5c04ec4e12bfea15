"""ann-langgraph: Agentic Neural Networks for LangGraph.

A readable graph spec compiles to a LangGraph ``StateGraph`` with one subgraph per layer.
"""

from .aggregators import aggregator_descriptions, aggregator_names, register_aggregator
from .answers import extract_answer
from .compile import build_graph, compile_graph
from .models import ModelError, register_model
from .patch import Patch, PatchError, apply_patch
from .spec import AgentSpec, GraphSpec, LayerSpec, SpecError, load_spec, parse_spec, save_spec
from .tools import register_tool, tool_names
from .tracing import ExecutionRecord, LocalTraceSource, TraceRecorder, load_records, save_records

__all__ = [
    "AgentSpec",
    "ExecutionRecord",
    "GraphSpec",
    "LayerSpec",
    "LocalTraceSource",
    "ModelError",
    "Patch",
    "PatchError",
    "SpecError",
    "TraceRecorder",
    "aggregator_descriptions",
    "aggregator_names",
    "apply_patch",
    "build_graph",
    "compile_graph",
    "extract_answer",
    "load_records",
    "load_spec",
    "parse_spec",
    "register_aggregator",
    "register_model",
    "register_tool",
    "save_records",
    "save_spec",
    "tool_names",
]

__version__ = "0.1.0"
