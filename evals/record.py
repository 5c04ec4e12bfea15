"""Keep a comparison's finished rows without the benchmark's own text, so they can be committed
and a later machine can finish the table.

A method cut off while scoring (the machine gone) leaves ``partial.jsonl``/``partial.json``
(``evals.carry``): they are recorded the same way, stripped, so the next machine scores only
the examples still missing. Record before a sitting ends, even mid-method.

A learning table on the embedded model takes longer than one machine lives here, so the rows
are recorded as they finish::

    python -m evals.record /work/keep/compare-gsm8k benchmarks/results/gsm8k-qwen1.5b

copies ``compare.md``/``compare.json``, the ``compare_front.png`` plot and, per method,
``summary.json``, ``spec.yaml`` and ``results.jsonl`` with each row's ``input`` and
``target`` removed and its ``output`` cut to its last 200 characters, where the answer is
(benchmark data is never committed, and a whole output restates its problem; ids, scores and
token counts stay). A training run adds
``best.yaml`` and ``optimizer.json`` (its ``evals.optimizer_stats`` row: parse rate, prompt
reuse), never its history or cache (they quote training examples). A spec's demonstrations
(training problems and the model's worked answers to them) keep only their ``source`` id and
length: the committed spec shows what was learnt, not the data. To carry on, copy the
record to a new folder and pass it as ``evals.compare --out``: finished methods are reused
(their keys still match) and the table, paired tests included, is rebuilt with the new rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from ann_langgraph.spec import GraphSpec, load_spec, save_spec

from .carry import PARTIAL, PARTIAL_META, TRAINED, discard, has_demos
from .optimizer_stats import run_stats
from .report import read_jsonl, write_jsonl, write_text

__all__ = ["DATA_FIELDS", "OUTPUT_TAIL", "record_compare"]

# Fields of a results row that copy the benchmark's own data.
DATA_FIELDS = ("input", "target")

app = typer.Typer(add_completion=False)


# An output keeps its end (where the answer is); the rest of it restates the problem.
OUTPUT_TAIL = 200


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in DATA_FIELDS}
    text = str(out.get("output") or "")
    if len(text) > OUTPUT_TAIL:
        out["output"] = "…" + text[-OUTPUT_TAIL:]
    return out


def _spec_without_data(src: Path, dest: Path) -> None:
    """Copy a spec with each demonstration's text replaced by where it came from."""
    data = load_spec(src).model_dump(mode="json", exclude_none=True)
    for layer in data.get("layers") or []:
        for agent in layer.get("agents") or []:
            for demo in agent.get("demos") or []:
                where = demo.get("source") or "a training example"
                for field in ("input", "output"):
                    demo[field] = (
                        f"[not recorded: {len(demo[field])} characters from {where}; "
                        "benchmark text is never committed]"
                    )
    save_spec(GraphSpec.model_validate(data), dest)


def _record_partial(folder: Path, out: Path) -> None:
    """A method cut off while scoring: its carried rows (stripped) and their meta, and the
    spec it trained when that spec holds no demonstrations (``evals.carry``)."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / PARTIAL_META, out / PARTIAL_META)
    rows = read_jsonl(folder / PARTIAL) if (folder / PARTIAL).is_file() else []
    write_jsonl(out / PARTIAL, [_strip(r) for r in rows])
    program = folder / "program.json"  # a DSPy row's compiled program, when it has no demos
    if program.is_file() and not has_demos(json.loads(program.read_text(encoding="utf-8"))):
        shutil.copyfile(program, out / "program.json")
    trained = folder / TRAINED
    if trained.is_file() and not any(
        a.demos for la in load_spec(trained).layers for a in la.agents
    ):
        shutil.copyfile(trained, out / TRAINED)


def record_compare(src: str | Path, dest: str | Path) -> list[str]:
    """Copy the finished rows of comparison folder ``src`` into ``dest``; return the methods.

    Methods whose summary is missing or not ``ok`` are left out (a later run redoes them),
    except the examples such a method had scored (``evals.carry``), which are recorded for a
    later machine to continue from.
    Replaces what ``dest`` held for those methods; other methods already in ``dest`` stay.
    """
    src, dest = Path(src), Path(dest)
    partial = sorted(p.parent for p in (src / "methods").glob(f"*/{PARTIAL_META}"))
    if not (src / "compare.json").is_file() and not partial:
        raise ValueError(f"{src}: no compare.json (not an evals.compare folder?)")
    dest.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    for folder in sorted((src / "methods").glob("*")):
        summary_path, results = folder / "summary.json", folder / "results.jsonl"
        finished = summary_path.is_file() and results.is_file()
        if finished and json.loads(summary_path.read_text(encoding="utf-8")).get("status") != "ok":
            finished = False
        if not finished:
            if folder in partial:
                _record_partial(folder, dest / "methods" / folder.name)
            continue
        out = dest / "methods" / folder.name
        out.mkdir(parents=True, exist_ok=True)
        discard(out)  # the finished row replaces what an earlier sitting carried
        for name in (TRAINED, "program.json"):
            (out / name).unlink(missing_ok=True)
        shutil.copyfile(summary_path, out / "summary.json")
        if (folder / "spec.yaml").is_file():
            _spec_without_data(folder / "spec.yaml", out / "spec.yaml")
        write_jsonl(out / "results.jsonl", [_strip(r) for r in read_jsonl(results)])
        run = folder / "run"
        if (run / "history.jsonl").is_file():
            if (run / "best.yaml").is_file():
                _spec_without_data(run / "best.yaml", out / "best.yaml")
            stats = run_stats(run)
            stats["run_dir"] = f"{dest.name}/{folder.name}"
            write_text(out / "optimizer.json", json.dumps({"runs": [stats]}, indent=2) + "\n")
        kept.append(folder.name)
    for name in ("compare.md", "compare.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
    if (src / "compare_front.png").is_file():  # the plot compare.md links (no benchmark text)
        shutil.copyfile(src / "compare_front.png", dest / "compare_front.png")
    return kept


@app.command()
def main(
    src: Annotated[Path, typer.Argument(help="An evals.compare output folder.")],
    dest: Annotated[
        Path, typer.Argument(help="Where the record goes (e.g. benchmarks/results/X).")
    ],
) -> None:
    """Record a comparison's finished rows without benchmark text."""
    try:
        kept = record_compare(src, dest)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"recorded {', '.join(kept) or 'no finished methods'} into {dest}")


if __name__ == "__main__":
    app()
