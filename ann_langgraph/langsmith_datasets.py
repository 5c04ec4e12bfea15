"""LangSmith datasets as ANN examples (``dataset="langsmith:<name>?input=KEY&target=KEY"``)
and the dataset an experiment compares on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .langsmith_client import LangSmithError, make_client

if TYPE_CHECKING:
    from langsmith import Client

__all__ = [
    "DATASET_PREFIX",
    "example_to_row",
    "experiment_dataset_id",
    "is_langsmith_dataset",
    "load_dataset_spec",
    "load_langsmith_dataset",
]

DATASET_PREFIX = "langsmith:"
_INPUT_KEYS = ("input", "question", "query", "prompt", "text")
_TARGET_KEYS = ("target", "answer", "output", "expected", "label", "reference")


def is_langsmith_dataset(value: Any) -> bool:
    """Whether ``value`` names a LangSmith dataset (``"langsmith:<name>"``)."""
    return isinstance(value, str) and value.startswith(DATASET_PREFIX)


def _parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    body = spec[len(DATASET_PREFIX) :]
    name, _, query = body.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=False)) if query else {}
    unknown = set(options) - {"input", "target", "split", "limit"}
    if unknown or not name:
        raise ValueError(
            f"{spec}: expected langsmith:<dataset>[?input=KEY&target=KEY&split=NAME&limit=N]"
            + (f" (unknown option {', '.join(sorted(unknown))})" if unknown else "")
        )
    return name, options


def _pick(data: Mapping[str, Any], key: str | None, defaults: tuple[str, ...], what: str) -> Any:
    if key is not None:
        if key not in data:
            raise ValueError(f"no {what} field {key!r} (fields: {', '.join(sorted(data))})")
        return data[key]
    for name in defaults:
        if name in data:
            return data[name]
    return None


def example_to_row(
    example: Any, *, input_key: str | None = None, target_key: str | None = None
) -> dict[str, Any]:
    """One LangSmith example as an ANN example (see :func:`load_langsmith_dataset`)."""
    inputs: Mapping[str, Any] = getattr(example, "inputs", None) or {}
    outputs: Mapping[str, Any] = getattr(example, "outputs", None) or {}
    example_id = str(example.id)
    text = _pick(inputs, input_key, _INPUT_KEYS, "input")
    if text is None:
        strings = [v for v in inputs.values() if isinstance(v, str)]
        if not strings:
            raise ValueError(f"example {example_id}: no text input (fields: {sorted(inputs)})")
        text = strings[0]
    if not isinstance(text, str):
        raise ValueError(f"example {example_id}: the input must be a string")
    target = _pick(outputs, target_key, _TARGET_KEYS, "target") if outputs else None
    if target is None and len(outputs) == 1:
        target = next(iter(outputs.values()))
    elif target is None and outputs:
        target = dict(outputs)
    row: dict[str, Any] = {k: v for k, v in inputs.items() if k not in ("id", "input", "target")}
    row.update(
        id=example_id,
        input=text,
        target=target,
        langsmith_example_id=example_id,
        langsmith_dataset_id=str(example.dataset_id),
    )
    return row


def load_langsmith_dataset(
    name: str,
    *,
    input_key: str | None = None,
    target_key: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    client: Client | None = None,
) -> list[dict[str, Any]]:
    """Examples of the LangSmith dataset ``name`` as ANN examples.

    Mapping: ``id`` = the LangSmith example id; ``input`` = ``inputs[input_key]``, else the
    first of ``inputs.input|question|query|prompt|text``, else the first string field;
    ``target`` = ``outputs[target_key]``, else the first of
    ``outputs.target|answer|output|expected|label|reference``, else the only output value,
    else the whole ``outputs`` dict (``None`` without outputs). Other input fields are kept;
    ``langsmith_example_id``/``langsmith_dataset_id`` say where the row came from (experiments
    use them). ``split`` keeps one dataset split; ``limit`` the first N examples.
    """
    if client is None:
        client = make_client()
    from langsmith.utils import LangSmithError as _ClientError

    try:
        examples = list(
            client.list_examples(dataset_name=name, splits=[split] if split else None, limit=limit)
        )
    except _ClientError as exc:
        raise ValueError(f"LangSmith dataset {name!r}: {exc}") from None
    rows = []
    for ex in examples:
        try:
            rows.append(example_to_row(ex, input_key=input_key, target_key=target_key))
        except ValueError as exc:
            raise ValueError(f"LangSmith dataset {name!r}: {exc}") from None
    return rows


def load_dataset_spec(spec: str, *, client: Client | None = None) -> list[dict[str, Any]]:
    """``langsmith:<name>[?input=KEY&target=KEY&split=NAME&limit=N]`` -> examples."""
    name, options = _parse_spec(spec)
    limit = options.get("limit")
    if limit is not None and not limit.isdigit():
        raise ValueError(f"{spec}: limit must be a whole number")
    return load_langsmith_dataset(
        name,
        input_key=options.get("input"),
        target_key=options.get("target"),
        split=options.get("split"),
        limit=int(limit) if limit else None,
        client=client,
    )


def experiment_dataset_id(rows: Iterable[Mapping[str, Any]]) -> str:
    """The one LangSmith dataset every row comes from (an experiment compares on one)."""
    ids = {str(r.get("langsmith_dataset_id") or "") for r in rows}
    if "" in ids or len(ids) != 1:
        raise LangSmithError(
            "a LangSmith experiment needs examples loaded from one LangSmith dataset "
            "(dataset='langsmith:<name>')"
        )
    return ids.pop()
