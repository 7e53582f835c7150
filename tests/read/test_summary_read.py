"""A read of bucket summaries (``Level.SUMMARIES``, issue 18) against a real redis-server: the totals and the
nodes' alerts are a digest read's; a summary that is missing, forged, not enrolled or stale is refused with
its reason and its hosts are read from their digests in the same read; a host its summary leaves out is read
too; the steady state is one round trip (socket sends counted, as tests/read/test_reader.py does)."""

from __future__ import annotations

import time
from typing import Any

import redis

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.control import signing
from clustertop.control.summary import open_summary, seal
from clustertop.read.bucketread import busiest_of, node_alerts_of
from clustertop.read.busiest import busiest_cards
from clustertop.read.cluster import alerts, by_bucket
from clustertop.read.model import ClusterState
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import DOWN_AFTER_S, Reader
from clustertop.read.summary import fold
from clustertop.wire import schema
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key

FOLDER = "head01"
HOSTILE = ["a}b{c", "ünï\u202ecode\x1b[2J", "x" * 300]


class CountingConnection(redis.Connection):
    sends = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sends += 1
        return super().send_packed_command(command, check_health)


def snap(host: str, ts: float, i: int) -> schema.NodeSnapshot:
    # Varied figures (float sums depend on their order), a hot card now and then (an alert in the summary).
    return schema.NodeSnapshot(
        host=host, ts=ts, seq=1, interval_s=1.0,
        system=schema.System(cpu_count=8 + i % 5, cpu=schema.CpuTimes(util_pct=3.7 * (i % 23)),
                             mem=schema.Memory(total_bytes=32 << 30, used_bytes=(i % 9) << 30)),
        gpus=[schema.Gpu(index=g, name="NVIDIA H100 80GB HBM3", util_pct=(i * 7 + g * 13) % 101,
                         temp_c=95 if (i + g) % 17 == 0 else 60, mem_total_bytes=80 << 30,
                         mem_used_bytes=(g + 1) << 30, power_mw=300_000 + i, cuda_cores=16896) for g in range(4)],
    )


def cluster(c: Any, n: int = 80) -> list[str]:
    """``n`` nodes up (hostile names among them: braces, bidi, 300 characters), and one each stale, down and bad
    (garbage in its digest)."""
    now = time.time()
    hosts = [f"gpu{i:03d}" for i in range(n)] + HOSTILE
    for i, h in enumerate(hosts):
        Publisher(c, h, 1.0).publish(snap(h, now, i))
    c.zadd(wire.NODES_KEY, {"stale01": now - 5, "down01": now - DOWN_AFTER_S - 30, "bad01": now})
    c.set(wire.digest_key("bad01"), b"\x00\xffnot msgpack at all")
    return hosts


def write_summaries(c: Any, key: signing.PrivateKey, *, folder: str = FOLDER, leave_out: str | None = None,
                    ts: float | None = None) -> ClusterState:
    """Every bucket folded from a digest read and sealed as a summary node does (``read.summary.fold``,
    ``control.summary.seal``); ``leave_out``: a host its bucket's summary does not name."""
    reader = Reader(c, brief_from=0)
    reader.read()
    state = reader.read(ReadPlan(Level.DIGESTS))
    now = time.time() if ts is None else ts
    for b, group in enumerate(by_bucket(state.nodes)):
        group = [v for v in group if v.host != leave_out]
        c.set(summary_key(b), seal(fold(group, b, folder, now, seq=1, interval_s=1.0), key))
    return state


def summary_reader(url: str, known: dict[str, signing.PublicKey], counting: bool = False) -> Reader:
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection) if counting else None
    client = redis.Redis(connection_pool=pool) if pool is not None else redis.Redis.from_url(url)
    r = Reader(client, brief_from=0)
    r.summary_from = 0  # summaries at any size (from plan.SUMMARY_FROM_NODES in the dashboard)
    # As dashboard/source.py sets it: the reader's own memo of hosts found of their bucket.
    r.open_summary = lambda raw, bucket, columns: open_summary(raw, known, bucket, columns=columns,
                                                               memo=r.bucket_check)
    r.read()  # the first read learns the index
    return r


