"""The reader's own fetch on a Redis Cluster (clustertop/read/shards.py), on a real 3-master/3-replica cluster
(tests/support/redis_ha.py): the same ClusterState as redis-py's cluster pipeline gives, one write per master
per read, and the read handed back to redis-py's pipeline (which follows ASK/MOVED and reconnects) whenever a
reply is a redirect or an error or a connection fails, never a connection pooled half-read. Heavy (the cluster).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from clustertop import store, wire
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.store import slots
from clustertop.store.resp import errors as store_errors
from tests.support import builders as b
from tests.support.redis_ha import RedisCluster

#: Host names that must route like any other: braces (the hash tag is the first {...}), bidi, long.
HOSTILE = ["a}b{c", "ünï\u202ecode", "x" * 300, "{", "gpu-{7}"]
HOSTS = [f"n{i:02}" for i in range(40)] + HOSTILE


#: Writes sent per server port (``counting`` wraps redis-py's Connection.send_packed_command).
SENDS: Counter[int] = Counter()


@pytest.fixture(autouse=True)
def counting(monkeypatch: pytest.MonkeyPatch) -> None:
    real = redis.connection.Connection.send_packed_command

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        SENDS[self.port] += 1
        return real(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", send_packed_command)


# One cluster for the module (its tests only read and fill it): overrides conftest's per-test one.
@pytest.fixture(scope="module")
def rcluster() -> Iterator[RedisCluster]:
    c = RedisCluster()
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def py(rcluster: RedisCluster) -> Any:
    """redis-py's RedisCluster behind ``store.connect`` (as the dashboard gets it), the cluster filled."""
    client = store.connect(rcluster.url, health_check_interval=0)  # no PING of its own among the writes counted
    for port in masters(rcluster):
        redis.Redis(port=port).flushall()
    now = time.time()
    keys = {h: b.node_key(h) for h in HOSTS}
    b.publish(client, [b.tower(h, ts=now) for h in HOSTS], cluster=[b.ceph()], keys=keys)
    client.set(wire.digest_key("n07"), b"\x00\xffnot msgpack")  # bad data on one node only
    client.zadd(wire.NODES_KEY, {"gone01": now - 5})  # listed, no keys: stale
    return client


def masters(rc: RedisCluster) -> list[int]:
    return [p for p in rc.live() if rc.role(p) == "master"]


def same(a: Any, b_: Any) -> None:
    assert [(n.host, n.last_seen_ts, n.state, n.error, n.digest, n.snap, n.brief) for n in a.nodes] == \
        [(n.host, n.last_seen_ts, n.state, n.error, n.digest, n.snap, n.brief) for n in b_.nodes]
    assert a.totals == b_.totals and a.cluster == b_.cluster and a.sealed == b_.sealed


def test_same_state_as_redis_py_in_one_write_per_master(rcluster: RedisCluster, py: Any) -> None:
    fast, slow = Reader(py, brief_from=0), Reader(py, brief_from=0, shard_fetch=False)
    plans = [ReadPlan(Level.DIGESTS), ReadPlan(Level.GPUS, full_hosts=frozenset({"n03", HOSTILE[1]})),
             ReadPlan(Level.BRIEFS), ALL_FULL]
    for plan in plans:
        for r in (fast, slow):
            r.read(plan)  # hosts new to the index: their keys in a second round
        SENDS.clear()
        st = fast.read(plan, seals=["n03", HOSTILE[0]])
        assert fast.shard_fetch is not None and fast.shard_fetch.fell_back is None
        # One write per master, the index and the cluster payloads in them too; nothing to the replicas.
        assert dict(SENDS) == {p: 1 for p in masters(rcluster)}, plan
        same(st, slow.read(plan, seals=["n03", HOSTILE[0]]))
        states = {n.host: n.state for n in st.nodes}
        assert states.pop("n07") == "bad" and states.pop("gone01") == "stale"
        assert set(states) == set(HOSTS) - {"n07"} and set(states.values()) == {"up"}
        assert "ceph" in st.cluster and set(st.sealed) == {"n03", HOSTILE[0]}
        assert all(data is not None and seal is not None for _, data, seal in st.sealed.values())


