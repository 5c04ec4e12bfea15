"""The backward phase as a LangGraph graph.

forward -> global_critic -> local_repair (one ``Send`` per blamed layer) -> validate_format
-> evaluate_candidate -> decide -> momentum -> advance -> forward ... until epochs, patience or
budget end. State is JSON-friendly so a SQLite checkpointer can resume a killed run.
"""

from __future__ import annotations

import logging
import math
import operator
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypedDict, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send, interrupt
from pydantic import BaseModel, ConfigDict, Field

from ..compile import compile_graph
from ..evaluate import default_concurrency, evaluate
from ..langsmith_io import LangSmithError, LangSmithSession
from ..metrics import Metric, get_metric
from ..models import ModelsArg, init_model, llm_retry_policy, model_label
from ..patch import PatchError, apply_patch
from ..pricing import cost_usd, price_for
from ..spec import GraphSpec, ModelConfig, SpecError
from . import prompts
from .momentum import momentum_summary, smoothed_layer_gradient
from .schemas import critic_schema, layer_patch_schema, to_patch
from .structured import invoke_structured
from .validate import placeholder_reason

__all__ = ["Budget", "OptimizerConfig", "OptimizerState", "create_optimizer"]

logger = logging.getLogger(__name__)


class Budget(BaseModel):
    """Hard caps on what training may spend; checked at every step boundary."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=0)
    max_calls: int | None = Field(default=None, ge=0)
    max_usd: float | None = Field(default=None, ge=0)

    def exceeded(self, usage: dict[str, Any]) -> str | None:
        tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"token budget reached ({tokens} >= {self.max_tokens})"
        if self.max_calls is not None and int(usage.get("calls", 0)) >= self.max_calls:
            return f"call budget reached ({usage.get('calls')} >= {self.max_calls})"
        if self.max_usd is not None and float(usage.get("cost_usd", 0.0)) >= self.max_usd:
            return f"cost budget reached (${usage.get('cost_usd', 0):.4f} >= ${self.max_usd})"
        return None


class OptimizerConfig(BaseModel):
    """Knobs of the backward phase (all recorded in the history)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=8, ge=1)
    seed: int = 0
    min_delta: float = Field(default=0.0, ge=0.0)
    paired_test: bool = False
    alpha: float = Field(default=0.1, gt=0, lt=1)
    threshold: float = Field(
        default=1.0,
        description="Run the backward step when the minibatch "
        "mean is below this (default: any failure).",
    )
    patience: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many epochs without a committed improvement.",
    )
    max_blamed_layers: int = Field(default=3, ge=1)
    # a critic that blames no layer, or gives no parseable answer, while examples fail (small
    # models do both often) wastes the step; blame the output layer with the metric's feedback
    fallback_blame: bool = True
    local_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of a repairer's "
        "evidence budget given to the global critique (rest: the layer's "
        "own records).",
    )
    momentum_beta: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Decay of a layer's earlier critiques when smoothing its gradient.",
    )
    evidence_chars: int = Field(default=6000, ge=500, description="Trace budget per prompt.")
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Examples evaluated at once (default: 1 on the embedded model, else 4).",
    )
    timeout_s: float = Field(default=300.0, gt=0)
    structured_retries: int = Field(default=1, ge=0)
    review: bool = False


