"""Shared fixtures: a real redis-server on a free loopback port, the repo's paths."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"  # ../shared/fixtures: real-world data from the team

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Property tests run the same examples on every run of the test command (seeded from each test's
# own code), so a landing is never refused for a bug the random search met by chance in code the
# change did not touch. The search itself is a separate, deliberate run with fresh random inputs:
#   ./tests/run -k "fuzz or wire or bonds" --hypothesis-profile=explore
# and each crash it finds is pinned as an @example next to its test.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("hypothesis_profile", None):  # --hypothesis-profile=NAME wins
        settings.load_profile("repeatable")


#: What makes a test "heavy" (left out of ``./tests/run --fast``): a fixture that starts Ceph, Kubernetes,
#: RabbitMQ, a Celery worker, a Dask cluster or Chromium, or builds the wheel and installs it into fresh
#: venvs (tests/cli/test_extras.py). Tests that start one inline carry ``@pytest.mark.heavy`` themselves;
#: whole modules of such tests are listed here.
HEAVY_FIXTURES = {"ceph_cluster", "k8s_cluster", "world", "rabbit", "worker", "cluster", "server_factory",
                  "wheel", "agent_venv", "dashboard_venv", "dockerd", "rcluster"}
#: test_dashboard_fuzz drives every screen at two sizes through generated hostile clusters (~100 s): it
#: runs in the full suite and CI, not in the edit-test loop.
HEAVY_MODULES = {"test_ceph_real", "test_k8s_real", "test_celery", "test_dask", "test_serve", "test_dashboard_fuzz",
                 "test_celery_events",  # real Celery workers (-E and not) on Redis and RabbitMQ
                 # a 3-master/3-replica Redis Cluster, a master/replica/3-sentinel set, masters killed (tests/support/redis_ha.py)
                 "test_redis_cluster", "test_redis_sentinel",
                 "test_shard_fetch",  # the reader's per-shard fetch on that Redis Cluster
                 "test_acl_cluster"}  # that Redis Cluster with `clustertop acl`'s users on every node


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rpartition(".")[2] if module is not None else ""
        if name in HEAVY_MODULES or HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.heavy)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server process on 127.0.0.1, private data dir, no persistence."""

    def __init__(self, extra: list[str] | None = None, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not installed: run the README's test command (it installs it)")
        self.port = port or free_port()  # a given port: a server coming back where it was
        self.dir = tempfile.mkdtemp(prefix="ct-redis-")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, *(extra or [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # NOAUTH: up, default user off (ACL file)
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def agent_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Agents the tests start (in process or as subprocesses, who inherit the environment) keep their state,
    the node key above all, in a temporary directory: never in the /var/lib/clustertop of the machine."""
    old = os.environ.get("STATE_DIRECTORY")
    path = os.environ["STATE_DIRECTORY"] = str(tmp_path_factory.mktemp("agent-state"))
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("STATE_DIRECTORY", None)
        else:
            os.environ["STATE_DIRECTORY"] = old


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh real Redis per test (starting one takes ~10 ms)."""
    srv = RedisServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def env_no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("CLUSTERTOP_"):
            monkeypatch.delenv(k, raising=False)


@pytest.fixture
def rcluster() -> Iterator[Any]:
    """A 3-master/3-replica Redis Cluster of real redis-servers (tests/support/redis_ha.py), for one test."""
    from tests.support.redis_ha import RedisCluster

    c = RedisCluster()
    try:
        yield c.start()
    finally:
        c.stop()
