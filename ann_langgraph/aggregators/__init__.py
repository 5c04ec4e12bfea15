"""Aggregator node templates: how a layer's agents combine into one layer output."""

from .base import LayerContext, LayerInput, LayerOutput, LayerState
from .registry import (
    AggregatorTemplate,
    aggregator_descriptions,
    aggregator_names,
    get_aggregator,
    register_aggregator,
)

__all__ = [
    "AggregatorTemplate",
    "LayerContext",
    "LayerInput",
    "LayerOutput",
    "LayerState",
    "aggregator_descriptions",
    "aggregator_names",
    "get_aggregator",
    "register_aggregator",
]
