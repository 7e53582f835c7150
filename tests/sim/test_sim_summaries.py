"""The simulator writes bucket summaries (issue 18) as a summary node's agent does: every bucket of its nodes folded
from the tick's digests, sealed by a simulated summary node the demo trusts, SET with PX = 3 intervals, in the
tick's one pipeline; ``--no-summaries`` / ``summaries=False`` writes none. Real redis-server, real `clustertop
simulate` processes, the real reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clustertop import wire
from clustertop.control import signing
from clustertop.control.summary import open_summary
from clustertop.control.trust import KnownNodes
from clustertop.read.busiest import busiest_cards
from clustertop.read.cluster import alerts, summarize
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.read.summary import merge, merged_alerts, merged_busiest
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key
from tests.conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]
T0 = 1767225600.0


def summaries_in(client: object, known: KnownNodes) -> dict[int, object]:
    out = {}
    for b in range(BUCKETS):
        raw = client.get(summary_key(b))  # type: ignore[attr-defined]
        if raw is None:
            continue
        s, why = open_summary(raw, known, b)
        assert why is None, f"bucket {b}: {why}"
        out[b] = s
    return out


def test_each_tick_writes_every_buckets_signed_summary_in_its_pipeline(redis_server: RedisServer) -> None:
    client = redis_server.client()
    sim = SimCluster(seed=3, nodes=120, gpus_per_node=8, keys=True)
    sim.interval_s = 2.0
    sim.summaries_from = 100  # the default (read.plan.SUMMARY_FROM_NODES) would take 2,000 nodes
    pubs = make_publishers(sim, client, 2.0)
    calls = []
    real_pipeline = client.pipeline

    def counting_pipeline(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real_pipeline(*a, **kw)

    client.pipeline = counting_pipeline  # type: ignore[method-assign]
    publish(client, sim, T0, pubs)
    client.pipeline = real_pipeline  # type: ignore[method-assign]
    assert len(calls) == 1  # the summaries ride in the tick's one round trip
    known = KnownNodes(keys=sim.node_keys())  # as the demo enrols them: the folder is one of the nodes
    got = summaries_in(client, known)
    assert set(got) == {bucket_of(h) for h in sim.hosts}  # every bucket with a node; no empty one written
    assert all(s.folder == sim.hosts[0] and s.interval_s == 2.0 for s in got.values())  # type: ignore[attr-defined]
    assert 0 < client.pttl(summary_key(next(iter(got)))) <= 6000  # 3 intervals
    # They say what a read of every digest says, to the last bit (same tick), GPU columns for every card.
    st = Reader(client, clock=lambda: T0).read(ReadPlan(Level.GPUS))
    summaries = list(got.values())
    assert merge(summaries, st.cluster) == summarize(st.nodes, st.cluster)  # type: ignore[arg-type]
    assert merged_alerts(summaries) == alerts(st.nodes)  # type: ignore[arg-type]
    assert [(t.host, t.index, t.util_pct) for t in merged_busiest(summaries, 25)] == \
        [(h, i, u) for h, i, u, _ in busiest_cards(st.nodes, 25)]  # type: ignore[arg-type]
    assert sum(len(s.gpus.node) for s in summaries) == 120 * 8  # type: ignore[attr-defined]
    # A second tick: a new seq.
    seqs = {s.seq for s in summaries}  # type: ignore[attr-defined]
    publish(client, sim, T0 + 2, pubs)
    assert {s.seq for s in summaries_in(client, known).values()} == {max(seqs) + 1}  # type: ignore[attr-defined]


def test_no_summaries_without_a_key_or_when_asked_or_below_their_size(redis_server: RedisServer) -> None:
    client = redis_server.client()
    for sim in (SimCluster(seed=3, nodes=20), SimCluster(seed=3, nodes=20, keys=True, summaries=False),
                SimCluster(seed=3, nodes=20, keys=True)):  # 20 nodes: no reader reads summaries (SUMMARY_FROM_NODES)
        client.flushdb()
        publish(client, sim, T0, make_publishers(sim, client, 1.0))
        assert client.keys(wire.PREFIX + ":summary:*") == []
        assert client.zcard(wire.NODES_KEY) == 20


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    return subprocess.run([sys.executable, "-m", "clustertop", "simulate", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_simulate_signs_summaries_with_the_key_it_is_given(redis_server: RedisServer, tmp_path: Path) -> None:
    key_path, pub_path, _ = signing.generate(str(tmp_path), "head01")
    client = redis_server.client()
    out = simulate("--redis", redis_server.url, "--nodes", "40", "--ticks", "1", "--interval", "5",
                   "--summary-key", key_path)
    assert out.returncode == 0, out.stderr
    assert "bucket summaries: signed as head01" in out.stderr
    known = KnownNodes(keys={"head01": signing.load_public(pub_path)})
    got = summaries_in(client, known)
    assert sorted(h for s in got.values() for h in s.hosts) == sorted(  # type: ignore[attr-defined]
        v.host for v in Reader(client).read(ReadPlan(Level.DIGESTS)).nodes)
    # Another node's key does not vouch for them.
    other = KnownNodes(keys={"head01": signing.new_key().public()})
    b = next(iter(got))
    assert "not the enrolled" in (open_summary(client.get(summary_key(b)), other, b)[1] or "")

    client.flushdb()
    out = simulate("--redis", redis_server.url, "--nodes", "40", "--ticks", "1", "--summary-key", key_path,
                   "--no-summaries")
    assert out.returncode == 0, out.stderr
    assert "bucket summaries: none (--no-summaries)" in out.stderr
    assert client.keys(wire.PREFIX + ":summary:*") == [] and client.zcard(wire.NODES_KEY) == 40

    client.flushdb()
    out = simulate("--redis", redis_server.url, "--nodes", "40", "--ticks", "1")
    assert out.returncode == 0, out.stderr
    assert "none (no --summary-key" in out.stderr and client.keys(wire.PREFIX + ":summary:*") == []
