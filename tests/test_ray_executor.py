"""The Ray executor on a real local Ray (loopback), driven by scripted models that the workers
resolve by name (registered by ``tests.ray_support:setup``, as a user's setup hook would)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ann_langgraph import GraphSpec, evaluate  # noqa: E402
from ann_langgraph.cache import SQLiteLLMCache  # noqa: E402
from ann_langgraph.executors.ray import RayExecutor  # noqa: E402
from tests.ray_support import PROBE, Probe, setup  # noqa: E402

pytestmark = pytest.mark.ray_cluster
ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-ann-test-secret-5f1c0de"


def _spec(model: str, layers: int = 1) -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "adder",
            "description": "Add two numbers.",
            "answer_format": "last_number",
            "models": {"default": model},
            "layers": [
                {
                    "name": f"step{i}",
                    "agents": [{"id": f"a{i}", "role": "Adder", "prompt": f"Add them (pass {i})."}],
                }
                for i in range(layers)
            ],
        }
    )


def _rows(n: int) -> list[dict]:
    return [
        {"id": f"q{i}", "input": f"What is {i} + {i + 1}?", "target": 2 * i + 1} for i in range(n)
    ]


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["ANN_TEST_SECRET_KEY"] = SECRET  # in the driver's environment only
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    setup()  # the driver resolves the same names (for the local runs compared against)
    probe = ray.remote(Probe).options(name=PROBE).remote()
    yield probe
    ray.shutdown()
    os.environ.pop("ANN_TEST_SECRET_KEY", None)


def evaluate_and_meanwhile(probe, after_calls: int, action, *args, **kwargs):
    """``evaluate(*args, **kwargs)`` in a thread; once the probe has counted ``after_calls``
    model calls, ``action()`` (kill a worker, remove a node); the report when it ends."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("report", evaluate(*args, **kwargs)))
    thread.start()
    deadline = time.monotonic() + 90
    while len(ray.get(probe.stats.remote())["calls"]) < after_calls:
        assert time.monotonic() < deadline and thread.is_alive(), "the run ended too soon"
        time.sleep(0.05)
    action()
    thread.join(300)
    return box["report"]


def _executor(**kw) -> RayExecutor:
    return RayExecutor(setup="tests.ray_support:setup", **kw)


def test_same_report_as_the_local_executor(cluster, tmp_path):
    spec, rows = _spec("scripted-math", layers=2), _rows(50)
    local = evaluate(spec, rows, "numeric_match", progress=False)
    with _executor(examples_in_flight=8) as ex:
        remote = evaluate(spec, rows, "numeric_match", progress=False, executor=ex)
    assert [r.id for r in remote.results] == [r["id"] for r in rows]  # dataset order
    assert [(r.score, r.output) for r in remote.results] == [
        (r.score, r.output) for r in local.results
    ]
    assert 0 < remote.mean < 1
    assert (remote.mean, remote.calls, remote.input_tokens, remote.output_tokens) == (
        local.mean,
        local.calls,
        local.input_tokens,
        local.output_tokens,
    )
    assert len(remote.records) == len(local.records)
    assert {r.example_id for r in remote.records} == {r["id"] for r in rows}
    assert len(ray.get(cluster.stats.remote())["pids"]) >= 2  # really ran on several workers


def test_cluster_wide_limit_on_requests_in_flight(cluster, tmp_path):
    ray.get(cluster.reset.remote())
    with _executor(examples_in_flight=32, requests_in_flight=3, workers=3) as ex:
        report = evaluate(
            _spec("scripted-math-slow"), _rows(120), "numeric_match", progress=False, executor=ex
        )
        limiter = ex.limiter_stats()
    stats = ray.get(cluster.stats.remote())
    assert report.n == 120 and report.errors == 0
    assert stats["peak"] == 3  # never more, and the limit was really reached
    assert limiter["peak"] == {"*": 3} and limiter["leases"] == 0
    assert len(stats["calls"]) == 120


def test_a_killed_worker_loses_nothing_and_pays_nothing_twice(cluster, tmp_path):
    ray.get(cluster.reset.remote())
    cache = SQLiteLLMCache(tmp_path / "cache.sqlite")
    spec, rows = _spec("scripted-math-slow", layers=2), _rows(24)
    with _executor(examples_in_flight=8, workers=2) as ex:
        victim = ex.worker_pids()[0]
        report = evaluate_and_meanwhile(
            cluster,
            12,
            lambda: os.kill(victim, signal.SIGKILL),  # mid-run: examples half done there
            spec,
            rows,
            "numeric_match",
            progress=False,
            executor=ex,
            cache=cache,
        )
        retried = ex.attempts
    assert retried >= 1
    assert report.n == 24 and report.errors == 0
    assert [r.id for r in report.results] == [r["id"] for r in rows]
    local = evaluate(spec, rows, "numeric_match", progress=False)
    assert [r.score for r in report.results] == [r.score for r in local.results]
    # every paid call counted once: 2 per example in the report and in the ledger
    assert report.calls - report.cached_calls == 48
    assert cache.spent()["calls"] == 48
    cache.close()


