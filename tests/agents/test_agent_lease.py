"""Cluster-scope collectors: one lease holder polls and publishes, the others stand by.

"ceph" in the registry is pointed at a small stand-in (the real one needs a Ceph mgr); the
leases live in a real redis-server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop import wire
from clustertop.agents.agent import Agent
from clustertop.agents.config import AgentConfig, CollectorConfig
from clustertop.agents.lease import Lease
from clustertop.collectors import base
from clustertop.read.reader import Reader
from clustertop.store.resp import Client
from clustertop.wire import schema

FAIL = threading.Event()


class FakeCeph:
    """Stands in for clustertop.collectors.ceph (scope cluster, field "ceph")."""

    name, field, scope, default_interval_s = "ceph", "ceph", "cluster", 0.2

    def __init__(self, ctx: base.Context) -> None:
        self.node = ctx.node
        self.calls = 0

    def collect(self) -> schema.Ceph:
        self.calls += 1
        if FAIL.is_set():
            raise ConnectionError("mgr unreachable")
        return schema.Ceph(status="HEALTH_OK", fsid=f"seen-by-{self.node}", osds_up=self.calls)

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_ceph(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(base.REGISTRY, "ceph", f"{__name__}:FakeCeph")
    FAIL.clear()
    yield
    FAIL.clear()


class Running:
    def __init__(self, node: str, client_factory) -> None:  # type: ignore[no-untyped-def]
        cols = {n: CollectorConfig(name=n, enabled=False) for n in base.DEFAULT_NODE_COLLECTORS}
        cols["ceph"] = CollectorConfig(name="ceph", interval_s=0.2)
        self.agent = Agent(AgentConfig(node=node, interval_s=0.2, collectors=cols), client_factory=client_factory)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.agent.run, args=(self.stop,), daemon=True)
        self.thread.start()

    @property
    def calls(self) -> int:
        return self.agent.runner.slots["ceph"].collector.calls  # type: ignore[union-attr]

    def halt(self, release: bool) -> None:
        self.stop.set()
        self.thread.join(10)
        if release:
            self.agent.close()


def payload(client) -> schema.ClusterPayload | None:  # type: ignore[no-untyped-def]
    raw = client.get(wire.cluster_key("ceph"))
    return wire.decode(raw, schema.ClusterPayload) if raw else None


def wait_for(pred, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    return None


def test_one_holder_publishes_and_others_take_over(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    a, b = Running("node-a", redis_server.client), Running("node-b", redis_server.client)
    c = None
    try:
        first = wait_for(lambda: (p := payload(client)) is not None and p.seq >= 3 and p)
        assert first, "no cluster payload"
        holder, standby = (a, b) if first.source_host == "node-a" else (b, a)
        assert first.ok and first.ceph is not None and first.ceph.fsid == f"seen-by-{first.source_host}"
        assert client.get(wire.lease_key("ceph")).decode().startswith(first.source_host + ":")
        # Only the holder polls the source; the standby never called it.
        assert holder.calls >= 3 and standby.calls == 0
        # Each node's published snapshot: the holder reports on ceph, the standby does not.
        nodes = Reader(client).read()
        assert "ceph" in nodes.node(holder.agent.cfg.node).snap.collectors  # type: ignore[union-attr]
        assert "ceph" not in nodes.node(standby.agent.cfg.node).snap.collectors  # type: ignore[union-attr]

        # The source fails: ok=False with the error, the last good data kept.
        FAIL.set()
        failed = wait_for(lambda: (p := payload(client)) is not None and not p.ok and p)
        assert failed and failed.error == "ConnectionError: mgr unreachable"
        assert failed.ceph is not None and failed.ceph.status == "HEALTH_OK"
        assert failed.last_ok_ts is not None and failed.last_ok_ts <= failed.ts
        FAIL.clear()

        # The holder dies without releasing: the standby takes over once the lease lapses.
        holder.halt(release=False)
        took = wait_for(lambda: (p := payload(client)) is not None and p.source_host == standby.agent.cfg.node
                        and p.ok and p)
        assert took, "standby never took over"
        assert standby.calls >= 1

        # A clean stop releases at once; a fresh agent picks it up.
        c = Running("node-c", redis_server.client)
        standby.halt(release=True)
        assert wait_for(lambda: (p := payload(client)) is not None and p.source_host == "node-c")
        holder.agent.close()
    finally:
        for r in (a, b, c):
            if r is not None:
                r.halt(release=True)


def test_renew_never_extends_someone_elses_lease(redis_server) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    mine = Lease(redis_server.client(), "ceph", "me", period_s=1.0, clock=lambda: now[0])
    assert mine.refresh() and mine.held
    # Our lease lapses in Redis (we were paused) and another agent takes it.
    redis_server.client().delete(wire.lease_key("ceph"))
    other = Lease(redis_server.client(), "ceph", "other", period_s=1.0)
    assert other.refresh()
    now[0] += 1.0
    assert not mine.refresh() and not mine.held  # the compare-and-set renew refused
    assert redis_server.client().get(wire.lease_key("ceph")).decode() == other.token
    mine._held_until = 1e9  # even believing we hold it, release must not delete theirs
    mine.release()
    assert redis_server.client().get(wire.lease_key("ceph")).decode() == other.token


def test_holder_paused_past_its_own_margin_renews_its_key(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Our idea of the lease lapses at 0.9 of its TTL, Redis's at 1.0: a holder paused in between finds its
    own token still in the key and renews it, instead of SET NX failing and nobody holding it for a period.
    Another agent's token is never renewed by us (previous test)."""
    now = [0.0]
    mine = Lease(redis_server.client(), "ceph", "me", period_s=1.0, clock=lambda: now[0])
    other = Lease(redis_server.client(), "ceph", "other", period_s=1.0, clock=lambda: now[0])
    assert mine.refresh()
    now[0] += mine.ttl_ms / 1000 * 0.95  # past our own margin, the key still there (not expired in Redis)
    assert not mine.held
    assert not other.refresh()  # the key is still ours: nobody else can take it ...
    assert mine.refresh() and mine.held  # ... and we keep it
    assert 0 < redis_server.client().pttl(wire.lease_key("ceph")) <= mine.ttl_ms
    assert redis_server.client().get(wire.lease_key("ceph")).decode() == mine.token


