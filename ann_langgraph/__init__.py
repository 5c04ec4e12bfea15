"""ann-langgraph: Agentic Neural Networks for LangGraph.

A readable graph spec compiles to a LangGraph ``StateGraph`` with one subgraph per layer.
"""

from .aggregators import aggregator_descriptions, aggregator_names, register_aggregator
from .answers import extract_answer
from .cache import SQLiteLLMCache
from .compile import build_graph, compile_graph
from .evaluate import EvalReport, aevaluate, evaluate, load_dataset
from .metrics import Score, get_metric, metric_names, register_metric
from .models import ModelError, register_model
from .patch import Patch, PatchError, apply_patch
from .spec import AgentSpec, GraphSpec, LayerSpec, SpecError, load_spec, parse_spec, save_spec
from .tools import register_tool, tool_names
from .tracing import ExecutionRecord, LocalTraceSource, TraceRecorder, load_records, save_records

__all__ = [
    "AgentSpec",
    "EvalReport",
    "ExecutionRecord",
    "GraphSpec",
    "LayerSpec",
    "LocalTraceSource",
    "ModelError",
    "Patch",
    "PatchError",
    "SQLiteLLMCache",
    "Score",
    "SpecError",
    "TraceRecorder",
    "aevaluate",
    "aggregator_descriptions",
    "aggregator_names",
    "apply_patch",
    "build_graph",
    "compile_graph",
    "evaluate",
    "extract_answer",
    "get_metric",
    "load_dataset",
    "load_records",
    "load_spec",
    "metric_names",
    "parse_spec",
    "register_aggregator",
    "register_metric",
    "register_model",
    "register_tool",
    "save_records",
    "save_spec",
    "tool_names",
]

__version__ = "0.1.0"
