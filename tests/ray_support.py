"""What the Ray executor's tests install on each worker (``setup="tests.ray_support:setup"``).

Registers scripted models the workers resolve by name, as a user's setup hook registers its
own clients: ``scripted-math`` (and the slower ``scripted-math-slow``) answers "What is A + B?"
(wrong on purpose when A is odd, so scores vary); while a call runs it is counted by the
``ann-test-probe`` actor (calls in flight now and at peak, cluster-wide, and every call made).
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

from ann_langgraph.models import register_model
from ann_langgraph.testing import ScriptedChatModel

PROBE = "ann-test-probe"


class Probe:
    """Counts scripted calls across every worker process (a named Ray actor)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.calls: list[str] = []
        self.pids: set[int] = set()

    def enter(self, text: str, pid: int) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.calls.append(text)
        self.pids.add(pid)

    def leave(self) -> None:
        self.now -= 1

    def stats(self) -> dict[str, Any]:
        return {"now": self.now, "peak": self.peak, "calls": list(self.calls), "pids": self.pids}

    def reset(self) -> None:
        self.now = self.peak = 0
        self.calls = []
        self.pids = set()


_probe: Any = None
_probe_lock = threading.Lock()


def _get_probe() -> Any:
    global _probe
    import ray

    if not ray.is_initialized():  # a run outside Ray (the local reference): nothing to count
        return None
    with _probe_lock:
        if _probe is None:
            try:
                _probe = ray.get_actor(PROBE)
            except ValueError:
                return None
        return _probe


def answerer(latency_s: float) -> Any:
    """Answers "What is A + B?" (A + B, plus one when A is odd) after ``latency_s``."""

    def answer(messages: Any, **_: Any) -> str:
        import ray

        text = str(messages[-1].content)
        found = re.findall(r"(\d+) \+ (\d+)", text)
        probe = _get_probe()
        if probe is not None:
            ray.get(probe.enter.remote(text[-60:], os.getpid()))
        try:
            time.sleep(latency_s)
            if not found:
                return "Answer: 0"
            a, b = (int(x) for x in found[-1])
            return f"Answer: {a + b + (a % 2)}"
        finally:
            if probe is not None:
                ray.get(probe.leave.remote())

    return answer


def setup() -> None:
    global _probe
    _probe = None  # a probe of an earlier cluster is gone
    for name, latency in (("scripted-math", 0.02), ("scripted-math-slow", 0.3)):
        register_model(
            name,
            lambda latency=latency, name=name: ScriptedChatModel(
                respond=answerer(latency), model_name=name
            ),
            replace=True,
        )
