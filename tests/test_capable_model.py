"""The default embedded model (Qwen2.5-Coder-1.5B) itself: assembled from its chunk packages,
served, and answering the optimizer's structured calls in JSON-schema mode (loopback only).

Marked ``local_model`` and ``capable_model``: the rest of the suite uses the tiny model.
Mechanics only (a parse, a shape), never accuracy.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

import ann_langgraph as ann
from ann_langgraph.local import CATALOGUE, DEFAULT_ENTRY, find_gguf, installed_path
from ann_langgraph.models import init_model, structured_output_method
from ann_langgraph.optimize import prompts
from ann_langgraph.optimize.graph import _with_output_cap
from ann_langgraph.optimize.schemas import critic_schema
from ann_langgraph.structured import invoke_structured

pytestmark = [pytest.mark.local_model, pytest.mark.capable_model]


def test_the_default_model_is_assembled_and_verified():
    entry = CATALOGUE[DEFAULT_ENTRY]
    path = find_gguf()
    assert path == installed_path(entry)  # stamped: size and sha256 were checked
    assert path.stat().st_size == entry.size_bytes
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_the_critic_call_parses_on_the_capable_model():
    spec = ann.load_spec("graphs/dates.yaml")
    model = _with_output_cap(init_model("local"), None)
    assert structured_output_method(model) == "json_schema"
    evidence = prompts.example_evidence(
        {
            "id": "t1",
            "score": 0.0,
            "input": "Sentence: Ben said the wedding is on May 4, 2025.",
            "target": "2025-05-04",
            "output": "The sentence mentions May 4, 2025.",
            "feedback": "expected '2025-05-04', got 'The sentence mentions May 4, 2025.'",
        },
        [],
        chars=800,
    )
    messages = [
        SystemMessage(prompts.CRITIC_SYSTEM),
        HumanMessage(prompts.critic_prompt(spec, [evidence], [], "", mean=0.0)),
    ]
    result = invoke_structured(model, critic_schema(spec), messages, None, retries=1)
    assert result.error is None and result.attempts == 1, result.error
    assert [b.layer for b in result.value.blame] == ["answer"]  # the enum allows nothing else
    assert result.usage["output_tokens"] < 1536  # finished inside the optimizer's cap
