"""Bucket summaries, the pure side (clustertop.read.summary): the fold of a bucket and the merge of buckets give
what a read of every digest gives (totals to the last bit, the nodes' alerts in order, the busiest cards), over
hostile digests (NaN, ±inf, 2**64 - 1, huge and control-laden text), and through the wire (seal, open_summary).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustertop.control.summary import SummaryTooLarge, open_summary, seal
from clustertop.read.busiest import busiest_cards
from clustertop.read.cluster import alerts, by_bucket, summarize
from clustertop.read.model import NodeView
from clustertop.read.summary import alerts_left_out, fold, merge, merged_alerts, merged_busiest
from clustertop.wire import schema
from clustertop.wire.digest import digest
from clustertop.wire.summary import ALERTS_MAX, BUCKETS, TOP_GPUS, bucket_of
from tests.support import builders
from tests.support.hostile import NASTY, TEXT_ALPHABET, structs, text

NOW = builders.NOW
STATES = ("up", "up", "up", "stale", "down", "bad")


def _hosts() -> st.SearchStrategy[list[str]]:
    names = st.one_of(st.text(TEXT_ALPHABET, min_size=1, max_size=12), st.sampled_from([n for n in NASTY if n]),
                      st.integers(0, 99_999).map(lambda i: f"gpu{i:05d}"))
    return st.lists(names, min_size=0, max_size=24, unique=True)


@st.composite
def views(draw: st.DrawFn) -> list[NodeView]:
    """Views as a read leaves them: every state, hostile digests (or none), GPUs from briefs on some nodes."""
    out = []
    for h in draw(_hosts()):
        state = draw(st.sampled_from(STATES))
        d = draw(st.one_of(st.none(), structs(schema.NodeDigest, v=1, host=h, rules=2)))
        snap = None
        if d is not None and draw(st.booleans()):
            snap = schema.NodeSnapshot(host=h, ts=NOW, seq=d.seq,
                                       gpus=draw(st.lists(structs(schema.Gpu), max_size=4)))
        err = draw(text(big=2000)) if state == "bad" else None
        out.append(NodeView(host=h, state=state, last_seen_ts=NOW - 5, age_s=draw(st.sampled_from(
            [5.0, 120.0, math.nan, math.inf, 1e300])), snap=snap, error=err, digest=d))
    return sorted(out, key=lambda v: v.host)  # as a read gives them: the index's order


def folds(vs: list[NodeView], gpu_columns: bool = True) -> list[Any]:
    return [fold(g, b, "folder", NOW, seq=7, interval_s=1.0, gpu_columns=gpu_columns)
            for b, g in enumerate(by_bucket(vs)) if g]


def same(a: object, b: object) -> bool:
    """Equal to the last bit, field by field, NaN included (repr of a float is exact); dicts by their items."""
    fa, fb = vars(a), vars(b)
    return fa.keys() == fb.keys() and all(
        fa[k] == fb[k] if isinstance(fa[k], dict) else repr(fa[k]) == repr(fb[k]) for k in fa)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(views(), st.booleans())
def test_merge_of_every_buckets_fold_is_the_read_of_every_digest(vs: list[NodeView], cluster: bool) -> None:
    payloads = {"ceph": builders.ceph("HEALTH_WARN"), "celery": builders.queues(7)} if cluster else None
    summaries = folds(vs)
    assert same(merge(summaries, payloads), summarize(vs, payloads))
    # Every node in exactly one summary, under its own bucket, with its state letter and its digest's seq.
    assert sorted(h for s in summaries for h in s.hosts) == sorted(v.host for v in vs)
    for s in summaries:
        assert all(bucket_of(h) == s.bucket for h in s.hosts)
        assert len(s.states) == len(s.hosts) == len(s.seqs)
    by_host = {v.host: v for v in vs}
    for s in summaries:
        for h, letter, seq in zip(s.hosts, s.states, s.seqs, strict=True):
            v = by_host[h]
            assert letter == v.state[0]
            assert seq == (v.digest.seq if v.state == "up" and v.digest is not None else None)
    # The nodes' alerts, in the order the read gives them (no cluster alerts: those are the reader's own).
    assert merged_alerts(summaries) == alerts(vs)
    assert alerts_left_out(summaries) == 0
    for limit in (1, 5, TOP_GPUS):
        want = [(h, i, u) for h, i, u, _ in busiest_cards(vs, limit)]
        assert [(t.host, t.index, t.util_pct) for t in merged_busiest(summaries, limit)] == want


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(views())
def test_through_the_wire_a_summary_reads_back_as_folded(vs: list[NodeView]) -> None:
    key = builders.node_key("folder")
    known = builders.known_nodes("folder")
    summaries, opened = folds(vs), []
    for s in summaries:
        folded = [(a.severity, a.node, a.subject, a.message) for a in s.alerts]  # before the wire's cut
        left = s.alerts_left_out
        try:
            raw = seal(s, key)
        except SummaryTooLarge as e:
            # Only sums past what msgpack carries (2**64): from the drawn 2**64 - 1 and friends.
            assert "cannot be encoded" in str(e)
            t = s.totals
            figures = [getattr(t, f) for f in t.__struct_fields__] + list((t.models or {}).values())
            assert any(isinstance(x, int) and not -(2**63) <= x < 2**64 for x in figures)
            return
        got, why = open_summary(raw, known, s.bucket)
        assert why is None, why
        assert got is not None
        # Past the wire's size (100 KB alert texts) the least severe alerts went, counted: never a silent loss.
        assert [(a.severity, a.node, a.subject, a.message) for a in got.alerts] == folded[:len(got.alerts)]
        assert got.alerts_left_out == left + len(folded) - len(got.alerts)
        opened.append(got)
    assert same(merge(opened, None), summarize(vs))
    if alerts_left_out(opened) == 0:
        assert merged_alerts(opened) == alerts(vs)


def test_gpu_columns_from_briefs_and_from_digests_alone() -> None:
    """A node read with its GPUs gives every column; one read by its digest gives utilisation only, the other
    columns None (unknown), never 0. Stale, down and bad nodes give no cards."""
    hosts = [h for h in (f"gpu{i:03d}" for i in range(400)) if bucket_of(h) == 5][:4]
    full = builders.tower(hosts[0], (90, None))
    lean = builders.tower(hosts[1], (30, 40, 50))
    gone = builders.tower(hosts[2], (99,))
    vs = [NodeView(hosts[0], "up", snap=full, digest=digest(full)),
          NodeView(hosts[1], "up", digest=digest(lean)),
          NodeView(hosts[2], "stale", digest=digest(gone)),
          NodeView(hosts[3], "up", digest=digest(builders.node(hosts[3], gpus=None)))]
    s = fold(vs, 5, "folder", NOW, seq=1, interval_s=1.0)
    c = s.gpus
    assert c is not None
    assert c.node == [0, 0, 1, 1, 1]
    assert c.index == [0, 1, 0, 1, 2]
    assert c.util_pct == [90, None, 30, 40, 50]
    g0 = full.gpus[0] if full.gpus else None
    assert g0 is not None
    assert c.mem_used_bytes[:2] == [g0.mem_used_bytes, full.gpus[1].mem_used_bytes] and c.mem_used_bytes[0]
    assert c.mem_used_bytes[2:] == c.mem_total_bytes[2:] == c.temp_c[2:] == c.power_mw[2:] == [None] * 3
    assert c.power_mw[1] is None  # the card that reports no utilisation reports no power either (builders)
    assert fold(vs, 5, "folder", NOW, seq=1, interval_s=1.0, gpu_columns=False).gpus is None
    assert [(t.host, t.index, t.util_pct) for t in s.top_gpus] == [(hosts[0], 0, 90), (hosts[1], 2, 50),
                                                                   (hosts[1], 1, 40), (hosts[1], 0, 30)]
    assert c.lost == []
    # A card fallen off the bus: its position in the columns is listed as lost (the GPU table says LOST).
    hurt = builders.tower(hosts[3], (10, 20, 30))
    assert hurt.gpus is not None
    hurt.gpus[1] = schema.Gpu(index=1, lost=True, error="GPU is lost")
    lost = fold([*vs[:3], NodeView(hosts[3], "up", snap=hurt, digest=digest(hurt))], 5, "f", NOW, seq=1,
                interval_s=1.0).gpus
    assert lost is not None and lost.lost == [6] and lost.node[6] == 3 and lost.index[6] == 1
    # Views of other buckets are not this bucket's.
    other = next(h for h in (f"x{i}" for i in range(100)) if bucket_of(h) != 5)
    assert fold([*vs, NodeView(other, "up")], 5, "f", NOW, seq=1, interval_s=1.0).hosts == hosts


def test_a_bucket_keeps_the_most_severe_alerts_and_counts_the_rest() -> None:
    hosts = [h for h in (f"n{i:05d}" for i in range(40_000)) if bucket_of(h) == 9][:ALERTS_MAX + 100]
    vs = [NodeView(h, "down" if i % 5 == 0 else "stale", age_s=600.0) for i, h in enumerate(hosts)]
    s = fold(vs, 9, "folder", NOW, seq=1, interval_s=1.0)
    assert len(s.alerts) == ALERTS_MAX and s.alerts_left_out == 100
    every = alerts(vs)
    assert merged_alerts([s]) == every[:ALERTS_MAX]
    assert {a.severity for a in every[:ALERTS_MAX]} == {"critical", "warning"}
    assert all(a.severity == "critical" for a in merged_alerts([s])[: len(hosts) // 5])
    assert alerts_left_out([s, s]) == 200


def test_an_empty_set_of_summaries_is_an_empty_cluster() -> None:
    assert same(merge([], None), summarize([]))
    assert merged_alerts([]) == [] and merged_busiest([], 10) == [] and merged_busiest(folds([]), 0) == []
    assert BUCKETS == 64  # every writer and reader agrees on it (a summary names its count)
