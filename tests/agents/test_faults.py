"""Faults with real processes: Redis paused (CLIENT PAUSE) and killed under a running agent, and an
oversized snapshot. Liveness bounds here are generous; bench/faults.py prints the real recovery times."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import pytest
import redis

from clustertop import wire
from clustertop.agents.agent import Agent
from clustertop.agents.config import AgentConfig, CollectorConfig
from clustertop.collectors import base
from clustertop.read.reader import Reader
from clustertop.wire import schema
from tests.conftest import ROOT, RedisServer


def _agent_proc(url: str, node: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "clustertop", "agent", "--redis", url, "--node", node,
                             "--interval", "0.5"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _seq(c: redis.Redis, node: str) -> int | None:
    """The node's latest tick, from its digest (written every tick; its full snapshot only every 15 s or so)."""
    raw = c.get(wire.digest_key(node))
    return wire.decode(raw, schema.NodeDigest).seq if raw else None


def _wait(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_agent_survives_client_pause_and_recovers(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    agent = _agent_proc(redis_server.url, "pz")
    try:
        assert _wait(lambda: _seq(c, "pz") is not None, 20)
        admin = redis_server.client()
        admin.execute_command("CLIENT", "PAUSE", 4000, "ALL")  # every client blocks for 4 s
        paused_at = time.monotonic()
        time.sleep(4.2)
        before = _seq(c, "pz") or 0
        assert agent.poll() is None, "agent died during the pause"
        assert _wait(lambda: (_seq(c, "pz") or 0) > before, 10), "agent did not publish after the pause"
        assert time.monotonic() - paused_at < 15
    finally:
        agent.terminate()
        err = agent.communicate(timeout=10)[1].decode()
    assert "Traceback" not in err


def test_agent_survives_redis_kill_and_restart_on_same_port(tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = RedisServer()
    port = srv.port
    agent = _agent_proc(srv.url, "kr")
    srv2 = None
    try:
        assert _wait(lambda: _seq(srv.client(), "kr") is not None, 20)
        srv.proc.kill()  # SIGKILL: no goodbye
        srv.proc.wait()
        time.sleep(2.0)  # the agent now backs off, collectors still run
        assert agent.poll() is None
        srv2 = RedisServer.__new__(RedisServer)
        srv2.port, srv2.dir, srv2.url = port, str(tmp_path), f"redis://127.0.0.1:{port}/0"
        srv2.proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(tmp_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        srv2._wait()
        back = time.monotonic()
        assert _wait(lambda: _seq(srv2.client(), "kr") is not None, 10), "no snapshot after Redis came back"
        recovered_s = time.monotonic() - back
        assert recovered_s < 10  # liveness; the backoff cap (1.5 s) makes it ~2 s: see bench/faults.py
        st = Reader(srv2.client()).read()
        assert st.node("kr") is not None and st.node("kr").state == "up"  # type: ignore[union-attr]
        # The restarted Redis is empty: the agent wrote its full snapshot again (it does not wait its cadence).
        assert st.node("kr").snap is not None and not st.node("kr").brief  # type: ignore[union-attr]
    finally:
        agent.terminate()
        err = agent.communicate(timeout=10)[1].decode()
        srv.stop()
        if srv2 is not None:  # also when an assertion failed: a server left behind outlives the run
            srv2.stop()
    assert "cannot publish" in err and err.count("cannot publish") == 1  # logged once per outage
    assert "Traceback" not in err


class Huge:
    """A runaway collector: hundreds of KiB of process rows."""

    name, field, scope, default_interval_s = "t_huge", "system", "node", 0.1

    def __init__(self, ctx: base.Context) -> None:
        pass

    def collect(self) -> schema.System:
        return schema.System(procs=[schema.Proc(pid=i, cmdline="x" * 500) for i in range(1000)])

    def close(self) -> None:
        pass


def run_agent_with(collector: str, cls: type, node: str, url: str, monkeypatch, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    """Run a real agent with only ``collector`` (``cls``, of this module) for ``seconds``; True if its
    loop was still alive until stopped and then ended."""
    monkeypatch.setitem(base.REGISTRY, collector, f"{__name__}:{cls.__name__}")
    cols = {n: CollectorConfig(name=n, enabled=False) for n in base.DEFAULT_NODE_COLLECTORS}
    cols[collector] = CollectorConfig(name=collector, enabled=True)
    agent = Agent(AgentConfig(node=node, redis_url=url, interval_s=0.2, collectors=cols))
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(seconds)
    alive = t.is_alive()
    stop.set()
    t.join(5)
    agent.close()
    return alive and not t.is_alive()


def test_oversized_snapshot_is_refused_with_a_logged_reason(redis_server, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR, logger="clustertop.agent"):
        assert run_agent_with("t_huge", Huge, "big", redis_server.url, monkeypatch, 1.0)
    assert redis_server.client().get(wire.node_key("big")) is None  # nothing half-written
    assert any("exceeds" in r.getMessage() for r in caplog.records)


class Overflowing:
    """A buggy collector: a counter past what msgpack's 64-bit ints carry (a parser that lets one through)."""

    name = "t_overflow"
    field = "system"

    def __init__(self, ctx: object) -> None:
        self.n = 0

    def collect(self) -> schema.System:
        self.n += 1
        return schema.System(procs_total=2**64 if self.n % 2 else 7)

    def close(self) -> None:
        pass


def test_int_past_64_bits_loses_that_tick_only(redis_server, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """OverflowError from the encoder is a logged, lost tick, never a dead loop: the next tick publishes."""
    with caplog.at_level(logging.ERROR, logger="clustertop.agent"):
        assert run_agent_with("t_overflow", Overflowing, "ovf", redis_server.url, monkeypatch, 1.5)
    raw = redis_server.client().get(wire.node_key("ovf"))
    assert raw is not None and wire.decode(raw, schema.NodeSnapshot).system.procs_total == 7
    assert any("not published" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("data", [b"\x00" * 10, b"\xde\xad\xbe\xef" * 1000, b"[bold red]x"])
def test_garbage_in_every_key_kind_never_breaks_the_reader(redis_server, data: bytes) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    c.zadd(wire.NODES_KEY, {"n1": time.time()})
    c.set(wire.node_key("n1"), data)
    for name in wire.CLUSTER_NAMES:
        c.set(wire.cluster_key(name), data)
    st = Reader(c).read()
    assert st.nodes[0].state == "bad" and "bad data from node n1" in (st.nodes[0].error or "")
    assert set(st.cluster_errors) == set(wire.CLUSTER_NAMES)
