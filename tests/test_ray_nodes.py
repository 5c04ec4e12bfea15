"""A node removed mid-run (``ray.cluster_utils.Cluster``: a head and a worker node on
loopback): every example is still scored once and every paid call counted once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ann_langgraph.cache import SQLiteLLMCache  # noqa: E402
from ann_langgraph.executors.ray import RayExecutor  # noqa: E402
from tests.ray_support import PROBE, Probe, setup  # noqa: E402
from tests.test_ray_executor import _rows, _spec, evaluate_and_meanwhile  # noqa: E402

pytestmark = pytest.mark.ray_cluster
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if ray.is_initialized():
        ray.shutdown()
    # Ray connects nodes through the machine's own address (it rewrites 127.0.0.1 to it), so
    # this cluster talks over that interface; nothing leaves the machine.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    ray.init(
        address=cluster.address,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    cluster.wait_for_nodes()
    setup()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    probe = ray.remote(Probe).options(name=PROBE, num_cpus=0, scheduling_strategy=here).remote()
    yield cluster, worker, probe
    ray.shutdown()
    cluster.shutdown()


def test_removing_a_node_mid_run_loses_nothing(two_nodes, tmp_path):
    cluster, worker, probe = two_nodes
    cache = SQLiteLLMCache(tmp_path / "cache.sqlite")
    spec, rows = _spec("scripted-math-slow", layers=2), _rows(30)
    with RayExecutor(setup="tests.ray_support:setup", examples_in_flight=8, workers=4) as ex:
        nodes = {
            a["NodeID"] for a in ray.nodes() if a["Alive"] and a["Resources"].get("CPU", 0) > 0
        }
        assert len(nodes) == 2
        report = evaluate_and_meanwhile(
            probe,
            12,
            lambda: cluster.remove_node(worker),
            spec,
            rows,
            "numeric_match",
            progress=False,
            executor=ex,
            cache=cache,
        )
        retried = ex.attempts
    assert not report.errors, report.results[0].error
    assert retried >= 1
    assert report.n == 30 and report.errors == 0
    assert [r.id for r in report.results] == [r["id"] for r in rows]
    assert report.calls - report.cached_calls == 60
    assert cache.spent()["calls"] == 60
    cache.close()