def test_dry_run_polls_cluster_collectors_without_a_lease() -> None:
    cols = {n: CollectorConfig(name=n, enabled=False) for n in base.DEFAULT_NODE_COLLECTORS}
    cols["ceph"] = CollectorConfig(name="ceph")
    agent = Agent(AgentConfig(node="dry", collectors=cols), dry_run=True)
    snap, cluster = agent.tick()
    agent.close()
    assert [p.name for p in cluster] == ["ceph"]
    assert cluster[0].ok and cluster[0].ceph is not None and cluster[0].source_host == "dry"
    assert snap.collectors["ceph"].ok


def test_lease_on_the_embedded_store() -> None:
    """Local mode runs on fakeredis: the same WATCH/MULTI compare-and-set as on a real server."""
    from clustertop.store import embedded

    _, factory = embedded()
    now = [0.0]
    mine = Lease(factory(), "ceph", "me", period_s=1.0, clock=lambda: now[0])
    other = Lease(factory(), "ceph", "other", period_s=1.0, clock=lambda: now[0])
    assert mine.refresh() and not other.refresh()
    now[0] += 1.0
    assert mine.refresh()  # renewed
    factory().set(wire.lease_key("ceph"), other.token)  # taken over behind our back
    now[0] += 1.0
    assert not mine.refresh()
    mine._held_until = 1e9
    mine.release()
    assert factory().get(wire.lease_key("ceph")).decode() == other.token
    other._held_until = 1e9
    other.release()
    assert factory().get(wire.lease_key("ceph")) is None


def test_lease_needs_no_eval(redis_server: Any) -> None:
    """Node users are not granted EVAL (a Lua loop stalls Redis for everyone): the lease works without it."""
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "noeval", "on", ">pw", "~*", "+@all", "-eval", "-evalsha", "-fcall")
    try:
        client = Client.from_url(redis_server.url.replace("redis://", "redis://noeval:pw@"))
        now = [0.0]
        mine = Lease(client, "ceph", "me", period_s=1.0, clock=lambda: now[0])
        assert mine.refresh()
        now[0] += 1.0
        assert mine.refresh() and admin.pttl(wire.lease_key("ceph")) > 2000  # renewed, no EVAL
        admin.set(wire.lease_key("ceph"), "someone-else")
        now[0] += 1.0
        assert not mine.refresh()
        mine._held_until = 1e9
        mine.release()
        assert admin.get(wire.lease_key("ceph")) == b"someone-else"
    finally:
        admin.execute_command("ACL", "DELUSER", "noeval")
