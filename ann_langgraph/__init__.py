"""ann-langgraph: Agentic Neural Networks for LangGraph.

A readable graph spec compiles to a LangGraph ``StateGraph`` with one subgraph per layer.
"""

from .aggregators import aggregator_descriptions, aggregator_names, register_aggregator
from .answers import extract_answer
from .cache import SQLiteLLMCache
from .compile import build_graph, compile_graph
from .datasets import load_dataset
from .evaluate import EvalReport, aevaluate, evaluate
from .metrics import Score, get_metric, metric_names, register_metric
from .models import ModelError, init_model, register_model
from .node import as_node
from .optimize import Budget, OptimizerConfig, create_optimizer
from .patch import Patch, PatchError, apply_patch
from .spec import (
    AgentSpec,
    GraphSpec,
    LayerSpec,
    ModelConfig,
    SpecError,
    load_spec,
    parse_spec,
    save_spec,
)
from .tools import register_tool, tool_names
from .tracing import ExecutionRecord, LocalTraceSource, TraceRecorder, load_records, save_records
from .train import TrainResult, train

__all__ = [
    "AgentSpec",
    "Budget",
    "EvalReport",
    "ExecutionRecord",
    "GraphSpec",
    "LayerSpec",
    "LocalTraceSource",
    "ModelConfig",
    "ModelError",
    "OptimizerConfig",
    "Patch",
    "PatchError",
    "SQLiteLLMCache",
    "Score",
    "SpecError",
    "TraceRecorder",
    "TrainResult",
    "aevaluate",
    "aggregator_descriptions",
    "aggregator_names",
    "apply_patch",
    "as_node",
    "build_graph",
    "compile_graph",
    "create_optimizer",
    "evaluate",
    "extract_answer",
    "get_metric",
    "init_model",
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
    "train",
]

__version__ = "0.1.0"
