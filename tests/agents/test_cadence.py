"""The full snapshot's cadence (issue 18, the byte budget): written every ``full_every_s`` of snapshot time and
every tick while a reader wants it; brief, digest and seal every tick; the seal always names the full snapshot
that is stored. Real redis-server, the real Publisher, with the agent's own client (store.resp) and redis-py.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.control import trust
from clustertop.store.resp import Client
from clustertop.wire import schema
from tests.conftest import RedisServer
from tests.support import builders as b

HOST = "gpu01"
EVERY = 5.0


def clients(srv: RedisServer) -> list[Any]:
    return [srv.client(), Client.from_url(srv.url)]


def tick(pub: Publisher, k: int, t0: float = b.NOW) -> schema.NodeSnapshot:
    snap = b.tower(HOST, utils=(k % 100, 5), ts=t0 + k, seq=k + 1)
    pub.publish(snap)
    return snap


def full_writes(pub: Publisher, ticks: range, t0: float = b.NOW) -> list[int]:
    """The ticks of ``ticks`` that wrote the full snapshot."""
    out = []
    for k in ticks:
        before = pub.fulls
        tick(pub, k, t0)
        if pub.fulls > before:
            out.append(k)
    return out


@pytest.mark.parametrize("kind", ["redis-py", "resp"])
def test_full_every_n_seconds_brief_and_digest_every_tick(redis_server: RedisServer, kind: str) -> None:
    client = clients(redis_server)[0 if kind == "redis-py" else 1]
    raw = redis_server.client()
    pub = Publisher(client, HOST, 1.0, full_every_s=EVERY, tiers=False)
    assert full_writes(pub, range(0, 12)) == [0, 5, 10]
    # Brief and digest are of the last tick; the full snapshot of the last full write (tick 10), and it says so.
    assert wire.decode(raw.get(wire.digest_key(HOST)), schema.NodeDigest).seq == 12
    assert wire.decode(raw.get(wire.brief_key(HOST)), schema.NodeSnapshot).seq == 12
    full = wire.decode(raw.get(wire.node_key(HOST)), schema.NodeSnapshot)
    assert (full.seq, full.full_every_s) == (11, EVERY)
    # The node key outlives its cadence (readable until the next full write is overdue); the others do not.
    assert raw.pttl(wire.node_key(HOST)) > EVERY * 1000
    assert raw.pttl(wire.digest_key(HOST)) <= 3000


def test_every_tick_while_wanted_then_back_to_the_cadence(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pub = Publisher(Client.from_url(redis_server.url), HOST, 1.0, full_every_s=EVERY, tiers=False)
    assert full_writes(pub, range(0, 3)) == [0]
    raw.set(wire.want_key(HOST), b"1", px=wire.WANT_PX_MS)
    # The tick that sees the want (tick 3) asks in its own MULTI; from the next tick on, full every tick.
    assert full_writes(pub, range(3, 8)) == [4, 5, 6, 7]
    raw.delete(wire.want_key(HOST))  # the want expired
    # Tick 8 still writes (it learnt the want at tick 7) and sees it gone; then every EVERY seconds again.
    assert full_writes(pub, range(8, 20)) == [8, 13, 18]


@pytest.mark.parametrize("kind", ["redis-py", "resp"])
def test_every_other_tick_while_wanted_with_full_every_wanted(redis_server: RedisServer, kind: str) -> None:
    """The agent's default (``[agent] full_every_wanted`` = 2 s): while wanted, a full snapshot every second
    tick, and the seal of the tick between names the one stored (it still verifies)."""
    raw = redis_server.client()
    client = clients(redis_server)[0 if kind == "redis-py" else 1]
    pub = Publisher(client, HOST, 1.0, full_every_s=EVERY, wanted_every_s=2.0, tiers=False, key=b.node_key(HOST))
    assert full_writes(pub, range(0, 3)) == [0]
    raw.set(wire.want_key(HOST), b"1", px=wire.WANT_PX_MS)
    assert full_writes(pub, range(3, 11)) == [4, 6, 8, 10]  # learnt at tick 3, then every 2 s
    tick(pub, 11)
    seal = wire.decode(raw.get(wire.seal_key(HOST)), schema.NodeSeal)
    assert seal.seq == 12 and seal.node == hashlib.sha256(raw.get(wire.node_key(HOST))).hexdigest()
    raw.delete(wire.want_key(HOST))
    assert full_writes(pub, range(12, 20)) == [12, 17]  # tick 12 learns it is gone; then every EVERY
    # A cadence while wanted at or below the interval means every tick, as without one.
    assert Publisher(client, HOST, 1.0, full_every_s=EVERY, wanted_every_s=1.0).wanted_every_s == 0.0


def test_a_want_expiring_by_itself_lets_go(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pub = Publisher(raw, HOST, 1.0, full_every_s=EVERY, tiers=False)
    tick(pub, 0)
    raw.set(wire.want_key(HOST), b"1", px=300)  # Redis's own clock expires it
    tick(pub, 1)
    assert pub.wanted
    time.sleep(0.4)
    tick(pub, 2)  # written in full (wanted at tick 1); sees the want gone
    assert not pub.wanted
    assert full_writes(pub, range(3, 8)) == [7]


@pytest.mark.parametrize("pttl", [None, wire.WANT_MAX_MS + 1000])
def test_a_want_without_expiry_or_beyond_the_cap_is_ignored(redis_server: RedisServer, pttl: int | None) -> None:
    raw = redis_server.client()
    pub = Publisher(raw, HOST, 1.0, full_every_s=EVERY, tiers=False)
    raw.set(wire.want_key(HOST), b"1", px=pttl)
    assert full_writes(pub, range(0, 6)) == [0, 5]
    assert not pub.wanted


def test_without_cadence_full_every_tick_and_no_probe(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pub = Publisher(raw, HOST, 1.0, tiers=False)  # full_every_s=0: as agents before the byte budget
    raw.set(wire.want_key(HOST), b"1", px=5000)
    assert full_writes(pub, range(0, 4)) == [0, 1, 2, 3]
    assert wire.decode(raw.get(wire.node_key(HOST)), schema.NodeSnapshot).full_every_s is None


@pytest.mark.parametrize("kind", ["redis-py", "resp"])
def test_seal_verifies_a_full_snapshot_written_ticks_before(redis_server: RedisServer, kind: str) -> None:
    client = clients(redis_server)[0 if kind == "redis-py" else 1]
    raw = redis_server.client()
    key = b.node_key(HOST)
    known = b.known_nodes(HOST)
    pub = Publisher(client, HOST, 1.0, key=key, full_every_s=EVERY, tiers=False)
    tick(pub, 0)
    tick(pub, 1)
    tick(pub, 2)  # the seal of tick 2; the full snapshot of tick 0
    data, seal = trust.read_sealed(raw, HOST)
    assert wire.decode(data, schema.NodeSnapshot).seq == 1
    assert wire.decode(seal, schema.NodeSeal).seq == 3
    assert trust.seal_verdict(HOST, data, seal, known).ok
    for kind_ in ("brief", "digest"):
        assert trust.seal_verdict(HOST, *trust.read_sealed(raw, HOST, kind_), known, kind_).ok
    # verified_snapshot (what a kill is built on) takes it too.
    snap, verdict = trust.verified_snapshot(raw, HOST, known)
    assert verdict.ok and snap is not None and snap.seq == 1


def test_seal_refuses_a_full_snapshot_of_another_tick(redis_server: RedisServer) -> None:
    """Someone who can write Redis puts back an older full snapshot of the same node (signed by it, once): the
    current seal names the SHA-256 of exactly the one last written, so the replay does not verify."""
    raw = redis_server.client()
    known = b.known_nodes(HOST)
    pub = Publisher(raw, HOST, 1.0, key=b.node_key(HOST), full_every_s=EVERY, tiers=False)
    tick(pub, 0)
    old = raw.get(wire.node_key(HOST))
    full_writes(pub, range(1, 7))  # tick 5 rewrote it
    current = raw.get(wire.node_key(HOST))
    assert current != old
    seal = raw.get(wire.seal_key(HOST))
    assert wire.decode(seal, schema.NodeSeal).node == hashlib.sha256(current).hexdigest()
    raw.set(wire.node_key(HOST), old, keepttl=True)
    data, seal = trust.read_sealed(raw, HOST)
    v = trust.seal_verdict(HOST, data, seal, known)
    assert not v.ok and "does not match its seal" in v.text


def test_simulator_batches_honour_wants(redis_server: RedisServer) -> None:
    """The simulator publishes many nodes in one pipeline (signed: one MULTI): each publisher learns its own
    want from that pipeline's replies."""
    from clustertop.sim.simulate import SimCluster, make_publishers, publish

    raw = redis_server.client()
    sim = SimCluster(seed=3, nodes=4)
    pubs = make_publishers(sim, raw, 1.0, full_every_s=EVERY)
    hosts = sorted(pubs)
    t = 1_900_000_000.0
    publish(raw, sim, t, pubs)
    assert all(p.fulls == 1 for p in pubs.values())
    raw.set(wire.want_key(hosts[1]), b"1", px=5000)
    for k in range(1, 5):
        publish(raw, sim, t + k, pubs)
    # Tick 1 saw the want; ticks 2 and 4 wrote hosts[1] in full (every 2 s while wanted, as agents do by
    # default: [agent] full_every_wanted); the others wrote nothing since tick 0.
    assert [pubs[h].fulls for h in hosts] == [1, 3, 1, 1]
    assert wire.decode(raw.get(wire.node_key(hosts[1])), schema.NodeSnapshot).ts == t + 4
    assert wire.decode(raw.get(wire.node_key(hosts[0])), schema.NodeSnapshot).ts == t


def test_after_a_failed_tick_the_full_snapshot_is_written_again(tmp_path: Any) -> None:
    """Redis restarted empty (or failed over to a replica that missed a write): the agent, which saw its tick
    fail, writes the full snapshot at the next tick that lands instead of waiting out its cadence, and the seal
    names that one."""
    from clustertop.store.resp import errors as store_errors

    srv = RedisServer()
    port = srv.port
    pub = Publisher(Client.from_url(srv.url), HOST, 1.0, key=b.node_key(HOST), full_every_s=EVERY, tiers=False)
    try:
        tick(pub, 0)
        srv.stop()
        with pytest.raises(store_errors()):
            tick(pub, 1)
        srv = RedisServer(port=port)
        tick(pub, 2)
        assert pub.fulls == 2
        raw = srv.client()
        assert wire.decode(raw.get(wire.node_key(HOST)), schema.NodeSnapshot).seq == 3
        assert trust.seal_verdict(HOST, *trust.read_sealed(raw, HOST), b.known_nodes(HOST)).ok
    finally:
        srv.stop()
