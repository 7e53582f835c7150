"""Reading every node's detail without pinning it (issue 18): ``Level.DETAIL`` writes no want keys, and a reader
fetches only the full snapshots that changed (``read.fullcache``), counted on the wire, not timed. Real
redis-server, the real Publisher and Reader; fulls counted by the node keys the reader's connection sends.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.control import signing, trust
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.read.want import Wants
from clustertop.wire import schema
from tests.conftest import RedisServer
from tests.support import builders as b

EVERY = 5.0
DETAIL = ReadPlan(Level.DETAIL)
NODE_KEY = wire.node_key("").encode()[:-2]  # b"ct:v1:node:{"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Sent(redis.Connection):
    """A connection that keeps what it sends: the full snapshots a read fetches are its node keys."""

    log: list[bytes] = []

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        Sent.log.append(b"".join(command) if isinstance(command, list) else bytes(command))
        return super().send_packed_command(command, check_health)


def counting(server: RedisServer) -> redis.Redis:
    return redis.Redis(connection_pool=redis.ConnectionPool.from_url(server.url, connection_class=Sent))


def fulls_fetched(hosts: list[str]) -> dict[str, int]:
    """Per host, how many times its full snapshot's key was sent since the log was cleared."""
    sent = b"".join(Sent.log)
    return {h: sent.count(wire.node_key(h).encode()) for h in hosts}


def cluster(raw: Any, n: int = 12, keys: dict[str, signing.PrivateKey] | None = None) -> dict[str, Publisher]:
    hosts = [f"gpu{i:02d}" for i in range(n)]
    return {h: Publisher(raw, h, 1.0, full_every_s=EVERY, tiers=False, key=(keys or {}).get(h)) for h in hosts}


def tick(pubs: dict[str, Publisher], k: int) -> None:
    for h, pub in pubs.items():
        pub.publish(b.tower(h, utils=(10 + k, 5), ts=b.NOW + k, seq=k + 1))