def node_alerts(st: ClusterState) -> list[Any]:
    return alerts(st.nodes, st.cluster, st.ts, node_part=node_alerts_of(st))


def test_totals_alerts_and_busiest_are_a_digest_reads(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    hosts = cluster(c)
    key = signing.new_key()
    digest_read = write_summaries(c, key)
    r = summary_reader(redis_server.url, {FOLDER: key.public()})
    in_view = frozenset(hosts[:6])
    st = r.read(ReadPlan(Level.SUMMARIES, digest_hosts=in_view))
    assert st.plan.level is Level.SUMMARIES and st.summaries is not None
    assert len(st.summaries.believed) == BUCKETS and st.summaries.refused == {} and st.summaries.from_digests == 0
    assert st.totals == digest_read.totals  # to the last bit: one fold, one merge order
    assert node_alerts(st) == alerts(digest_read.nodes, digest_read.cluster, st.ts)
    assert any(a.rule == "GpuHot" for a in node_alerts(st))  # not a vacuous equality
    want = [(h, i, u) for h, i, u, _ in busiest_cards(digest_read.nodes, 25)]
    assert [(t.host, t.index, float(t.util_pct)) for t in busiest_of(st, 25)] == want
    # Every index host listed, in order, with its summary's state; figures only for the tiles in view.
    assert [n.host for n in st.nodes] == [n.host for n in digest_read.nodes]
    assert {n.host: n.state for n in st.nodes} == {n.host: n.state for n in digest_read.nodes}
    assert {n.host for n in st.nodes if n.digest is not None} == in_view
    assert st.node("down01").age_s > DOWN_AFTER_S  # type: ignore[union-attr]


def test_refused_summaries_are_said_and_their_hosts_read_from_digests(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    hosts = cluster(c)
    key, forger = signing.new_key(), signing.new_key()
    digest_read = write_summaries(c, key)
    groups = by_bucket(digest_read.nodes)
    forged, stranger, stale, gone = [b for b, g in enumerate(groups) if len(g) >= 2][:4]
    now = time.time()
    # Signed by another key in head01's name, with its figures made up.
    lie = fold(groups[forged], forged, FOLDER, now, seq=2, interval_s=1.0)
    lie.totals.gpus_total = 10_000
    c.set(summary_key(forged), seal(lie, forger))
    # Well signed, by a node nobody enrolled.
    c.set(summary_key(stranger), seal(fold(groups[stranger], stranger, "nobody", now, seq=2, interval_s=1.0), forger))
    c.set(summary_key(stale), seal(fold(groups[stale], stale, FOLDER, now - 30, seq=2, interval_s=1.0), key))
    c.delete(summary_key(gone))
    r = summary_reader(redis_server.url, {FOLDER: key.public()})
    st = r.read(ReadPlan(Level.SUMMARIES, digest_hosts=frozenset(hosts[:3])))
    s = st.summaries
    assert s is not None and len(s.believed) == BUCKETS - 4
    assert set(s.refused) == {forged, stranger, stale, gone}
    assert "refused: signed by key" in s.refused[forged] and "not enrolled" in s.refused[stranger]
    assert s.refused[stale].startswith("stale") and s.refused[gone] == "missing"
    refused_hosts = {v.host for b in (forged, stranger, stale, gone) for v in groups[b]}
    assert s.from_digests == len(refused_hosts)
    assert all(st.node(h).digest is not None for h in refused_hosts if st.node(h).state == "up")  # type: ignore[union-attr]
    # Nothing hidden, nothing made up: the figures are the digests'.
    assert st.totals == digest_read.totals
    assert node_alerts(st) == alerts(digest_read.nodes, digest_read.cluster, st.ts)


def test_a_host_its_summary_leaves_out_is_read_from_its_digest(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    cluster(c)
    key = signing.new_key()
    hidden = "gpu017"
    digest_read = write_summaries(c, key, leave_out=hidden)
    r = summary_reader(redis_server.url, {FOLDER: key.public()})
    st = r.read(ReadPlan(Level.SUMMARIES))
    assert st.summaries is not None and st.summaries.refused == {} and st.summaries.from_digests == 1
    view = st.node(hidden)
    assert view is not None and view.state == "up" and view.digest is not None
    assert hidden not in st.summaries.covered
    assert st.totals.nodes_total == digest_read.totals.nodes_total and st.totals.gpus_total == digest_read.totals.gpus_total
    assert st.totals.nodes_up == digest_read.totals.nodes_up
    assert node_alerts(st) == alerts(digest_read.nodes, digest_read.cluster, st.ts)


def test_steady_state_is_one_round_trip_and_a_refused_bucket_costs_one_more_once(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    hosts = cluster(c)
    key = signing.new_key()
    write_summaries(c, key)
    r = summary_reader(redis_server.url, {FOLDER: key.public()}, counting=True)
    plan = ReadPlan(Level.SUMMARIES, digest_hosts=frozenset(hosts[:5]))
    r.read(plan)
    CountingConnection.sends = 0
    assert r.read(plan).summaries.refused == {}  # type: ignore[union-attr]
    assert CountingConnection.sends == 1
    b = bucket_of(hosts[40])
    c.delete(summary_key(b))
    CountingConnection.sends = 0
    st = r.read(plan)
    assert st.summaries is not None and st.summaries.refused == {b: "missing"}
    assert st.node(hosts[40]).digest is not None  # type: ignore[union-attr]
    assert CountingConnection.sends == 2  # the bucket's digests: one more MGET ...
    CountingConnection.sends = 0
    st = r.read(plan)
    assert CountingConnection.sends == 1  # ... once: from then on in the first one
    assert st.node(hosts[40]).digest is not None  # type: ignore[union-attr]


def test_no_known_nodes_believes_nothing_and_below_the_threshold_every_digest_is_read(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    cluster(c)
    key = signing.new_key()
    digest_read = write_summaries(c, key)
    r = Reader(redis.Redis.from_url(redis_server.url), brief_from=0)
    r.summary_from = 0
    r.read()
    st = r.read(ReadPlan(Level.SUMMARIES))
    assert st.summaries is not None and st.summaries.believed == []
    assert set(st.summaries.refused.values()) == {"no known_nodes to check it against"}
    assert st.totals == digest_read.totals and st.summaries.from_digests == len(st.nodes)
    assert all(n.digest is not None for n in st.nodes if n.state == "up")
    assert node_alerts(st) == alerts(digest_read.nodes, digest_read.cluster, st.ts)
    want = [(h, i, u) for h, i, u, _ in busiest_cards(digest_read.nodes, 25)]
    assert [(t.host, t.index, float(t.util_pct)) for t in busiest_of(st, 25)] == want
    r.summary_from = None  # plan.SUMMARY_FROM_NODES: 83 nodes are far below it
    st = r.read(ReadPlan(Level.SUMMARIES))
    assert st.plan == ReadPlan(Level.DIGESTS) and st.summaries is None
    assert st.totals == digest_read.totals


def test_garbage_in_summary_keys_is_refused_and_said(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    hosts = cluster(c)
    key = signing.new_key()
    digest_read = write_summaries(c, key)
    garbage, huge, wrong = bucket_of(hosts[1]), bucket_of(hosts[2]), bucket_of(hosts[3])
    c.set(summary_key(garbage), b"\x00\xffnot msgpack at all\x1b[2J")
    c.set(summary_key(huge), b"\x93" + b"\xff" * (1 << 20))
    c.set(summary_key(wrong), c.get(summary_key((wrong + 1) % BUCKETS)))  # another bucket's, well signed
    r = summary_reader(redis_server.url, {FOLDER: key.public()})
    st = r.read(ReadPlan(Level.SUMMARIES))
    s = st.summaries
    assert s is not None and set(s.refused) == {garbage, huge, wrong}
    assert all(why.startswith("unreadable summary") for b, why in s.refused.items() if b != wrong)
    assert "not " + f"{wrong} of {BUCKETS}" in s.refused[wrong]
    assert st.totals == digest_read.totals
    assert node_alerts(st) == alerts(digest_read.nodes, digest_read.cluster, st.ts)
