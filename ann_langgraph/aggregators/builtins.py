"""Registers the built-in aggregator templates."""

from __future__ import annotations

from . import (
    debate,
    execute_code,
    refine,
    router,
    sequential,
    test_revise,
    tool_pipeline,
    vote,
)
from .registry import register_aggregator

register_aggregator(
    "sequential_cot", sequential.build_sequential, description=sequential.DESCRIPTION
)
register_aggregator("parallel_vote", vote.build_vote, description=vote.DESCRIPTION)
register_aggregator(
    "tool_pipeline",
    tool_pipeline.build_tool_pipeline,
    description=tool_pipeline.DESCRIPTION,
    uses_tools=True,
)
register_aggregator("debate", debate.build_debate, description=debate.DESCRIPTION)
register_aggregator("self_refine", refine.build_self_refine, description=refine.DESCRIPTION)
register_aggregator("dynamic", router.build_dynamic, description=router.DESCRIPTION)
register_aggregator(
    "test_revise", test_revise.build_test_revise, description=test_revise.DESCRIPTION
)
register_aggregator(
    "execute_code", execute_code.build_execute_code, description=execute_code.DESCRIPTION
)