def test_secrets_stay_out_of_payloads_logs_and_run_files(cluster, tmp_path):
    import cloudpickle

    from ann_langgraph.train import train

    spec = _spec("scripted-math")
    with _executor(examples_in_flight=4) as ex:
        report = evaluate(spec, _rows(6), "numeric_match", progress=False, executor=ex)
        payload = ex.last_payload
        from ann_langgraph.testing import ScriptedChatModel

        result = train(
            spec,
            train=_rows(8),
            val=[{"id": f"v{i}", "input": f"What is {i} + 2?", "target": i + 2} for i in range(6)],
            metric="numeric_match",
            models="scripted-math",
            optimizer_model=ScriptedChatModel(default="{}"),
            epochs=1,
            batch_size=4,
            run_dir=tmp_path / "run",
            progress=False,
            executor=ex,
        )
    assert report.n == 6 and result.baseline_score >= 0
    assert SECRET.encode() not in cloudpickle.dumps(payload)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert files and not [p for p in files if SECRET.encode() in p.read_bytes()]
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked = [p for p in logs.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked


def test_cli_eval_on_ray_against_an_openai_compatible_endpoint(cluster, tmp_path, monkeypatch):
    """``ann eval --executor ray`` end to end: workers resolve the spec's models-table entry
    (a loopback OpenAI-compatible server) themselves, and the report is the local one."""
    import json

    from typer.testing import CliRunner

    from ann_langgraph import save_spec
    from ann_langgraph.cli import app
    from tests.test_openai_compatible import FakeOpenAI

    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeOpenAI()
    fake.thread.start()
    try:
        spec = GraphSpec.model_validate(
            {
                "name": "served",
                "description": "Answer.",
                "answer_format": "last_number",
                "models": {"default": {"model": "openai:served", "base_url": fake.url}},
                "layers": [{"name": "a", "agents": [{"id": "a", "role": "A", "prompt": "Go."}]}],
            }
        )
        spec_path = save_spec(spec, tmp_path / "spec.yaml")
        data = tmp_path / "data.jsonl"
        data.write_text(
            "".join(
                json.dumps({"input": f"q{i}", "target": 42 if i % 2 else 7}) + "\n"
                for i in range(10)
            )
        )
        reports = {}
        for executor in ("local", "ray"):
            result = CliRunner().invoke(
                app,
                [
                    "eval",
                    str(spec_path),
                    "--dataset",
                    str(data),
                    "--metric",
                    "numeric_match",
                    "--executor",
                    executor,
                    "--requests-in-flight" if executor == "ray" else "--concurrency",
                    "2",
                    "--out",
                    str(tmp_path / executor),
                    "--json",
                ],
            )
            assert result.exit_code == 0, result.output
            reports[executor] = json.loads(result.output)
        assert len(fake.chat_requests()) == 20
    finally:
        fake.server.shutdown()
        fake.server.server_close()
    assert reports["ray"]["mean"] == reports["local"]["mean"] == 0.5
    assert reports["ray"]["n"] == 10


def test_per_example_timeouts_hold_on_the_workers(cluster):
    with _executor(examples_in_flight=4) as ex:
        report = evaluate(
            _spec("scripted-math-slow"),
            _rows(4),
            "numeric_match",
            progress=False,
            executor=ex,
            timeout_s=0.1,
        )
    assert report.errors == 4
    assert all(r.error == "timeout: no answer within 0.1s" for r in report.results)


def test_evals_compare_on_ray_matches_the_local_table(cluster, tmp_path):
    from evals.compare import CompareConfig, run_compare
    from tests.conftest import benchmark_folder

    data = benchmark_folder("gsm8k")
    rows = {}
    for name in ("local", "ray"):
        config = CompareConfig(
            benchmark="gsm8k",
            model="scripted-math",
            limit=6,
            data_dir=str(data),
            methods=["io", "cot"],
            executor=name,
        )
        with _executor(examples_in_flight=4) as ex:
            result = run_compare(
                config,
                out_dir=tmp_path / name,
                progress=False,
                executor=ex if name == "ray" else None,
            )
        rows[name] = [
            (s.method, s.mean, s.n, s.errors, s.tokens_per_example) for s in result.summaries
        ]
        assert all(s.status == "ok" for s in result.summaries)
    assert rows["ray"] == rows["local"]
    assert "--executor ray" in (tmp_path / "ray" / "compare.md").read_text()