def test_a_slot_being_migrated_then_moved_falls_back_then_recovers(rcluster: RedisCluster, py: Any) -> None:
    """As ``redis-cli --cluster reshard`` moves one node's slot: while its keys have left and the slot has
    not (ASK), and once the slot has (MOVED): those reads are redis-py's, right; then the fast path again."""
    reader = Reader(py, brief_from=0)
    plan = ReadPlan(Level.GPUS)
    reader.read(plan)
    before = reader.read(plan)
    host = "n11"
    key = wire.digest_key(host)
    src = rcluster.master_of(key)
    dst = next(p for p in masters(rcluster) if p != src)
    s, d = redis.Redis(port=src), redis.Redis(port=dst)
    slot = slots.keyslot(key)
    sid, did = s.execute_command("CLUSTER", "MYID").decode(), d.execute_command("CLUSTER", "MYID").decode()
    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
    moving = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
    assert wire.digest_key(host).encode() in moving
    s.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *moving)
    st = reader.read(plan)
    assert reader.shard_fetch is not None and "AskError" in (reader.shard_fetch.fell_back or "")
    same(st, before)  # followed ASK: the node still up, with the same data
    for port in masters(rcluster):
        redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", did)
    st = reader.read(plan)  # the slot map still names the source: MOVED, handed back, redis-py reads the map again
    assert "MovedError" in (reader.shard_fetch.fell_back or "")
    same(st, before)
    SENDS.clear()
    st = reader.read(plan)
    assert reader.shard_fetch.fell_back is None and dict(SENDS) == {p: 1 for p in masters(rcluster)}
    same(st, before)
    assert st.node(host) is not None and st.node(host).state == "up"  # type: ignore[union-attr]


def test_dropped_connections_and_error_replies_fall_back(rcluster: RedisCluster, py: Any) -> None:
    reader = Reader(py, brief_from=0)
    plan = ReadPlan(Level.DIGESTS)
    reader.read(plan)
    before = reader.read(plan)
    for port in masters(rcluster):  # every pooled connection of the reader cut by the servers
        redis.Redis(port=port).execute_command("CLIENT", "KILL", "TYPE", "normal")
    st = reader.read(plan)  # redis-py's pool notices a dead connection when it hands it out: reconnected
    assert reader.shard_fetch is not None and reader.shard_fetch.fell_back is None
    same(st, before)
    # A master that stops answering mid-read (paused past the client's socket timeout): the connections
    # written to are dropped and redis-py's pipeline does the read (its retries may outlast the pause, or the
    # read fails: never wrong data); once the master answers, the fast path reads right: nothing half-read pooled.
    short = Reader(store.connect(rcluster.url, timeout_s=0.3), brief_from=0)
    short.read(plan)
    victim = rcluster.master_of(wire.digest_key("n05"))
    redis.Redis(port=victim).execute_command("CLIENT", "PAUSE", 1500, "ALL")
    t0 = time.monotonic()
    try:
        same(short.read(plan), before)  # redis-py's retries outlasted the pause
    except store_errors():
        pass  # or they did not: the read failed (the dashboard says so)
    assert short.shard_fetch is not None and (short.shard_fetch.fell_back or "").startswith("TimeoutError")
    time.sleep(max(0.0, 1.7 - (time.monotonic() - t0)))
    same(short.read(plan), before)
    assert short.shard_fetch.fell_back is None
    # An error reply (the index is no zset: hostile or broken data) is redis-py's to raise, as before.
    py.set(wire.NODES_KEY, b"not a zset")
    slow = Reader(py, brief_from=0, shard_fetch=False)
    with pytest.raises(redis.exceptions.ResponseError) as slow_err:
        slow.read(plan)
    with pytest.raises(redis.exceptions.ResponseError) as fast_err:
        reader.read(plan)
    assert "WRONGTYPE" in (reader.shard_fetch.fell_back or "") and str(fast_err.value) == str(slow_err.value)


def test_the_agents_client_keeps_its_own_pipeline(rcluster: RedisCluster, py: Any) -> None:
    """The alert evaluator reads with the agent's client: its cluster pipeline splits by master itself."""
    light = store.connect_light(rcluster.url)
    reader = Reader(light, brief_from=0)
    reader.read(ReadPlan(Level.DIGESTS))
    st = reader.read(ReadPlan(Level.DIGESTS))
    assert reader.shard_fetch is not None and "not redis-py" in (reader.shard_fetch.fell_back or "")
    other = Reader(py, brief_from=0)
    other.read(ReadPlan(Level.DIGESTS))  # the first read also takes the briefs of hosts new to the index
    same(st, other.read(ReadPlan(Level.DIGESTS)))


