"""The backward phase as a LangGraph graph: this module only wires the nodes.

setup -> check_budget -> select_parent -> forward -> global_critic -> local_repair and
reflective_repair (one ``Send`` each per blamed layer) + bootstrap_demos + operator_candidates
+ merge_candidates -> validate_format -> screen_candidates -> evaluate_candidate -> decide ->
momentum -> advance -> check_budget ... until epochs, patience or budget end. Each node is a
small class in the module of its concern (forward, pool, critic, repair, reflect, operators,
validate, screen, candidates, decide, momentum);
state is JSON-friendly so a SQLite checkpointer can resume a killed run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph

from ..executors import Executor
from ..langsmith_io import LangSmithError, LangSmithSession
from ..metrics import Metric, get_metric
from ..models import ModelsArg, init_model, llm_retry_policy, model_label
from ..spec import ModelConfig
from .candidates import EvaluateCandidates
from .config import Budget, OptimizerConfig
from .context import OptimizerContext
from .critic import GlobalCritic
from .decide import Decide
from .forward import Advance, CheckBudget, Forward, Setup
from .momentum import Momentum
from .operators import OperatorCandidates
from .pool import SelectParent
from .reflect import ReflectiveRepair
from .repair import BootstrapDemos, LocalRepair
from .screen import ScreenCandidates
from .state import OptimizerState, paid_so_far
from .validate import ValidateFormat

__all__ = ["Budget", "OptimizerConfig", "OptimizerState", "create_optimizer", "paid_so_far"]


def create_optimizer(
    *,
    metric: Metric | str,
    models: ModelsArg = None,
    optimizer_model: BaseChatModel | Runnable[Any, Any] | str | None = None,
    config: OptimizerConfig | None = None,
    budget: Budget | None = None,
    cache: Any = None,
    prices: dict[str, tuple[float, float]] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    langsmith: LangSmithSession | None = None,
    trace_source: Literal["local", "langsmith"] = "local",
    executor: Executor | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """Build the backward phase as an uncompiled ``StateGraph``.

    Invoke the compiled graph with ``{"spec": spec.model_dump(mode="json"), "train": [...],
    "val": [...]}``; the final state holds the best spec, its validation score, every committed
    version and one history row per step. Compile with a checkpointer to make it resumable.

    ``langsmith``: trace every forward run to this session's project (metadata: run id, phase,
    epoch, step, candidate, example, spec). ``trace_source="langsmith"`` makes the critic read
    each minibatch's execution records back from LangSmith instead of the local recorder
    (falling back to the local ones, noted in the step's ``batch``, if LangSmith fails).
    ``executor``: where every evaluation of the step runs (``ann_langgraph.executors``; the
    critic and repairers always run here); default: this process.
    """
    if trace_source == "langsmith" and langsmith is None:
        raise LangSmithError("trace_source='langsmith' needs a LangSmith session (langsmith=)")
    cfg = config or OptimizerConfig()
    chosen: Runnable[Any, Any] | str | ModelConfig | None = optimizer_model
    if chosen is None:
        chosen = models if isinstance(models, str | BaseChatModel | ModelConfig) else "local"
    opt_model = init_model(chosen) if isinstance(chosen, str | ModelConfig) else chosen
    opt_model = _with_output_cap(opt_model, cfg.max_output_tokens)
    if cache is not None and isinstance(opt_model, BaseChatModel):
        opt_model = opt_model.model_copy(update={"cache": cache})
    ctx = OptimizerContext(
        cfg=cfg,
        budget=budget or Budget(),
        metric=get_metric(metric) if isinstance(metric, str) else metric,
        models=models,
        opt_model=opt_model,
        opt_label=model_label(opt_model),
        cache=cache,
        prices=prices,
        on_event=on_event,
        langsmith=langsmith,
        trace_source=trace_source,
        executor=executor,
    )
    check_budget, forward, critic = CheckBudget(ctx), Forward(ctx), GlobalCritic(ctx)
    validate, advance, screen = ValidateFormat(ctx), Advance(ctx), ScreenCandidates(ctx)

    builder = StateGraph(OptimizerState)
    retry = llm_retry_policy()
    builder.add_node("setup", Setup(ctx))
    builder.add_node("check_budget", check_budget)
    builder.add_node("select_parent", SelectParent(ctx))
    builder.add_node("forward", forward)
    builder.add_node("global_critic", critic, retry_policy=retry)
    # Send payloads are not the state type; the nodes read the keys they were sent.
    builder.add_node("local_repair", cast(Any, LocalRepair(ctx)), retry_policy=retry)
    builder.add_node("reflective_repair", cast(Any, ReflectiveRepair(ctx)), retry_policy=retry)
    builder.add_node("merge_candidates", cast(Any, OperatorCandidates()))
    builder.add_node("bootstrap_demos", cast(Any, BootstrapDemos(ctx)))
    builder.add_node("operator_candidates", cast(Any, OperatorCandidates()))
    builder.add_node("validate_format", validate, defer=True)
    builder.add_node("screen_candidates", screen)
    builder.add_node("evaluate_candidate", EvaluateCandidates(ctx))
    builder.add_node("decide", Decide(ctx))
    builder.add_node("momentum", Momentum(ctx))
    builder.add_node("advance", advance)
    builder.add_edge(START, "setup")
    builder.add_edge("setup", "check_budget")
    builder.add_conditional_edges("check_budget", check_budget.route, ["select_parent", END])
    builder.add_edge("select_parent", "forward")
    builder.add_conditional_edges("forward", forward.route, ["global_critic", "momentum"])
    builder.add_conditional_edges(
        "global_critic",
        critic.route,
        [
            "local_repair",
            "reflective_repair",
            "bootstrap_demos",
            "operator_candidates",
            "merge_candidates",
            "momentum",
        ],
    )
    builder.add_edge("local_repair", "validate_format")
    builder.add_edge("reflective_repair", "validate_format")
    builder.add_edge("merge_candidates", "validate_format")
    builder.add_edge("bootstrap_demos", "validate_format")
    builder.add_edge("operator_candidates", "validate_format")
    builder.add_conditional_edges(
        "validate_format", validate.route, ["screen_candidates", "momentum"]
    )
    builder.add_conditional_edges(
        "screen_candidates", screen.route, ["evaluate_candidate", "momentum"]
    )
    builder.add_edge("evaluate_candidate", "decide")
    builder.add_edge("decide", "momentum")
    builder.add_edge("momentum", "advance")
    builder.add_conditional_edges("advance", advance.route, ["check_budget", END])
    return builder


def _with_output_cap(model: Runnable[Any, Any], cap: int | None) -> Runnable[Any, Any]:
    """The optimizer model with room for its structured answers (see ``max_output_tokens``)."""
    from ..local import LocalChatModel

    if isinstance(model, LocalChatModel):
        entry = model.entry
        cap = cap or (entry.optimizer_max_tokens if entry is not None else 1024)
        return model.model_copy(update={"max_tokens": cap})
    if cap and isinstance(model, BaseChatModel):
        for field in ("max_tokens", "max_output_tokens"):
            if field in type(model).model_fields:
                return model.model_copy(update={field: cap})
    return model
