"""The backward phase: a LangGraph graph that critiques, patches and validates a spec."""

from .config import Budget, OptimizerConfig
from .graph import create_optimizer
from .state import OptimizerState

__all__ = ["Budget", "OptimizerConfig", "OptimizerState", "create_optimizer"]