def test_a_detail_read_writes_no_want_and_its_agents_keep_their_cadence(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cluster(raw, 4)
    tick(pubs, 0)
    reader = Reader(raw, clock=Clock(b.NOW), wants=Wants(), brief_from=1)
    for k in range(1, 8):
        state = reader.read(DETAIL)
        assert all(v.state == "up" and v.snap is not None and not v.brief for v in state.nodes)
        tick(pubs, k)
    assert reader.wants is not None and reader.wants.writes == 0
    assert raw.keys(wire.want_key("*")) == []
    assert [p.fulls for p in pubs.values()] == [2] * 4  # ticks 0 and 5 only
    # The same reader asked for ALL_FULL wants every node (as `snapshot --fresh-detail` does).
    reader.read(ALL_FULL)
    assert sorted(raw.keys(wire.want_key("*"))) == sorted(wire.want_key(h).encode() for h in pubs)


def test_only_the_full_snapshots_that_changed_are_fetched(redis_server: RedisServer) -> None:
    """Twelve nodes on a 5 s cadence, spread over it; a read after every tick. Each full snapshot is fetched
    about once per cadence, in the read's first round trip, and what the reader shows is exactly what a
    reader with nothing kept shows."""
    raw = redis_server.client()
    pubs = cluster(raw)
    hosts = list(pubs)
    # Spread the cadences: node i writes its first full snapshot at tick i mod 5 (as wanted for that tick).
    for k in range(5):
        for i, pub in enumerate(pubs.values()):
            pub.wanted = i % 5 == k
        tick(pubs, k)
    clock = Clock(b.NOW + 5)
    reader = Reader(counting(redis_server), clock=clock, brief_from=1)
    reader.read(DETAIL)  # the first read fetches everything (nothing kept yet)
    Sent.log.clear()
    per_read = []
    for k in range(5, 25):
        tick(pubs, k)
        clock.t = b.NOW + k
        Sent.log.clear()
        state = reader.read(DETAIL)
        fetched = fulls_fetched(hosts)
        per_read.append(sum(fetched.values()))
        assert len(Sent.log) == 1, k  # the changed ones were predicted: one round trip
        fresh = Reader(raw, clock=clock, brief_from=1).read(DETAIL)
        for v, w in zip(state.nodes, fresh.nodes, strict=True):
            assert v.snap == w.snap and v.detail_age_s == w.detail_age_s, (k, v.host)
    # 20 reads x 12 nodes = 240 full snapshots if each were fetched on every read; each node writes 4 in that time.
    assert sum(per_read) == 4 * 12, per_read
    assert max(per_read) <= 3
    assert reader.fulls.decoded >= 4 * 12 and len(reader.fulls) == 12


def test_a_full_snapshot_written_off_cadence_is_fetched_in_the_same_read(redis_server: RedisServer) -> None:
    """One node writes in full when its cadence did not say so (another reader wanted it): its digest, read in
    the same round trip, says so, and the read fetches it at once (one more MGET), never showing the older one."""
    raw = redis_server.client()
    pubs = cluster(raw, 3)
    tick(pubs, 0)
    clock = Clock(b.NOW + 1)
    reader = Reader(counting(redis_server), clock=clock, brief_from=1)
    reader.read(DETAIL)
    tick(pubs, 1)
    reader.read(DETAIL)
    pubs["gpu01"].wanted = True  # someone's node screen: this tick is in full
    tick(pubs, 2)
    Sent.log.clear()
    state = reader.read(DETAIL)
    assert fulls_fetched(list(pubs)) == {"gpu00": 0, "gpu01": 1, "gpu02": 0}
    assert len(Sent.log) == 2
    v = state.node("gpu01")
    assert v is not None and v.snap is not None and v.snap.seq == 3 and v.detail_age_s is None
    other = state.node("gpu00")
    assert other is not None and other.detail_age_s is not None  # its full snapshot is from tick 0, and says so


def test_a_node_wanted_by_another_reader_is_fetched_every_read_in_one_round_trip(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cluster(raw, 2)
    tick(pubs, 0)
    clock = Clock(b.NOW)
    reader = Reader(counting(redis_server), clock=clock, brief_from=1)
    reader.read(DETAIL)
    for k in range(1, 6):
        pubs["gpu00"].wanted = True
        tick(pubs, k)
        Sent.log.clear()
        state = reader.read(DETAIL)
        assert state.node("gpu00").snap.seq == k + 1  # type: ignore[union-attr]
        if k in (3, 4):  # learnt: written every tick, fetched in the first round trip; gpu01 not due till tick 5
            assert len(Sent.log) == 1 and fulls_fetched(["gpu00", "gpu01"]) == {"gpu00": 1, "gpu01": 0}, k
    # Nobody wants it any more: back on its cadence (next full snapshot at tick 10), it is no longer fetched.
    for k in range(6, 10):
        tick(pubs, k)
        Sent.log.clear()
        state = reader.read(DETAIL)
        assert state.node("gpu00").snap.seq == k + 1  # type: ignore[union-attr]  # its brief's figures over tick 5's
        if k >= 7:
            assert fulls_fetched(["gpu00", "gpu01"]) == {"gpu00": 0, "gpu01": 0}, k


def test_an_agent_without_full_ts_has_its_full_snapshot_fetched_on_every_read(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cluster(raw, 2)
    reader = Reader(counting(redis_server), clock=Clock(b.NOW), brief_from=1)
    for k in range(6):
        tick(pubs, k)
        # gpu00's agent is from before ``full_ts``: its digest (re-encoded without it) does not say.
        d = wire.decode(raw.get(wire.digest_key("gpu00")), schema.NodeDigest)
        assert d.full_ts is not None
        raw.set(wire.digest_key("gpu00"), wire.pack(wire.encode(msgspec.structs.replace(d, full_ts=None)), "digest"),
                px=3000)
        Sent.log.clear()
        state = reader.read(DETAIL)
        got = fulls_fetched(["gpu00", "gpu01"])
        assert got["gpu00"] == 1, k
        if k in (2, 3):  # gpu01: written at tick 0, next at tick 5 (due: fetched at tick 4's read)
            assert got["gpu01"] == 0, k
        assert state.node("gpu00").state == "up"  # type: ignore[union-attr]


def test_a_replaced_full_snapshot_is_refused_where_its_seal_is_checked(redis_server: RedisServer) -> None:
    """A hostile writer replaces a node's full snapshot and leaves its digest alone (so a reader keeping the
    old one would not fetch it): the read that checks the node's seal fetches the bytes Redis holds now, beside
    the seal, and they are refused; the forged figures never pass as verified."""
    raw = redis_server.client()
    keys = {f"gpu{i:02d}": signing.new_key() for i in range(3)}
    pubs = cluster(raw, 3, keys)
    known = trust.KnownNodes(keys={h: k.public() for h, k in keys.items()})
    tick(pubs, 0)
    clock = Clock(b.NOW + 1)
    reader = Reader(counting(redis_server), clock=clock, brief_from=1)
    reader.read(DETAIL)
    tick(pubs, 1)
    state = reader.read(DETAIL, seals=["gpu01"])
    kind, payload, seal = state.sealed["gpu01"]
    assert kind == "node" and trust.seal_verdict("gpu01", payload, seal, known, kind).ok
    # The forgery: gpu01's full snapshot with another process list, packed as an agent packs it.
    forged = b.tower("gpu01", utils=(99, 99), ts=b.NOW, seq=1)
    forged.full_every_s = EVERY
    raw.set(wire.node_key("gpu01"), wire.pack(wire.encode(forged), "node"), keepttl=True)
    Sent.log.clear()
    state = reader.read(DETAIL, seals=["gpu01"])
    assert fulls_fetched(["gpu01"]) == {"gpu01": 1}  # a sealed host's full snapshot is always fetched
    kind, payload, seal = state.sealed["gpu01"]
    assert payload == raw.get(wire.node_key("gpu01"))
    verdict = trust.seal_verdict("gpu01", payload, seal, known, kind)
    assert not verdict.ok and "does not match its seal" in verdict.text
    # Its agent's next full snapshot (its cadence) replaces the forgery, and verifies again.
    for k in range(2, 6):
        tick(pubs, k)
    state = reader.read(DETAIL, seals=["gpu01"])
    kind, payload, seal = state.sealed["gpu01"]
    assert trust.seal_verdict("gpu01", payload, seal, known, kind).ok
    assert state.node("gpu01").snap.seq == 6  # type: ignore[union-attr]


def test_garbage_in_a_digests_full_ts_only_makes_the_reader_fetch(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cluster(raw, 2)
    tick(pubs, 0)
    reader = Reader(counting(redis_server), clock=Clock(b.NOW), brief_from=1)
    reader.read(DETAIL)
    for bad in (float("nan"), 1e308, -1.0):
        d = wire.decode(raw.get(wire.digest_key("gpu00")), schema.NodeDigest)
        raw.set(wire.digest_key("gpu00"), wire.pack(wire.encode(msgspec.structs.replace(d, full_ts=bad)), "digest"),
                px=3000)
        Sent.log.clear()
        state = reader.read(DETAIL)
        v = state.node("gpu00")
        assert v is not None and v.state == "up" and v.snap is not None and v.snap.seq == 1, bad
    Sent.log.clear()
    reader.read(DETAIL)
    assert fulls_fetched(["gpu00"]) == {"gpu00": 1}  # whatever its digest said last, it is fetched


def test_a_host_leaving_the_index_leaves_the_cache(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cluster(raw, 5)
    tick(pubs, 0)
    reader = Reader(raw, clock=Clock(b.NOW), brief_from=1)
    reader.read(DETAIL)
    assert len(reader.fulls) == 5
    raw.zrem(wire.NODES_KEY, "gpu03", "gpu04")
    reader.read(DETAIL)
    assert len(reader.fulls) == 3
    # A node whose full snapshot's key is gone keeps nothing either.
    raw.delete(wire.node_key("gpu00"))
    raw.set(wire.digest_key("gpu00"), b"", px=1)  # and its digest says nothing: fetched, found gone
    reader.read(DETAIL)
    assert len(reader.fulls) == 2