def test_a_detail_read_fetches_only_the_full_snapshots_that_changed(rcluster: RedisCluster, py: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``Level.DETAIL`` on the cluster (issue 18): nodes on a 5 s cadence; a read after each tick fetches only the
    full snapshots that changed (and the sealed host's, always), in one write per master, and gives the state a
    reader with nothing kept gives. Counted on the wire: the node keys sent."""
    from clustertop.agents.publisher import Publisher

    sent: list[tuple[int, bytes]] = []
    real = redis.connection.Connection.send_packed_command

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sent.append((self.port, b"".join(command) if isinstance(command, list) else bytes(command)))
        return real(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", send_packed_command)
    for port in masters(rcluster):
        redis.Redis(port=port).flushall()
    hosts = HOSTS[:12] + HOSTILE[:2]
    pubs = {h: Publisher(py, h, 1.0, full_every_s=5.0, tiers=False, key=b.node_key(h)) for h in hosts}
    now = time.time()

    def tick(k: int) -> None:
        for h, pub in pubs.items():
            pub.publish(b.tower(h, ts=now + k, seq=k + 1))

    plan = ReadPlan(Level.DETAIL)
    reader = Reader(py, brief_from=0, clock=lambda: now + 10)
    tick(0)
    reader.read(plan)
    for k in range(1, 7):
        tick(k)
        sent.clear()
        st = reader.read(plan, seals=["n03"])
        assert reader.shard_fetch is not None and reader.shard_fetch.fell_back is None
        # Predicted: one write of reads per master (a new pooled connection's handshake is not a read).
        reads = Counter(port for port, data in sent if b"MGET" in data)
        assert dict(reads) == {p: 1 for p in masters(rcluster)}, k
        fetched = {h for h in hosts if wire.node_key(h).encode() in b"".join(data for _, data in sent)}
        # Tick 5 rewrote every node's full snapshot (its cadence): the read after it fetched them all (due);
        # otherwise only the sealed host's.
        assert fetched == (set(hosts) if k == 5 else {"n03"}), k
        other = Reader(py, brief_from=0, clock=lambda: now + 10)
        other.read(plan)  # (a first read takes no seal of hosts new to it)
        same(st, other.read(plan, seals=["n03"]))
        assert all(n.state == "up" and n.snap is not None and not n.brief for n in st.nodes)


def test_a_summary_read_is_one_write_per_master_with_a_digest_reads_totals(rcluster: RedisCluster, py: Any) -> None:
    """``Level.SUMMARIES`` on the cluster: the 64 summary keys (a hash tag each, spread over the masters) ride in
    the per-shard round trip beside the digests of the tiles in view; a bucket without a summary is read from its
    hosts' digests, and the totals are a digest read's."""
    from clustertop.control import signing
    from clustertop.control.summary import open_summary, seal
    from clustertop.read.cluster import by_bucket
    from clustertop.read.summary import fold
    from clustertop.wire.summary import bucket_of, summary_key

    key = signing.new_key()
    folder = Reader(py, brief_from=0)
    folder.read()
    digests = folder.read(ReadPlan(Level.DIGESTS))
    for bucket, group in enumerate(by_bucket(digests.nodes)):
        py.set(summary_key(bucket), seal(fold(group, bucket, "head01", time.time(), seq=1, interval_s=600.0), key))
    gone = bucket_of("n05")
    py.delete(summary_key(gone))
    r = Reader(py, brief_from=0)
    r.summary_from = 0
    r.open_summary = lambda raw, bucket, columns: open_summary(raw, {"head01": key.public()}, bucket,
                                                               columns=columns)
    r.read()
    plan = ReadPlan(Level.SUMMARIES, digest_hosts=frozenset({"n01", HOSTILE[2]}))
    r.read(plan)  # the bucket without a summary: its hosts' digests in one more round, once
    SENDS.clear()
    st = r.read(plan)
    assert r.shard_fetch is not None and r.shard_fetch.fell_back is None
    assert dict(SENDS) == {p: 1 for p in masters(rcluster)}
    assert st.summaries is not None and st.summaries.refused == {gone: "missing"} and len(st.summaries.believed) == 63
    assert st.totals == digests.totals
    assert all(st.node(h).digest is not None for h in ("n05", "n01", HOSTILE[2]))  # type: ignore[union-attr]
    assert st.node("n07").state == "bad" and st.node("gone01").state == "stale"  # type: ignore[union-attr]
