"""The Ray executor from outside the cluster (Ray Client, ``ray://``): the driver's cache file
is not reachable from the cluster, so workers use a copy and new entries flow back to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("grpc")  # Ray Client (the ray extra brings it)

from ann_langgraph import evaluate  # noqa: E402
from ann_langgraph.cache import SQLiteLLMCache  # noqa: E402
from ann_langgraph.executors.ray import RayExecutor  # noqa: E402
from tests.ray_support import setup  # noqa: E402
from tests.test_ray_executor import _rows, _spec  # noqa: E402

pytestmark = pytest.mark.ray_cluster
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    if ray.is_initialized():
        ray.shutdown()
    gcs, client = _free_port(), _free_port()
    # Token authentication off (Ray's default is on; the client then needs the token), and
    # gRPC's fork support off with the poll engine: the client server's fork of its per-client
    # server otherwise aborts in gRPC's epoll engine (grpcio 1.81, Ray 2.60).
    quirks = {
        "RAY_AUTH_MODE": "disabled",
        "GRPC_ENABLE_FORK_SUPPORT": "0",
        "GRPC_POLL_STRATEGY": "poll",
    }
    saved = {k: os.environ.get(k) for k in quirks}
    os.environ.update(quirks)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    ray_cli = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            f"--ray-client-server-port={client}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={tmp_path_factory.mktemp('ray')}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:  # the client server answers once the head is up
        try:
            socket.create_connection(("127.0.0.1", client), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "ray head did not start"
            time.sleep(0.5)
    setup()
    yield f"ray://127.0.0.1:{client}"
    proc.terminate()
    proc.wait(timeout=60)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_ray_client_runs_and_brings_the_cache_home(head, tmp_path):
    spec, rows = _spec("scripted-math", layers=2), _rows(12)
    local = evaluate(spec, rows, "numeric_match", progress=False)
    cache = SQLiteLLMCache(tmp_path / "cache.sqlite")
    env = {"env_vars": {"PYTHONPATH": str(ROOT)}}
    with RayExecutor(address=head, setup="tests.ray_support:setup", runtime_env=env) as ex:
        first = evaluate(spec, rows, "numeric_match", progress=False, executor=ex, cache=cache)
    assert [r.score for r in first.results] == [r.score for r in local.results]
    assert first.cached_calls == 0
    # the workers' paid calls reached the driver's own file, ledger included
    assert len(cache) == 24 and cache.spent()["calls"] == 24
    with RayExecutor(address=head, setup="tests.ray_support:setup", runtime_env=env) as ex:
        again = evaluate(spec, rows, "numeric_match", progress=False, executor=ex, cache=cache)
    assert again.cached_calls == again.calls == 24  # a new connection starts from that file
    assert [r.output for r in again.results] == [r.output for r in first.results]
    cache.close()
