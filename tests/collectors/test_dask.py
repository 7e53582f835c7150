"""Tests for the ``dask`` collector and worker retirement, against a real ``distributed`` scheduler with
three real workers, each in its own process (``dask scheduler`` / ``dask worker``), dashboard HTTP on
a free loopback port. The parse-time figure at 1,000 workers is printed, not asserted (speed belongs
in bench/).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustertop import wire
from clustertop.collectors import queues_parse
from clustertop.collectors.base import Context
from clustertop.collectors.dask import DaskCollector, DaskUnreachable, parse_settings
from clustertop.config import ConfigError
from clustertop.control.dask import retire_worker
from clustertop.wire import schema
from tests.conftest import FIXTURES, free_port

WAIT_S = 60.0
FIX = FIXTURES / "queues"


def wait_for(what: str, cond: Callable[[], Any], timeout: float = WAIT_S, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class DaskCluster:
    """``dask scheduler`` plus ``n`` ``dask worker`` processes (no nanny: retiring must end the process)."""

    def __init__(self, n: int = 3, extra_env: dict[str, str] | None = None) -> None:
        self.port, self.http_port = free_port(), free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dir = tempfile.mkdtemp(prefix="ct-dask-")  # workers' scratch space, removed in stop()
        self.env = {**os.environ, **(extra_env or {}), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                     "--dashboard-address", f"127.0.0.1:{self.http_port}"])
        for i in range(n):
            self._spawn(["worker", self.address, "--host", "127.0.0.1", "--nthreads", str(i + 1),
                         "--memory-limit", f"{i + 1}GiB", "--name", f"w{i}", "--no-nanny", "--no-dashboard",
                         "--local-directory", self.dir])

    def _spawn(self, args: list[str]) -> None:
        self.procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
                                           env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True))

    def stop(self) -> None:
        # Workers first, and killed: a worker told to stop waits for its running tasks (cancelled
        # futures keep their thread), and one whose scheduler vanished first ignores SIGTERM while it
        # tries to reconnect. The scheduler then stops cleanly.
        for p in self.procs[1:]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        sched = self.procs[0]
        if sched.poll() is None:
            os.killpg(sched.pid, signal.SIGTERM)
            try:
                sched.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(sched.pid, signal.SIGKILL)
                sched.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[DaskCluster, Any]]:
    from distributed import Client

    c = DaskCluster(3)
    client = None
    try:
        client = Client(c.address, timeout=WAIT_S, set_as_default=False)
        client.wait_for_workers(3, timeout=WAIT_S)
        yield c, client
    finally:
        if client is not None:
            client.close()
        c.stop()


def collector(urls: list[str]) -> DaskCollector:
    return DaskCollector(Context(node="poller", config={"schedulers": urls, "request_timeout": 5}, config_file="agent.toml"))


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def test_settings_errors_name_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"agent.toml: \[collectors.dask\] schedulers: required"):
        parse_settings({}, "agent.toml")
    with pytest.raises(ConfigError, match=r"not an http\(s\) URL: 'tcp://h:8786' \(that is the scheduler's comm"):
        parse_settings({"schedulers": ["tcp://h:8786"]}, "agent.toml")
    with pytest.raises(ConfigError, match=r"\[collectors.dask\] scheduler: unknown key"):
        parse_settings({"scheduler": "http://h:8787"}, "agent.toml")
    assert parse_settings({"schedulers": ["http://h:8787/"]}, None) == (("http://h:8787",), 3.0)


def test_parse_captured_identity_and_counts() -> None:
    ident = queues_parse.parse_dask_identity((FIX / "dask_identity.json").read_bytes(), 0.0)
    raw = json.loads((FIX / "dask_identity.json").read_text())
    assert ident.address == raw["address"]
    assert [w.name for w in ident.workers] == sorted(raw["workers"])
    for w in ident.workers:
        src = raw["workers"][w.name]
        assert w.kind == "dask" and w.online is True and w.nthreads == src["nthreads"]
        assert w.mem_bytes == src["metrics"]["memory"] and w.mem_limit_bytes == src["memory_limit"]
        assert w.processing == sum(src["metrics"]["task_counts"].values())  # executing + ready here
    counts = queues_parse.parse_dask_counts(json.loads((FIX / "dask_counts.json").read_text()))
    assert counts.processing == sum(w.processing or 0 for w in ident.workers) == 6
    assert counts.waiting == 0  # 4 tasks were queued on the scheduler: counts.json cannot see them
    states = queues_parse.parse_dask_task_states((FIX / "dask_metrics.txt").read_text())
    assert states is not None and states["processing"] == 6 and states["queued"] == 4
    assert queues_parse.parse_dask_task_states(
        "# Prometheus metrics are not available, see: https://docs.dask.org/...") is None


def test_parse_unknowns_stay_none() -> None:
    doc = {"type": "Scheduler", "address": "tcp://s:8786",
           "workers": {"tcp://a:1": {"host": "a", "memory_limit": 0, "status": "closing_gracefully"}}}
    (w,) = queues_parse.parse_dask_identity(json.dumps(doc), 0.0).workers
    assert w.mem_limit_bytes is None  # 0 = "no limit", not a zero-byte limit
    assert w.mem_bytes is None and w.processing is None and w.nthreads is None
    assert w.online is False  # retiring
    with pytest.raises(ValueError, match="not a scheduler identity document"):
        queues_parse.parse_dask_identity(b'{"type": "Worker", "workers": {}}', 0.0)
    with pytest.raises(ValueError, match="not a scheduler identity document"):
        queues_parse.parse_dask_identity(b"<html>", 0.0)


def test_parse_time_at_1000_workers_is_reported() -> None:
    """Synthesize a 1,000-worker identity.json from the captured worker entry and time the parse."""
    raw = json.loads((FIX / "dask_identity.json").read_text())
    template = next(iter(raw["workers"].values()))
    raw["workers"] = {f"tcp://10.0.{i // 250}.{i % 250}:40000": {**template, "name": f"w{i}", "id": f"w{i}"}
                      for i in range(1000)}
    doc = json.dumps(raw).encode()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        ident = queues_parse.parse_dask_identity(doc, 0.0)
        best = min(best, time.perf_counter() - t0)
    assert len(ident.workers) == 1000 and all(w.nthreads == template["nthreads"] for w in ident.workers)
    print(f"\ndask identity.json at 1,000 workers: {len(doc) / 1e6:.2f} MB, parsed in {best * 1000:.1f} ms (best of 5)")


# ---------------------------------------------------------------------------------------------
# A real scheduler and workers
# ---------------------------------------------------------------------------------------------


def test_workers_match_the_schedulers_own_view(cluster: tuple[DaskCluster, Any]) -> None:
    c, client = cluster
    col = collector([c.url])
    try:
        info = client.scheduler_info(n_workers=-1)
        q = col.collect()
    finally:
        col.close()
    assert q.errors is None and q.queues is None
    by_addr = {w.name: w for w in q.workers or []}
    assert set(by_addr) == set(info["workers"]) and len(by_addr) == 3
    for addr, ws in info["workers"].items():
        w = by_addr[addr]
        assert w.kind == "dask" and w.online is True and w.host == "127.0.0.1"
        assert w.nthreads == ws["nthreads"] and w.mem_limit_bytes == ws["memory_limit"]
        assert w.mem_bytes is not None and w.mem_bytes > 0
    assert sorted(w.nthreads or 0 for w in by_addr.values()) == [1, 2, 3]
    assert col.addresses[c.url] == c.address


def test_task_counts_match_the_scheduler_while_tasks_run(cluster: tuple[DaskCluster, Any]) -> None:
    c, client = cluster
    # More tasks than the 6 threads take: the rest wait, queued on the scheduler.
    # time.sleep pickles by reference to a module every worker has (a test-module function would not).
    futures = client.map(time.sleep, [60] * 40, pure=False)
    col = collector([c.url])
    try:
        # Wait until every thread (1 + 2 + 3) runs a task and every worker has told the scheduler
        # in a heartbeat, so the two views describe the same moment.
        def settled() -> Any:
            q = col.collect()
            processing = client.processing()
            busy = sum(len(v) for v in processing.values())
            per = {w.name: w.processing for w in q.workers or []}
            if busy >= 6 and q.dask_tasks_processing == busy and all(
                    per.get(a) == len(v) for a, v in processing.items()):
                return q, processing
            return None

        q, processing = wait_for("collector and scheduler to agree on processing tasks", settled)
        # The scheduler's own task states, read inside the scheduler (60 s tasks: nothing moved).
        # A lambda: cloudpickle sends it by value (a module function would need this module there).
        states = client.run_on_scheduler(
            lambda dask_scheduler: dict(Counter(t.state for t in dask_scheduler.tasks.values())))
    finally:
        col.close()
        client.cancel(futures)
    assert q.dask_tasks_processing == sum(len(v) for v in processing.values()) == states["processing"] >= 6
    not_started = sum(states.get(s, 0) for s in ("waiting", "queued", "no-worker"))
    assert q.dask_tasks_waiting == not_started == 40 - states["processing"] > 0
    assert col._prom_retry == {}  # the exact counts came from the scheduler's Prometheus metrics


def test_one_scheduler_down_others_report_all_down_raises(cluster: tuple[DaskCluster, Any]) -> None:
    c, _ = cluster
    dead = f"http://127.0.0.1:{free_port()}"
    col = collector([c.url, dead])
    try:
        q = col.collect()
        assert len(q.workers or []) == 3
        assert q.errors and q.errors[0].startswith(f"scheduler {dead}: ConnectError")
    finally:
        col.close()
    only = collector([dead])
    try:
        with pytest.raises(DaskUnreachable, match=r"Dask schedulers unreachable: scheduler http://127"):
            only.collect()
    finally:
        only.close()


def test_retire_really_removes_a_worker(cluster: tuple[DaskCluster, Any]) -> None:
    """Last in the module: it takes a worker away. The scheduler serves no /api/v1 by default, so
    this also proves the fallback through the scheduler's comm address."""
    c, client = cluster
    victim = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
    r = retire_worker(c.url, victim, timeout=WAIT_S)
    assert r.ok, r.text
    assert victim in r.data["retired"] and "client API" in r.text
    wait_for("the worker to leave the scheduler", lambda: victim not in client.scheduler_info(n_workers=-1)["workers"])
    col = collector([c.url])
    try:
        names = {w.name for w in col.collect().workers or []}
    finally:
        col.close()
    assert victim not in names and len(names) == 2
    again = retire_worker(c.url, victim, timeout=10)
    assert not again.ok and "retired nothing" in again.text


