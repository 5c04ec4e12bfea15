"""Optional DSPy baseline: a ``dspy.ChainOfThought`` program compiled by a DSPy optimizer.

Needs the ``dspy`` extra (``pip install -e '.[dspy]'``: dspy + optuna, which MIPROv2 needs).
The program talks to the same model endpoint as the ANN methods: for ``local`` that is the
embedded llama.cpp server (it speaks the OpenAI protocol, ``openai/<alias>`` at its ``/v1``);
``provider:name`` strings become LiteLLM's ``provider/name``. It is compiled on the same
train/val splits and scored with the benchmark's own metric on the same evaluation examples;
tokens come from DSPy's LM history (every call's ``usage``).

``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set before DSPy (LiteLLM) is imported, because LiteLLM
otherwise tries to download a price list at import. DSPy's response cache lives in the method's
folder, so a re-run replays it; replayed calls are counted as cached (free) calls, with the tokens
DSPy kept for them (none for entries it stored without usage).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ann_langgraph.eval_report import EvalReport
from ann_langgraph.executors import ExampleResult
from ann_langgraph.local.catalogue import is_local_string
from ann_langgraph.metrics import Metric, as_score
from ann_langgraph.pricing import cost_usd

from .base import Benchmark

# (program.json, training numbers) -> (ids already scored, a callback per example scored)
Carry = Callable[[Path, dict[str, Any]], tuple[set[str], Callable[[ExampleResult], None] | None]]

__all__ = ["DSPY_OPTIMIZERS", "DSPyOutcome", "DSPyUnavailable", "dspy_model", "run_dspy"]

DSPY_OPTIMIZERS = ("miprov2", "copro", "bootstrap-rs", "gepa")
# GEPA's docs: a reflection LM sampled at temperature 1.0 for varied proposals, with room for a
# whole rewritten instruction (on ``local``: the catalogue's optimizer cap, as our own
# optimizer gets).
REFLECTION_TEMPERATURE = 1.0
DEFAULT_REFLECTION_MAX_TOKENS = 4096
# Random-search candidates for bootstrap-rs, beside the zero-shot, labels-only and unshuffled
# programs it always tries: each costs a bootstrap pass over train and a pass over val.
BOOTSTRAP_RS_CANDIDATES = 2
# Demos per program (bootstrapped, labelled) for bootstrap-rs and MIPROv2.
MAX_DEMOS = 2
# MIPROv2 under a rollout budget: its minibatch and how often the best so far is re-scored on
# all of val (DSPy's defaults are 35 and 5; a 40-row val and a few hundred rollouts need less).
MIPRO_MINIBATCH = 10
MIPRO_FULL_EVAL_STEPS = 5
MIPRO_CANDIDATES = 6


def _bootstrap_cost(n_train: int) -> int:
    """Training rollouts one bootstrapped demo set costs, estimated: about two tries per demo
    kept (the 1.5B model solves about half its training tasks), at most the whole set."""
    return min(n_train, 2 * MAX_DEMOS)


def bootstrap_rs_candidates(rollouts: int | None, *, n_train: int, n_val: int) -> int:
    """Random-search programs that fit ``rollouts``: the three fixed programs (zero-shot,
    labels only, unshuffled) each cost a pass over val, every candidate a bootstrap and a pass
    over val. None: ``BOOTSTRAP_RS_CANDIDATES``."""
    if not rollouts:
        return BOOTSTRAP_RS_CANDIDATES
    fixed = 3 * n_val + _bootstrap_cost(n_train)
    return max(1, (rollouts - fixed) // (n_val + _bootstrap_cost(n_train)))


def miprov2_plan(rollouts: int | None, *, n_train: int, n_val: int) -> dict[str, int] | None:
    """MIPROv2's settings for ``rollouts`` (None: its ``auto="light"`` preset).

    Cost: a bootstrap per candidate demo set, the default program on all of val, then each
    trial's minibatch, and all of val again every ``MIPRO_FULL_EVAL_STEPS`` trials."""
    if not rollouts:
        return None
    minibatch = min(MIPRO_MINIBATCH, n_val)
    fixed = MIPRO_CANDIDATES * _bootstrap_cost(n_train) + n_val
    per_trial = minibatch + n_val / MIPRO_FULL_EVAL_STEPS
    trials = max(1, int((rollouts - fixed) // per_trial))
    return {
        "num_candidates": MIPRO_CANDIDATES,
        "num_trials": trials,
        "minibatch_size": minibatch,
        "minibatch_full_eval_steps": MIPRO_FULL_EVAL_STEPS,
    }


# A provider model's answer cap; on ``local`` the embedded model's own default (256) applies, as
# for every other method, so all rows are capped alike.
DEFAULT_MAX_TOKENS = 512
# DSPy aborts an optimizer or evaluation after ``settings.max_errors`` (10) failed examples. A
# small model fails to write DSPy's output fields on most examples, which would end the run
# with no row; an unparseable answer should score 0, as it does for the ANN methods.
UNLIMITED_ERRORS = sys.maxsize


class DSPyUnavailable(ImportError):
    """The ``dspy`` extra is not installed."""


class DSPyOutcome(BaseModel):
    """The evaluation (same shape as ``ann_langgraph.evaluate``'s) plus optimizer details."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    report: EvalReport
    details: dict[str, Any]


def import_dspy() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import dspy
    except ImportError as exc:
        raise DSPyUnavailable(
            f"the DSPy baseline needs the dspy extra (pip install -e '.[dspy]'): {exc}"
        ) from None
    return dspy


def dspy_model(model: str, *, max_tokens: int | None = None, **kwargs: Any) -> Any:
    """A ``dspy.LM`` for an ann model string (``local`` starts the embedded server)."""
    dspy = import_dspy()
    if is_local_string(model):
        from ann_langgraph.local import entry_for, find_gguf, get_local_server, parse_local_string

        name = parse_local_string(model)
        entry = entry_for(name)
        path = find_gguf(name)
        server = get_local_server(path, n_ctx=entry.n_ctx if entry else None)
        cap = max_tokens or (entry.max_tokens if entry else 256)
        # LiteLLM sends the cap as `max_completion_tokens`, which llama.cpp's server ignores:
        # answers then ran to the end of the context (minutes each). `max_tokens` in the body.
        return dspy.LM(
            f"openai/{server.model_alias}",
            api_base=server.url + "/v1",
            api_key="not-needed",
            max_tokens=cap,
            extra_body={"max_tokens": cap},
            **kwargs,
        )
    provider, sep, name = model.partition(":")
    if not sep:
        raise ValueError(
            f"the DSPy baseline needs 'local' or a provider:model string, got {model!r}"
        )
    return dspy.LM(f"{provider}/{name}", max_tokens=max_tokens or DEFAULT_MAX_TOKENS, **kwargs)


def _signature(dspy: Any, bench: Benchmark) -> Any:
    instructions = " ".join(p for p in (bench.description, bench.instruction) if p.strip())
    return dspy.Signature("question -> answer", instructions or "Answer the question.")


def _examples(dspy: Any, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """DSPy examples; a labeled demo's answer is the row's ``reference_answer`` where the
    benchmark gives one (HumanEval: the canonical solution, not the test code), else its
    target."""
    return [
        dspy.Example(
            question=row["input"],
            answer=str(row.get("reference_answer", row.get("target", ""))),
            ann_id=str(row["id"]),
        ).with_inputs("question")
        for row in rows
    ]


def reflection_model(model: str) -> Any:
    """GEPA's ``reflection_lm``: the same endpoint as the task model, sampled as GEPA's docs
    recommend (temperature 1.0, a large output budget)."""
    cap = DEFAULT_REFLECTION_MAX_TOKENS
    if is_local_string(model):
        from ann_langgraph.local import entry_for, parse_local_string

        entry = entry_for(parse_local_string(model))
        cap = entry.optimizer_max_tokens if entry else 1024
    return dspy_model(model, max_tokens=cap, temperature=REFLECTION_TEMPERATURE)


def _usage(entries: Sequence[Mapping[str, Any]], model_label: str) -> dict[str, Any]:
    """Calls, tokens and cost of DSPy LM history entries; replayed (cached) calls cost 0."""
    totals = {"calls": 0, "cached_calls": 0, "input_tokens": 0, "output_tokens": 0}
    paid_in = paid_out = 0
    for entry in entries:
        usage = entry.get("usage") or {}
        cached = bool(getattr(entry.get("response"), "cache_hit", False)) or not usage
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        totals["calls"] += 1
        totals["cached_calls"] += int(cached)
        totals["input_tokens"] += tokens_in
        totals["output_tokens"] += tokens_out
        if not cached:
            paid_in, paid_out = paid_in + tokens_in, paid_out + tokens_out
    return {**totals, "cost_usd": cost_usd(model_label, paid_in, paid_out)}


def _optimizer(
    dspy: Any,
    name: str,
    metric: Any,
    *,
    seed: int,
    threads: int,
    rollouts: int | None = None,
    n_train: int = 0,
    n_val: int = 0,
    reflection_lm: Any = None,
    log_dir: Path | None = None,
) -> Any:
    """The DSPy optimizer, sized to ``rollouts`` (examples its training may evaluate) when
    given: GEPA's ``max_metric_calls``, MIPROv2's trials, bootstrap-rs's candidates."""
    if name == "gepa":
        return dspy.GEPA(
            metric=metric,
            max_metric_calls=rollouts,
            reflection_lm=reflection_lm,
            num_threads=threads,
            seed=seed,
            # resumable: GEPA saves its state here and continues from it when run again
            log_dir=str(log_dir) if log_dir is not None else None,
            track_stats=True,
        )
    if name == "miprov2":
        plan = miprov2_plan(rollouts, n_train=n_train, n_val=n_val)
        return dspy.MIPROv2(
            metric=metric,
            auto="light" if plan is None else None,
            num_candidates=None if plan is None else plan["num_candidates"],
            seed=seed,
            num_threads=threads,
            max_bootstrapped_demos=MAX_DEMOS,
            max_labeled_demos=MAX_DEMOS,
            verbose=False,
        )
    if name == "copro":
        return dspy.COPRO(metric=metric, breadth=3, depth=2)
    if name == "bootstrap-rs":
        # Few-shot demos only: no model-written instructions, so it also runs where the model
        # cannot write the structured answers MIPROv2's and COPRO's proposers parse.
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=metric,
            max_bootstrapped_demos=MAX_DEMOS,
            max_labeled_demos=MAX_DEMOS,
            num_candidate_programs=bootstrap_rs_candidates(rollouts, n_train=n_train, n_val=n_val),
            num_threads=threads,
        )
    raise ValueError(f"unknown DSPy optimizer {name!r} (known: {', '.join(DSPY_OPTIMIZERS)})")


def run_dspy(
    bench: Benchmark,
    *,
    model: str,
    train: Sequence[Mapping[str, Any]],
    val: Sequence[Mapping[str, Any]],
    examples: Sequence[Mapping[str, Any]],
    metric: Metric,
    optimizer: str = "miprov2",
    seed: int = 0,
    concurrency: int = 4,
    out_dir: str | Path,
    progress: bool = True,
    lm: Any = None,
    reflection_lm: Any = None,
    rollouts: int | None = None,
    max_tokens: int | None = None,
    compiled_from: tuple[Path, dict[str, Any]] | None = None,
    carry: Carry | None = None,
) -> DSPyOutcome:
    """Compile a CoT program on ``train``/``val`` and score it on ``examples``.

    ``compiled_from``: (a saved ``program.json``, its training numbers): score that program
    instead of compiling (an earlier sitting compiled it). ``carry(program.json, training)``,
    called once the program is ready, returns the ids already scored (left out) and a callback
    for each example scored (``evals.carry``).

    ``lm`` replaces the ``dspy.LM`` built from ``model`` (tests pass a dummy LM); ``model``
    stays the label used for pricing. ``max_tokens``: the answer cap (default: the model's
    own; a code benchmark passes the cap its chain-of-thought baseline gets). ``rollouts``:
    the training budget in examples evaluated (GEPA's ``max_metric_calls``; MIPROv2's trials and
    bootstrap-rs's candidates are sized to it, estimated; the rollouts really used are
    reported); ``reflection_lm``: GEPA's reflection model (default: the
    same endpoint, ``reflection_model``). Every optimizer's metric calls on program runs are
    counted as its training ``rollouts``. The compiled program is saved as ``program.json``.
    """
    if optimizer not in DSPY_OPTIMIZERS:
        raise ValueError(
            f"unknown DSPy optimizer {optimizer!r} (known: {', '.join(DSPY_OPTIMIZERS)})"
        )
    if optimizer == "gepa" and not rollouts:
        raise ValueError(
            "GEPA needs a rollout budget (max_metric_calls): pass rollouts, the number of "
            "examples the other optimizers' training evaluated"
        )
    dspy = import_dspy()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    dspy.configure_cache(
        enable_disk_cache=True,
        enable_memory_cache=False,
        disk_cache_dir=str(folder / "dspy-cache"),
    )
    lm = lm if lm is not None else dspy_model(model, max_tokens=max_tokens)
    if optimizer == "gepa" and reflection_lm is None:
        reflection_lm = reflection_model(model)
    label = model
    rows_by_id = {str(r["id"]): dict(r) for r in [*train, *val, *examples]}

    def output_text(pred: Any) -> str:
        return str(getattr(pred, "answer", "") or "")

    rollouts_used = 0

    def scored(example: Any, pred: Any) -> tuple[float, str]:
        row = rows_by_id.get(str(getattr(example, "ann_id", "")), {})
        try:
            score = as_score(metric(row, output_text(pred)))
        except Exception as exc:
            return 0.0, f"the metric failed: {type(exc).__name__}: {exc}"
        return float(score.value), score.feedback or ""

    def dspy_metric(example: Any, pred: Any, trace: Any = None, *_: Any) -> float:
        nonlocal rollouts_used
        rollouts_used += 1
        return scored(example, pred)[0]

    def feedback_metric(
        gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        """GEPA's metric: our metric's feedback text is the feedback GEPA reflects on. A call
        naming a predictor re-reads a run already counted, so only the others are rollouts."""
        nonlocal rollouts_used
        if pred_name is None:
            rollouts_used += 1
        value, feedback = scored(gold, pred)
        return dspy.Prediction(score=value, feedback=feedback or f"score {value:g}")

    program = dspy.ChainOfThought(_signature(dspy, bench))
    started = time.perf_counter()
    if compiled_from is not None:
        program.load(str(compiled_from[0]))
        training = dict(compiled_from[1])
        with dspy.context(lm=lm, max_errors=UNLIMITED_ERRORS):
            done, on_result = carry(compiled_from[0], training) if carry else (set(), None)
            todo = [ex for ex in examples if str(ex["id"]) not in done]
            results, totals = _evaluate(
                dspy, lm, program, todo, metric, output_text, label, on_result=on_result
            )
        return _outcome(results, totals, training, folder, dspy, metric, started)
    with dspy.context(lm=lm, max_errors=UNLIMITED_ERRORS):
        before = len(lm.history)
        reflected = len(reflection_lm.history) if reflection_lm is not None else 0
        opt = _optimizer(
            dspy,
            optimizer,
            feedback_metric if optimizer == "gepa" else dspy_metric,
            seed=seed,
            threads=concurrency,
            rollouts=rollouts,
            n_train=len(train),
            n_val=len(val),
            reflection_lm=reflection_lm,
            log_dir=folder / "gepa-log",
        )
        trainset, valset = _examples(dspy, train), _examples(dspy, val)
        plan = miprov2_plan(rollouts, n_train=len(train), n_val=len(val))
        if optimizer == "gepa":
            compiled = opt.compile(program, trainset=trainset, valset=valset)
        elif optimizer == "miprov2":
            sized = {} if plan is None else {k: v for k, v in plan.items() if k != "num_candidates"}
            compiled = opt.compile(program, trainset=trainset, valset=valset, seed=seed, **sized)
        elif optimizer == "bootstrap-rs":
            compiled = opt.compile(program, trainset=trainset, valset=valset)
        else:
            compiled = opt.compile(
                program,
                trainset=trainset,
                eval_kwargs={"num_threads": concurrency, "display_progress": False},
            )
        spent = list(lm.history[before:])
        if reflection_lm is not None and reflection_lm is not lm:
            spent += reflection_lm.history[reflected:]
        training = {
            **_usage(spent, label),
            "optimizer": optimizer,
            "train_n": len(trainset),
            "val_n": len(valset),
            "rollouts": rollouts_used,
            "rollout_budget": rollouts,
            "wall_time_s": time.perf_counter() - started,
        }
        compiled.save(str(folder / "program.json"))
        done, on_result = carry(folder / "program.json", training) if carry else (set(), None)
        todo = [ex for ex in examples if str(ex["id"]) not in done]
        results, totals = _evaluate(
            dspy, lm, compiled, todo, metric, output_text, label, on_result=on_result
        )
    return _outcome(
        results, totals, training, folder, dspy, metric, started + training["wall_time_s"]
    )


def _outcome(
    results: list[ExampleResult],
    totals: dict[str, Any],
    training: dict[str, Any],
    folder: Path,
    dspy: Any,
    metric: Metric,
    scoring_began: float,
) -> DSPyOutcome:
    wall = time.perf_counter() - scoring_began
    report = EvalReport.of(
        results,
        input_tokens=totals["input_tokens"],
        output_tokens=totals["output_tokens"],
        calls=totals["calls"],
        cached_calls=totals["cached_calls"],
        cost_usd=totals["cost_usd"],
        wall_time_s=wall,
        metric=getattr(metric, "__name__", "metric"),
    )
    details = {
        "training": {
            **training,
            "tokens": training["input_tokens"] + training["output_tokens"],
            "run_dir": str(folder),
            "baseline_score": None,
            "best_score": None,
            "steps": None,
            "stop_reason": f"dspy {training['optimizer']} compiled",
        },
        "dspy_version": getattr(dspy, "__version__", "?"),
        "program": str(folder / "program.json"),
    }
    return DSPyOutcome(report=report, details=details)


def _evaluate(
    dspy: Any,
    lm: Any,
    program: Any,
    examples: Sequence[Mapping[str, Any]],
    metric: Metric,
    output_text: Any,
    label: str,
    *,
    on_result: Callable[[ExampleResult], None] | None = None,
) -> tuple[list[ExampleResult], dict[str, Any]]:
    """Run the compiled program on each example in order (one at a time: exact per-example
    usage from the LM history); ``on_result`` hears each one as it finishes."""
    results: list[ExampleResult] = []
    totals = {"calls": 0, "cached_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for row in examples:
        result = ExampleResult(id=str(row["id"]), input=row["input"], target=row.get("target"))
        before = len(lm.history)
        t0 = time.perf_counter()
        try:
            pred = program(question=row["input"])
            result.output = output_text(pred)
            reasoning = str(getattr(pred, "reasoning", "") or "")
            score = as_score(metric(dict(row), result.output))
            result.score, result.feedback = float(score.value), score.feedback
            if reasoning:
                result.feedback = (result.feedback + " | reasoning: " + reasoning[:300]).strip()
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {str(exc)[:1000]}"
            result.score = 0.0
            result.feedback = f"error: {result.error}"
        result.latency_s = time.perf_counter() - t0
        usage = _usage(lm.history[before:], label)
        result.input_tokens, result.output_tokens = usage["input_tokens"], usage["output_tokens"]
        result.calls, result.cached_calls = usage["calls"], usage["cached_calls"]
        result.cost_usd = usage["cost_usd"]
        for key in totals:
            totals[key] += usage[key]
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results, totals
