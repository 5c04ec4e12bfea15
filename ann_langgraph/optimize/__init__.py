"""The backward phase: a LangGraph graph that critiques, patches and validates a spec."""

from .graph import Budget, OptimizerConfig, OptimizerState, create_optimizer

__all__ = ["Budget", "OptimizerConfig", "OptimizerState", "create_optimizer"]
