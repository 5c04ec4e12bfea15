"""What every aggregator template shares: the layer state, prompts, and how an agent is called."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from ..cache import sample_scope
from ..models import ModelResolver, llm_retry_policy
from ..spec import AgentSpec, GraphSpec, LayerSpec

__all__ = [
    "BRIEF_SEPARATOR",
    "LayerContext",
    "LayerInput",
    "LayerOutput",
    "LayerState",
    "merge_dicts",
]

BRIEF_SEPARATOR = "\n\n---\n"  # between the input and the agent's brief (context-first layout)


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer for keyed outputs: idempotent, so subgraph outputs never duplicate."""
    if not left:
        return dict(right or {})
    if not right:
        return left
    return {**left, **right}


class LayerInput(TypedDict, total=False):
    """What a layer subgraph reads from the parent graph."""

    input: str
    layer_outputs: Annotated[dict[str, str], merge_dicts]


class LayerOutput(TypedDict, total=False):
    """What a layer subgraph writes back: only keyed (idempotent) channels."""

    layer_outputs: Annotated[dict[str, str], merge_dicts]
    routes: Annotated[dict[str, dict[str, Any]], merge_dicts]
    output: str


class LayerState(LayerInput, LayerOutput, total=False):
    """Internal state of a layer subgraph; ``steps`` never leaves the layer."""

    steps: Annotated[list[dict[str, Any]], operator.add]
    decision: dict[str, Any]
    layer_text: str


@dataclass
class LayerContext:
    """Everything a template needs to build one layer's subgraph."""

    spec: GraphSpec
    layer: LayerSpec
    index: int
    models: ModelResolver
    is_last: bool
    aggregator: str = ""
    retry_attempts: int = 3

    def __post_init__(self) -> None:
        if not self.aggregator:
            self.aggregator = self.layer.aggregator
        self._input_layers = self.spec.layer_inputs(self.index)
        self.fingerprint = self.spec.fingerprint
        # Agents with different instructions share only the layer input: put it first, so the
        # engine's prompt-prefix reuse serves it once to every agent (see ``messages``).
        prompts = {self.system_prompt(a) for a in self.layer.agents}
        self.context_first = len(prompts) > 1

    # -- prompts ----------------------------------------------------------------------
    def layer_input(self, state: LayerInput) -> str:
        """The task plus the outputs of this layer's input layers."""
        task = state.get("input", "")
        if not self._input_layers:
            return task
        outputs = state.get("layer_outputs") or {}
        parts = [f"Task:\n{task}"]
        for name in self._input_layers:
            parts.append(f"Output of layer '{name}':\n{outputs.get(name, '(no output)')}")
        return "\n\n".join(parts)

    def system_prompt(self, agent: AgentSpec) -> str:
        head = f"You are {agent.role}."
        if self.spec.description:
            head += f" Overall task: {self.spec.description}"
        return f"{head}\n\n{agent.prompt}"

    def team_system_prompt(self) -> str:
        """The system prompt every agent of a context-first layer shares."""
        head = "You work in a team of agents; your own role and instruction follow the input."
        if self.spec.description:
            head += f" Overall task: {self.spec.description}"
        return head

    def messages(self, agent: AgentSpec, user_text: str) -> list[BaseMessage]:
        """System prompt, the agent's demonstrations as earlier turns, then the input.

        When the layer's agents have different instructions, the layout is context-first: a
        shared system prompt, then the input, then the agent's role and instruction. Prompts are
        processed in order and a server reuses only a shared *prefix*, so this way the layer
        input (often most of the prompt) is processed once for the whole team, not per agent.
        When all agents share one instruction (one agent, or identical voters) the instruction
        comes first, where it is shared across the inputs of an evaluation instead.
        """
        shots: list[BaseMessage] = []
        for demo in agent.demos:
            shots += [HumanMessage(demo.input), AIMessage(demo.output)]
        if not self.context_first:
            return [SystemMessage(self.system_prompt(agent)), *shots, HumanMessage(user_text)]
        brief = f"You are {agent.role}.\n{agent.prompt}"
        return [
            SystemMessage(self.team_system_prompt()),
            *shots,
            HumanMessage(f"{user_text}{BRIEF_SEPARATOR}{brief}"),
        ]

    # -- calls ------------------------------------------------------------------------
    def metadata(self, agent_id: str, *, record: bool = False) -> dict[str, Any]:
        """Node metadata: every run below it (down to the LLM call) says where it came from.

        ``record`` marks aggregation nodes whose ``decision`` output the trace recorder keeps.
        """
        md: dict[str, Any] = {
            "ann_layer": self.layer.name,
            "ann_agent": agent_id,
            "ann_aggregator": self.aggregator,
            "ann_spec": self.fingerprint,
            "ann_layer_index": self.index,
        }
        if record:
            md["ann_record"] = True
        return md

    def retry_policy(self) -> Any:
        return llm_retry_policy(self.retry_attempts)

    def call(
        self,
        agent: AgentSpec,
        messages: list[BaseMessage],
        config: RunnableConfig,
        *,
        sample: int = 0,
        override_agent_id: str | None = None,
    ) -> AIMessage:
        """Invoke the agent's model with its parameters; metadata comes from the node."""
        model = self.models.for_agent(agent)
        if override_agent_id is not None or sample:
            md = dict(config.get("metadata") or {})
            if override_agent_id is not None:
                md["ann_agent"] = override_agent_id
            if sample:
                md["ann_sample"] = sample
            config = {**config, "metadata": md}
        with sample_scope(sample):  # the LLM cache keys sampled agents by this index
            result = model.invoke(messages, config)
        if not isinstance(result, AIMessage):
            result = AIMessage(content=str(getattr(result, "content", result)))
        return result

    def finish(self, text: str) -> dict[str, Any]:
        """The state update that publishes this layer's output (and the graph's, if last)."""
        update: dict[str, Any] = {"layer_outputs": {self.layer.name: text}}
        if self.is_last:
            update["output"] = text
        return update


def message_text(message: BaseMessage) -> str:
    """Plain text of a message whose content may be a list of blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)