def test_retire_through_the_http_api_when_enabled(tmp_path: Path) -> None:
    """A scheduler with ``distributed.http.scheduler.api`` in its routes answers /api/v1/retire_workers."""
    cfg = tmp_path / "dask.yaml"
    routes = ["distributed.http.scheduler.prometheus", "distributed.http.scheduler.info",
              "distributed.http.scheduler.json", "distributed.http.health", "distributed.http.proxy",
              "distributed.http.statics", "distributed.http.scheduler.api"]
    cfg.write_text(json.dumps({"distributed": {"scheduler": {"http": {"routes": routes}}}}))  # JSON is YAML
    c = DaskCluster(1, extra_env={"DASK_CONFIG": str(tmp_path)})
    try:
        from distributed import Client

        with Client(c.address, timeout=WAIT_S, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=WAIT_S)
            (victim,) = client.scheduler_info(n_workers=-1)["workers"]
            r = retire_worker(c.url, victim, timeout=WAIT_S)
            assert r.ok and "HTTP API" in r.text, r.text
            wait_for("the worker to leave", lambda: not client.scheduler_info(n_workers=-1)["workers"])
    finally:
        c.stop()


def test_hung_scheduler_times_out() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)  # accepts, never answers: a hung scheduler
    try:
        col = DaskCollector(Context(node="p", config={"schedulers": [f"http://127.0.0.1:{s.getsockname()[1]}"],
                                                      "request_timeout": 0.5}))
        try:
            with pytest.raises(DaskUnreachable, match="ReadTimeout"):
                col.collect()
        finally:
            col.close()
    finally:
        s.close()


def test_task_counts_past_int64_are_not_shown_as_numbers() -> None:
    """Each count fits where it is parsed; their sum over states need not. A real HTTP server stands
    in for a scheduler gone wrong (its captured identity, absurd Prometheus counts)."""
    import http.server
    import threading

    identity = (FIX / "dask_identity.json").read_bytes()
    metrics = "".join(f'dask_scheduler_tasks{{state="{s}"}} {2**63}\n' for s in ("waiting", "queued", "processing"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = identity if self.path == "/json/identity.json" else metrics.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    # Two schedulers (the same server twice): each one's counts fit, their sums do not.
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    col = DaskCollector(Context(node="p", config={"schedulers": [url, url + "/"]}))
    try:
        q = col.collect()
        errors = " ".join(q.errors or [])
        assert q.dask_tasks_waiting is None and "waiting task count out of range" in errors
        assert q.dask_tasks_processing is None and "processing task count out of range" in errors
        assert q.workers  # the rest of the payload is still there
        wire.encode(schema.ClusterPayload(name="dask", queues=q))  # and it fits the wire
    finally:
        col.close()
        srv.shutdown()