def _add_usage(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(left or {})
    for key, value in (right or {}).items():
        out[key] = out.get(key, 0) + value
    return out


def _proposals(left: list[dict[str, Any]] | None, right: Any) -> list[dict[str, Any]]:
    """Reducer: ``"reset"`` clears (each step), lists append (one per repairer)."""
    if right == "reset":
        return []
    return [*(left or []), *(right or [])]


class OptimizerState(TypedDict, total=False):
    # inputs
    spec: dict[str, Any]
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    # progress
    version: int
    best_score: float
    best_val: dict[str, float]
    epoch: int
    step: int
    global_step: int
    batches: list[list[str]]
    epochs_without_gain: int
    # one step's work
    batch: dict[str, Any]
    gradient: dict[str, Any]
    proposals: Annotated[list[dict[str, Any]], _proposals]
    candidates: list[dict[str, Any]]
    decision: dict[str, Any]
    step_usage_start: dict[str, Any]
    # logs
    history: Annotated[list[dict[str, Any]], operator.add]
    versions: Annotated[list[dict[str, Any]], operator.add]
    usage: Annotated[dict[str, Any], _add_usage]
    stop_reason: str
    # when this run began (time.time()); with a cache, its ledger since then counts as paid
    ledger_since: float


def _usage_of(report: Any) -> dict[str, Any]:
    """What an evaluation paid for: cached calls and their tokens are free."""
    return {
        "calls": report.calls - report.cached_calls,
        "cached_calls": report.cached_calls,
        "input_tokens": report.input_tokens - report.cached_input_tokens,
        "output_tokens": report.output_tokens - report.cached_output_tokens,
        "cost_usd": report.cost_usd,
    }


def paid_so_far(
    cache: Any, state: Mapping[str, Any], *, prices: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run's usage, raised to what the cache's ledger says was paid since ``ledger_since``.

    A step killed mid-way never reaches the checkpoint's ``usage``, yet its finished calls were
    paid (and cached, so the resume replays them for free): the ledger still counts them.
    """
    usage = dict(state.get("usage") or {})
    since = state.get("ledger_since")
    if since is None or cache is None or not hasattr(cache, "spent"):
        return usage
    ledger = cache.spent(since=since)
    for key in ("calls", "input_tokens", "output_tokens"):
        usage[key] = max(int(usage.get(key, 0)), int(ledger[key]))
    ledger_cost = 0.0
    for model, row in ledger["by_model"].items():
        price = price_for(model, prices) if model else None
        if price is not None:
            ledger_cost += (row["input_tokens"] * price[0] + row["output_tokens"] * price[1]) / 1e6
    usage["cost_usd"] = max(float(usage.get("cost_usd", 0.0)), ledger_cost)
    return usage


def _compact_records(records: Sequence[Any], chars: int = 1500) -> list[dict[str, Any]]:
    out = []
    for r in records:
        out.append(
            {
                "layer": r.layer,
                "agent_id": r.agent_id,
                "kind": r.kind,
                "aggregator": r.aggregator,
                "example_id": r.example_id,
                "output": prompts.clip(r.output, chars),
                "error": r.error,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "sample": r.sample,
            }
        )
    return out


def _evidence_records(records: list[dict[str, Any]], example_id: str) -> list[dict[str, Any]]:
    """One example's records as the critic and the repairers are shown them.

    A model call (or aggregation step) that failed and was then retried successfully, i.e. a
    later record of the same layer, agent, kind and sample has no error, is left out: a timeout
    or a rate limit the retry policy got past says nothing about the spec, and showing it would
    make the optimizer's prompt (so its answer, and the response cache's key) depend on
    transient faults, so a re-run would not be free and reproducible. Tool errors stay (an
    agent's bad tool call is its behaviour); the full records are in ``records/``.
    """
    mine = [r for r in records if r["example_id"] == example_id]

    def slot(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["layer"], r["agent_id"], r["kind"], r.get("sample", 0))

    recovered: set[int] = set()
    for i, r in enumerate(mine):
        if (r["error"] and r["kind"] != "tool") and any(
            not later["error"] and slot(later) == slot(r) for later in mine[i + 1 :]
        ):
            recovered.add(i)
    return [r for i, r in enumerate(mine) if i not in recovered]


def _sign_test_p(diffs: list[float]) -> float:
    """One-sided exact sign test: P(at least this many wins | no difference)."""
    wins = sum(1 for d in diffs if d > 0)
    n = sum(1 for d in diffs if d != 0)
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


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
) -> StateGraph[Any, Any, Any, Any]:
    """Build the backward phase as an uncompiled ``StateGraph``.

    Invoke the compiled graph with ``{"spec": spec.model_dump(mode="json"), "train": [...],
    "val": [...]}``; the final state holds the best spec, its validation score, every committed
    version and one history row per step. Compile with a checkpointer to make it resumable.

    ``langsmith``: trace every forward run to this session's project (metadata: run id, phase,
    epoch, step, candidate, example, spec). ``trace_source="langsmith"`` makes the critic read
    each minibatch's execution records back from LangSmith instead of the local recorder
    (falling back to the local ones, noted in the step's ``batch``, if LangSmith fails).
    """
    if trace_source == "langsmith" and langsmith is None:
        raise LangSmithError("trace_source='langsmith' needs a LangSmith session (langsmith=)")
    cfg = config or OptimizerConfig()
    cap = budget or Budget()
    metric_fn = get_metric(metric) if isinstance(metric, str) else metric
    opt_model: Runnable[Any, Any]
    chosen: Runnable[Any, Any] | str | ModelConfig | None = optimizer_model
    if chosen is None:
        chosen = models if isinstance(models, str | BaseChatModel | ModelConfig) else "local"
    opt_model = init_model(chosen) if isinstance(chosen, str | ModelConfig) else chosen
    if cache is not None and isinstance(opt_model, BaseChatModel):
        opt_model = opt_model.model_copy(update={"cache": cache})
    opt_label = model_label(opt_model)

    def emit(kind: str, **data: Any) -> None:
        if on_event is not None:
            on_event(kind, data)

    def run_eval(spec: GraphSpec, examples: list[dict[str, Any]], **metadata: Any) -> Any:
        return evaluate(
            spec,
            examples,
            metric_fn,
            models=models,
            concurrency=cfg.concurrency or default_concurrency(spec, models, otherwise=4),
            timeout_s=cfg.timeout_s,
            cache=cache,
            progress=False,
            metadata=metadata,
            prices=prices,
            langsmith=langsmith,
        )

    def llm_usage(raw_usage: dict[str, int]) -> dict[str, Any]:
        tin, tout = raw_usage.get("input_tokens", 0), raw_usage.get("output_tokens", 0)
        return {
            "calls": raw_usage.get("calls", 0),
            "cached_calls": raw_usage.get("cached_calls", 0),
            "input_tokens": tin,
            "output_tokens": tout,
            "cost_usd": cost_usd(opt_label, tin, tout, prices=prices),
        }

    # -- nodes ------------------------------------------------------------------------------

    def setup(state: OptimizerState) -> dict[str, Any]:
        spec = GraphSpec.model_validate(state["spec"])
        update: dict[str, Any] = {}
        if "version" not in state:
            if not state.get("train") or not state.get("val"):
                raise ValueError("the optimizer needs non-empty 'train' and 'val' example lists")
            report = run_eval(spec, state["val"], ann_phase="baseline")
            update.update(
                version=0,
                best_score=report.mean,
                epoch=0,
                step=0,
                global_step=0,
                epochs_without_gain=0,
                best_val={r.id: r.score for r in report.results},
                versions=[
                    {
                        "version": 0,
                        "parent": None,
                        "spec": state["spec"],
                        "patch": None,
                        "rationale": "starting spec",
                        "val_score": report.mean,
                        "global_step": 0,
                    }
                ],
                usage=_usage_of(report),
            )
            emit("baseline", score=report.mean, n=report.n)
        if not state.get("batches"):
            update["batches"] = _batches(state, update.get("epoch", state.get("epoch", 0)))
        return update

    def _batches(state: OptimizerState, epoch: int) -> list[list[str]]:
        ids = [str(ex.get("id", i)) for i, ex in enumerate(state["train"])]
        random.Random(cfg.seed * 1000 + epoch).shuffle(ids)
        return [ids[i : i + cfg.batch_size] for i in range(0, len(ids), cfg.batch_size)]

    def check_budget(state: OptimizerState) -> dict[str, Any]:
        reason = cap.exceeded(paid_so_far(cache, state, prices=prices))
        return (
            {"stop_reason": reason, "step_usage_start": dict(state.get("usage") or {})}
            if reason
            else {
                "step_usage_start": dict(state.get("usage") or {}),
                "proposals": "reset",
                "candidates": [],
                "gradient": {},
                "decision": {},
            }
        )

    def after_budget(state: OptimizerState) -> str:
        return END if state.get("stop_reason") else "forward"

    def forward(state: OptimizerState) -> dict[str, Any]:
        spec = GraphSpec.model_validate(state["spec"])
        wanted = state["batches"][state["step"]]
        by_id = {str(ex.get("id", i)): ex for i, ex in enumerate(state["train"])}
        examples = [by_id[i] for i in wanted]
        eval_id = uuid.uuid4().hex
        report = run_eval(
            spec,
            examples,
            ann_phase="forward",
            ann_epoch=state["epoch"],
            ann_step=state["step"],
            ann_eval_id=eval_id,
        )
        records, source = list(report.records), "local"
        if trace_source == "langsmith" and langsmith is not None:
            try:
                records = langsmith.trace_source(
                    ann_eval_id=eval_id, expected_roots=len(examples)
                ).records(example_ids=[r.id for r in report.results])
                source = "langsmith"
            except LangSmithError as exc:
                source = f"local (LangSmith failed: {exc})"
                logger.warning("reading the forward pass from LangSmith failed: %s", exc)
        batch = {
            "mean": report.mean,
            "results": [r.model_dump(mode="json") for r in report.results],
            "records": _compact_records(records),
            "trace_source": source,
        }
        emit("forward", epoch=state["epoch"], step=state["step"], mean=report.mean)
        return {"batch": batch, "usage": _usage_of(report)}

    def after_forward(state: OptimizerState) -> str:
        return "global_critic" if state["batch"]["mean"] < cfg.threshold else "momentum"

    def global_critic(state: OptimizerState, config: RunnableConfig) -> dict[str, Any]:
        spec = GraphSpec.model_validate(state["spec"])
        results = state["batch"]["results"]
        records = state["batch"]["records"]
        failing = [r for r in results if r["score"] < 1.0]
        passing = [r for r in results if r["score"] >= 1.0]
        budget_chars = cfg.evidence_chars
        per_fail = max(400, int(budget_chars * 0.8) // max(1, len(failing)))
        per_pass = max(300, int(budget_chars * 0.2) // max(1, min(2, len(passing))))
        fail_text = [
            prompts.example_evidence(r, _evidence_records(records, r["id"]), chars=per_fail)
            for r in failing
        ]
        pass_text = [
            prompts.example_evidence(r, _evidence_records(records, r["id"]), chars=per_pass)
            for r in passing[:2]
        ]
        messages = [
            SystemMessage(prompts.CRITIC_SYSTEM),
            HumanMessage(
                prompts.critic_prompt(
                    spec,
                    fail_text,
                    pass_text,
                    momentum_summary(state.get("history") or []),
                    mean=state["batch"]["mean"],
                )
            ),
        ]
        result = invoke_structured(
            opt_model, critic_schema(spec), messages, config, retries=cfg.structured_retries
        )
        gradient: dict[str, Any] = {
            "summary": "",
            "blame": [],
            "error": result.error,
            "attempts": result.attempts,
        }
        if result.value is not None:
            value = result.value.model_dump(mode="json")
            seen: set[str] = set()
            for blame in value.get("blame", []):
                if blame["layer"] not in seen and len(seen) < cfg.max_blamed_layers:
                    seen.add(blame["layer"])
                    gradient["blame"].append(blame)
            gradient["summary"] = value.get("summary", "")
        if not gradient["blame"] and failing and cfg.fallback_blame:
            # A small critic often names no layer, or answers with no parseable tool call; the
            # metric's feedback still says what is wrong with the final answer.
            feedback = next((r.get("feedback") for r in failing if r.get("feedback")), "")
            why = "named no layer" if result.value is not None else "gave no usable answer"
            gradient["blame"] = [
                {
                    "layer": spec.layers[-1].name,
                    "reason": f"the critic {why}; this layer writes the final answer, which "
                    f"the metric rejects: {feedback}".strip(),
                }
            ]
            gradient["fallback"] = True
        if result.value is not None and not gradient["blame"]:
            gradient["error"] = "the critic blamed no layer"
        emit("critic", blame=[b["layer"] for b in gradient["blame"]], error=gradient["error"])
        return {"gradient": gradient, "usage": llm_usage(result.usage)}

    def after_critic(state: OptimizerState) -> list[Send] | str:
        blame = (state.get("gradient") or {}).get("blame") or []
        if not blame:
            return "momentum"
        keep = ("spec", "batch", "gradient", "history")
        return [
            Send("local_repair", {**{k: state.get(k) for k in keep}, "target": b}) for b in blame
        ]

    def local_repair(payload: Any, config: RunnableConfig) -> dict[str, Any]:
        spec = GraphSpec.model_validate(payload["spec"])
        target = payload["target"]
        layer = target["layer"]
        history = payload.get("history") or []
        smoothed = smoothed_layer_gradient(history, layer, target["reason"], beta=cfg.momentum_beta)
        global_chars = int(cfg.evidence_chars * cfg.local_weight)
        layer_chars = cfg.evidence_chars - global_chars
        gradient = prompts.clip(
            f"{smoothed}\nOverall pattern: {payload['gradient'].get('summary', '')}",
            max(200, global_chars),
        )
        results = [r for r in payload["batch"]["results"] if r["score"] < 1.0]
        records = payload["batch"]["records"]
        evidence = []
        if layer_chars > 0 and results:
            per = max(300, layer_chars // len(results))
            evidence = [
                prompts.example_evidence(
                    r, _evidence_records(records, r["id"]), chars=per, layer=layer
                )
                for r in results
            ]
        messages = [
            SystemMessage(prompts.REPAIR_SYSTEM),
            HumanMessage(
                prompts.repair_prompt(spec, layer, gradient, evidence, momentum_summary(history))
            ),
        ]
        result = invoke_structured(
            opt_model,
            layer_patch_schema(spec, layer),
            messages,
            config,
            retries=cfg.structured_retries,
        )
        proposal: dict[str, Any] = {
            "layer": layer,
            "patch": None,
            "error": result.error,
            "attempts": result.attempts,
        }
        if result.value is not None:
            try:
                proposal["patch"] = to_patch(result.value).model_dump(mode="json")
            except ValueError as exc:
                proposal["error"] = f"not a valid patch: {exc}"
        return {"proposals": [proposal], "usage": llm_usage(result.usage)}

    def validate_format(state: OptimizerState) -> dict[str, Any]:
        spec = GraphSpec.model_validate(state["spec"])
        failing = [r["id"] for r in state["batch"]["results"] if r["score"] < 1.0]
        by_id = {str(ex.get("id", i)): ex for i, ex in enumerate(state["train"])}
        probe = by_id.get(failing[0]) if failing else None
        probe = probe or state["train"][0]
        candidates = []
        usage: dict[str, Any] = {}
        for index, prop in enumerate(state.get("proposals") or []):
            cand: dict[str, Any] = {
                "layer": prop["layer"],
                "patch": prop.get("patch"),
                "valid": False,
                "reason": prop.get("error"),
            }
            if prop.get("patch") is None:
                cand["reason"] = f"no patch: {prop.get('error')}"
                candidates.append(cand)
                continue
            placeholder = placeholder_reason(prop["patch"])
            if placeholder:
                cand["reason"] = placeholder
                candidates.append(cand)
                continue
            try:
                new_spec = apply_patch(spec, prop["patch"])
                compile_graph(new_spec, models=models)
            except (PatchError, SpecError) as exc:
                cand["reason"] = str(exc)
                candidates.append(cand)
                continue
            if new_spec.fingerprint == spec.fingerprint:
                cand["reason"] = "the patch changes nothing"
                candidates.append(cand)
                continue
            dry = run_eval(
                new_spec,
                [probe],
                ann_phase="dry_run",
                ann_epoch=state["epoch"],
                ann_step=state["step"],
                ann_candidate=f"{state['global_step']}.{index}",
            )
            usage = _add_usage(usage, _usage_of(dry))
            if dry.results[0].error:
                cand["reason"] = f"dry run failed: {dry.results[0].error}"
            else:
                cand.update(valid=True, reason=None, spec=new_spec.model_dump(mode="json"))
            candidates.append(cand)
        emit("validated", valid=sum(c["valid"] for c in candidates), total=len(candidates))
        return {"candidates": candidates, "usage": usage}

    def after_validate(state: OptimizerState) -> str:
        return "evaluate_candidate" if any(c["valid"] for c in state["candidates"]) else "momentum"

    def evaluate_candidate(state: OptimizerState) -> dict[str, Any]:
        out = []
        usage: dict[str, Any] = {}
        for index, cand in enumerate(state["candidates"]):
            if cand["valid"]:
                report = run_eval(
                    GraphSpec.model_validate(cand["spec"]),
                    state["val"],
                    ann_phase="validate",
                    ann_epoch=state["epoch"],
                    ann_step=state["step"],
                    ann_candidate=f"{state['global_step']}.{index}",
                )
                usage = _add_usage(usage, _usage_of(report))
                cand = {
                    **cand,
                    "val_score": report.mean,
                    "val": {r.id: r.score for r in report.results},
                }
                emit("candidate", layer=cand["layer"], score=report.mean, best=state["best_score"])
            out.append(cand)
        return {"candidates": out, "usage": usage}

    def decide(state: OptimizerState) -> dict[str, Any]:
        best = state["best_score"]
        valid = [c for c in state["candidates"] if c["valid"]]
        top = max(valid, key=lambda c: c["val_score"])
        delta = top["val_score"] - best
        accept = delta > 0 and delta >= cfg.min_delta
        p_value = None
        if accept and cfg.paired_test:
            diffs = [top["val"].get(k, 0.0) - v for k, v in state["best_val"].items()]
            p_value = _sign_test_p(diffs)
            accept = p_value <= cfg.alpha
        if accept and cfg.review:
            answer = interrupt(
                {
                    "question": "Commit this patch?",
                    "layer": top["layer"],
                    "patch": top["patch"],
                    "val_score": top["val_score"],
                    "best": best,
                }
            )
            accept, top = _review(answer, top, state)
        candidates = [
            {
                **{k: v for k, v in c.items() if k not in ("spec", "val")},
                "before": best,
                "accepted": accept and c is top,
            }
            for c in state["candidates"]
        ]
        decision = {
            "accepted": accept,
            "layer": top["layer"],
            "delta": delta,
            "p_value": p_value,
            "best_before": best,
        }
        update: dict[str, Any] = {"candidates": candidates, "decision": decision}
        if accept:
            version = state["version"] + 1
            update.update(
                spec=top["spec"],
                version=version,
                best_score=top["val_score"],
                best_val=top["val"],
                versions=[
                    {
                        "version": version,
                        "parent": state["version"],
                        "spec": top["spec"],
                        "patch": top["patch"],
                        "rationale": (top["patch"] or {}).get("rationale", ""),
                        "val_score": top["val_score"],
                        "global_step": state["global_step"],
                    }
                ],
            )
            decision["version"] = version
        emit("decision", **decision)
        return update

    def momentum(state: OptimizerState) -> dict[str, Any]:
        usage = state.get("usage") or {}
        start = state.get("step_usage_start") or {}
        spent = {k: usage.get(k, 0) - start.get(k, 0) for k in usage}
        batch = state.get("batch") or {}
        skipped = batch.get("mean", 0.0) >= cfg.threshold
        candidates = state.get("candidates") or []
        if not candidates and state.get("proposals"):
            candidates = [
                {
                    "layer": p["layer"],
                    "patch": p.get("patch"),
                    "valid": False,
                    "reason": p.get("error"),
                }
                for p in state["proposals"]
            ]
        row = {
            "epoch": state["epoch"],
            "step": state["step"],
            "global_step": state["global_step"],
            "skipped": skipped,
            "minibatch": batch.get("mean"),
            "trace_source": batch.get("trace_source"),
            "examples": [r["id"] for r in batch.get("results", [])],
            "gradient": state.get("gradient") or {},
            "candidates": [
                {k: v for k, v in c.items() if k not in ("spec", "val")} for c in candidates
            ],
            "decision": state.get("decision") or {},
            "best_score": state["best_score"],
            "version": state["version"],
            "usage": spent,
            "knobs": {
                "local_weight": cfg.local_weight,
                "momentum_beta": cfg.momentum_beta,
                "threshold": cfg.threshold,
                "min_delta": cfg.min_delta,
            },
        }
        return {"history": [row]}

    def advance(state: OptimizerState) -> dict[str, Any]:
        step, epoch = state["step"] + 1, state["epoch"]
        update: dict[str, Any] = {"global_step": state["global_step"] + 1}
        accepted_this_epoch = any(
            row["decision"].get("accepted")
            for row in state.get("history", [])
            if row["epoch"] == epoch
        )
        if step >= len(state["batches"]):
            without = 0 if accepted_this_epoch else state.get("epochs_without_gain", 0) + 1
            epoch, step = epoch + 1, 0
            update.update(epochs_without_gain=without, epoch=epoch)
            if epoch >= cfg.epochs:
                update["stop_reason"] = "epochs done"
            elif cfg.patience is not None and without >= cfg.patience:
                update["stop_reason"] = f"no improvement for {without} epochs"
            else:
                update["batches"] = _batches(state, epoch)
        update["step"] = step
        return update

    def after_advance(state: OptimizerState) -> str:
        return END if state.get("stop_reason") else "check_budget"

    builder = StateGraph(OptimizerState)
    retry = llm_retry_policy()
    builder.add_node("setup", setup)
    builder.add_node("check_budget", check_budget)
    builder.add_node("forward", forward)
    builder.add_node("global_critic", global_critic, retry_policy=retry)
    # Send payloads are not the state type; the node reads the keys it was sent.
    builder.add_node("local_repair", cast(Any, local_repair), retry_policy=retry)
    builder.add_node("validate_format", validate_format, defer=True)
    builder.add_node("evaluate_candidate", evaluate_candidate)
    builder.add_node("decide", decide)
    builder.add_node("momentum", momentum)
    builder.add_node("advance", advance)
    builder.add_edge(START, "setup")
    builder.add_edge("setup", "check_budget")
    builder.add_conditional_edges("check_budget", after_budget, ["forward", END])
    builder.add_conditional_edges("forward", after_forward, ["global_critic", "momentum"])
    builder.add_conditional_edges("global_critic", after_critic, ["local_repair", "momentum"])
    builder.add_edge("local_repair", "validate_format")
    builder.add_conditional_edges(
        "validate_format", after_validate, ["evaluate_candidate", "momentum"]
    )
    builder.add_edge("evaluate_candidate", "decide")
    builder.add_edge("decide", "momentum")
    builder.add_edge("momentum", "advance")
    builder.add_conditional_edges("advance", after_advance, ["check_budget", END])
    return builder


def _review(answer: Any, top: dict[str, Any], state: OptimizerState) -> tuple[bool, dict[str, Any]]:
    """Interpret a person's answer to the review interrupt: approve, reject, or an edited patch."""
    if isinstance(answer, bool):
        return answer, top
    if isinstance(answer, str):
        return answer.strip().lower() in ("y", "yes", "approve", "accept", "ok"), top
    if isinstance(answer, dict) and "patch" in answer:
        spec = GraphSpec.model_validate(state["spec"])
        edited = apply_patch(spec, answer["patch"])
        return True, {**top, "patch": answer["patch"], "spec": edited.model_dump(mode="json")}
    return False, top
