"""The GPU table's read of bucket summaries (issue 18, ``Reader._quiet``): a host its summary calls stale, down
or bad has no cards in the summary's GPU columns (the up nodes' only), so the GPU table's plan (``gpus=True``)
reads that host's digest and brief beside the rows in view, in the steady state's one round trip, and the
table's rows (``dashboard.gpurows.SummaryRows``) show a stale node's cards from its last brief, state stale,
neither dropped nor 0; the overview's plan (``gpus=False``) reads none of them. Real redis-server; summaries
folded with GPU columns and sealed with a real node key, as a summary node does."""

from __future__ import annotations

import time
from typing import Any

import redis

from clustertop import wire
from clustertop.control.summary import open_summary, seal
from clustertop.dashboard.gpurows import SummaryRows
from clustertop.dashboard.screens.gpus import gpu_key
from clustertop.read.cluster import by_bucket
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import DOWN_AFTER_S, Reader
from clustertop.read.summary import fold
from clustertop.wire.summary import BUCKETS, LETTER_STATES, summary_key
from tests.read.test_summary_read import CountingConnection
from tests.support import builders as b

HEAD = "head01"
QUIET = {"stale01": "stale", "down01": "down", "bad01": "bad"}


def reader(url: str) -> Reader:
    """A reader as dashboard/source.py makes one, its sends counted, summaries at any cluster size."""
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    r = Reader(redis.Redis(connection_pool=pool), brief_from=0)
    r.summary_from = 0
    known = b.known_nodes(HEAD).keys
    r.open_summary = lambda raw, bucket, columns: open_summary(raw, known, bucket, columns=columns,
                                                               memo=r.bucket_check)
    return r


def test_quiet_hosts_are_read_by_the_gpu_table_only(redis_server: Any) -> None:
    c = redis_server.client()
    now = time.time()
    old = now - DOWN_AFTER_S - 30
    hosts = [f"gpu-{i:03d}" for i in range(60)] + list(QUIET)
    b.publish(c, [b.node(h, ts=old if h == "down01" else now, gpus=[b.gpu(0, 40 + i % 50), b.gpu(1, 7)])
                  for i, h in enumerate(hosts)])
    gpu_read = reader(redis_server.url)
    gpu_read.read()  # learns the index and every node's brief while all are up (the stale one's last brief)
    gpu_read.read(ReadPlan(Level.GPUS))
    b.silence(c, "stale01", "down01")  # they stop reporting: keys gone, the index keeps their last score
    c.set(wire.digest_key("bad01"), b"\x00\xffnot msgpack at all")
    folder = Reader(c)
    folder.read()
    full = folder.read(ReadPlan(Level.GPUS))
    assert {h: full.node(h).state for h in QUIET} == QUIET  # type: ignore[union-attr]
    for bucket, group in enumerate(by_bucket(full.nodes)):
        c.set(summary_key(bucket), seal(fold(group, bucket, HEAD, time.time(), seq=1, interval_s=600.0,
                                             gpu_columns=True), b.node_key(HEAD)))

    in_view = frozenset(hosts[:3])
    plan = ReadPlan(Level.SUMMARIES, frozenset(), in_view, gpus=True)
    gpu_read.read(plan)  # the first summary read finds the quiet hosts (``_summaries``)
    CountingConnection.sends = 0
    st = gpu_read.read(plan)  # the steady state: they are read in its one round trip (``_fetch``)
    assert CountingConnection.sends == 1
    assert st.summaries is not None and len(st.summaries.believed) == BUCKETS and not st.summaries.refused
    said = {h: LETTER_STATES.get(s) for bs in st.summaries.believed for h, s in zip(bs.hosts, bs.states, strict=False)}
    assert {h: said[h] for h in QUIET} == QUIET  # the summaries' own letters call them so
    here = {n.host: n for n in st.summaries.read_here}
    assert set(QUIET) <= set(here)
    assert here["stale01"].state == "stale" and here["down01"].state == "down" and here["bad01"].state == "bad"
    assert here["stale01"].snap is not None and [g.index for g in here["stale01"].snap.gpus or ()] == [0, 1]

    rows = SummaryRows(gpu_key)
    rows.update(st)
    stale = [r for r in rows.ids if rows.host(r) == "stale01"]
    assert len(stale) == 2  # its cards are rows, not dropped
    for r in stale:
        view, _ = rows.item(r)
        assert view.state == "stale"
    assert sorted(rows.value(r, "util") for r in stale) == sorted([7, 40 + hosts.index("stale01") % 50])
    assert rows.from_columns == 0  # drawn from its brief, not made of the columns (those hold no stale card)
    assert "down01" not in {rows.host(r) for r in rows.ids}  # a down node's cards are not shown as live

    overview = reader(redis_server.url)
    overview.read()
    oplan = ReadPlan(Level.SUMMARIES, frozenset(), in_view)
    overview.read(oplan)
    st = overview.read(oplan)
    assert st.summaries is not None and not set(QUIET) & {n.host for n in st.summaries.read_here}
