"""Provides the fold of one bucket of nodes into a ``wire.summary.BucketSummary``, and the merge of summaries
back into what a read of every digest gives (issue 18, 10,000 nodes). Pure: no Redis, no clock, no keys.

Where things are (names and signatures as the brief set them):
- ``fold``, ``merge``, ``merged_alerts``, ``merged_busiest`` (+ ``alerts_left_out``): here.
- ``seal`` and ``open_summary`` (sign and check a summary): ``clustertop.control.summary``, not here: ``read``
  may import only ``wire`` (tests/test_layers.py), and checking a signature is ``control``'s business.
- ``control.signing.sign_bytes`` / ``check_bytes``, domain "summary".

Exactness: ``read.cluster.summarize`` adds the integer sums once (exact in any order) and each float sum per bucket
in host order, then the buckets in bucket order (``cluster._fold``, ``merge_totals``), the order a ``fold`` of each
bucket and a ``merge`` take, so ``merge`` of every bucket's ``fold`` is the same ``Totals`` to the last bit. Alerts:
``merged_alerts`` of every bucket's ``fold`` is the nodes' part of ``read.cluster.alerts``, in its order, as
long as no bucket had more than ``ALERTS_MAX`` (``alerts_left_out`` counts the rest). ``merged_busiest`` is
``read.busiest.busiest_cards`` over every node for any limit up to ``TOP_GPUS``.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Iterable
from typing import Any

from msgspec.structs import astuple

from clustertop.read.busiest import MAX_UTIL_PCT, busiest_cards
from clustertop.read.cluster import (
    ORDER,
    SEVERITIES,
    Alert,
    _cluster_totals,
    alert_order,
    fold_totals,
    merge_totals,
    node_alerts,
)
from clustertop.read.model import NodeView, Totals, view_digest
from clustertop.wire import schema
from clustertop.wire.summary import (
    ALERTS_MAX,
    BUCKETS,
    STATE_LETTERS,
    TOP_GPUS,
    BucketSummary,
    GpuColumns,
    SummaryAlert,
    TopGpu,
    bucket_of,
)


def fold(views: list[NodeView], bucket: int, folder: str, now: float, *, seq: int, interval_s: float,
         gpu_columns: bool = True, read_ts: float | None = None, buckets: int = BUCKETS) -> BucketSummary:
    """``views`` of bucket ``bucket`` (views of other buckets are left out) folded by ``folder`` at ``now``:
    totals, alerts (``ALERTS_MAX`` most severe), each host's state and digest seq, the busiest cards, and with
    ``gpu_columns`` every card of the up nodes as columns (from the views' GPUs where the read has them,
    else their digests' utilisation only, the other columns None: never 0)."""
    mine = sorted((v for v in views if bucket_of(v.host, buckets) == bucket), key=_host)
    letters = STATE_LETTERS
    states = "".join(letters.get(v.state, "d") for v in mine)
    seqs: list[int | None] = []
    for v in mine:
        d = view_digest(v) if v.state == "up" else None
        seqs.append(d.seq if d is not None else None)
    found = node_alerts(mine)
    found.sort(key=alert_order)
    kept = found[:ALERTS_MAX]
    return BucketSummary(
        bucket=bucket, buckets=buckets, folder=folder, ts=now, seq=seq, interval_s=interval_s,
        read_ts=now if read_ts is None else read_ts, hosts=[v.host for v in mine], states=states, seqs=seqs,
        totals=fold_totals(mine),
        alerts=[SummaryAlert(a.severity, a.source, a.node, a.subject, a.message, a.rule) for a in kept],
        alerts_left_out=len(found) - len(kept),
        top_gpus=[TopGpu(host, i, int(u)) for host, i, u, _ in busiest_cards(mine, TOP_GPUS)],
        gpus=_columns(mine) if gpu_columns else None,
    )


_LOST = operator.attrgetter("lost")


def _host(v: NodeView) -> str:
    return v.host


def _columns(views: list[NodeView]) -> GpuColumns:
    """Every card of the up nodes, node order then card order. A node read with its GPUs (``Level.GPUS`` and
    up) gives each card's figures; one read by its digest alone gives its cards' utilisation, by position."""
    c = GpuColumns(node=[], index=[], util_pct=[], mem_used_bytes=[], mem_total_bytes=[], temp_c=[], power_mw=[])
    for pos, v in enumerate(views):
        if v.state != "up":
            continue
        gpus = v.snap.gpus if v.snap is not None else None
        if gpus is not None:
            n = len(gpus)
            if True in map(_LOST, gpus):  # rare: a walk only on a node with a lost card
                start = len(c.node)
                c.lost += [start + i for i, g in enumerate(gpus) if g.lost]
            c.node += [pos] * n
            c.index += [g.index for g in gpus]
            c.util_pct += [g.util_pct for g in gpus]
            c.mem_used_bytes += [g.mem_used_bytes for g in gpus]
            c.mem_total_bytes += [g.mem_total_bytes for g in gpus]
            c.temp_c += [g.temp_c for g in gpus]
            c.power_mw += [g.power_mw for g in gpus]
            continue
        d = view_digest(v)
        utils = d.gpu_util_pct if d is not None else None
        if not utils:
            continue
        n = len(utils)
        none: list[int | None] = [None] * n
        c.node += [pos] * n
        c.index += list(range(n))
        c.util_pct += utils
        c.mem_used_bytes += none
        c.mem_total_bytes += none
        c.temp_c += none
        c.power_mw += none
    return c


def _ordered(summaries: Iterable[BucketSummary]) -> list[BucketSummary]:
    return sorted(summaries, key=_bucket)


def _bucket(s: BucketSummary) -> int:
    return s.bucket


def merge(summaries: list[BucketSummary], cluster: dict[str, schema.ClusterPayload] | None) -> Totals:
    """The cluster's totals from bucket summaries (and the cluster payloads): ``read.cluster.summarize`` over
    the same nodes, exactly, when ``summaries`` cover every bucket that has nodes."""
    ordered = _ordered(summaries)
    t = merge_totals([s.totals for s in ordered], sum(len(s.hosts) for s in ordered))
    _cluster_totals(t, cluster or {})
    return t


class AlertMemo:
    """What ``merged_alerts`` made last time, kept by a reader from read to read: per bucket its wire alerts, the
    ``Alert``s made of them, and each of those by its fields; and the merged list. A bucket whose alerts are the
    same as last time (compared in C, whatever its summary's seq or stamp) keeps its ``Alert``s (their ``key`` and
    ``order`` made once), and with every bucket's kept the merged list itself is kept; in a bucket that changed
    (one node's "GPU 1 hot: 89 °C" now 90) each alert the same as before is kept. ~4,500 alerts at 10,000 nodes."""

    def __init__(self) -> None:
        self.buckets: dict[int, tuple[list[SummaryAlert], list[Alert], dict[tuple[Any, ...], Alert]]] = {}
        self.parts: list[list[Alert]] = []
        self.merged: list[Alert] = []


def merged_alerts(summaries: list[BucketSummary], memo: AlertMemo | None = None) -> list[Alert]:
    """The summaries' alerts as ``read.cluster.Alert``, in ``read.cluster.alerts``' order (an unknown severity
    word from a summary is a warning, as a digest's is). With ``memo`` the ``Alert``s of unchanged buckets, and
    the list itself while nothing changed, are those of the last call: do not change the list returned."""
    if memo is None:
        out = [a for s in _ordered(summaries) for a in _made(s.alerts)]
        out.sort(key=ORDER)
        return out
    kept: dict[int, tuple[list[SummaryAlert], list[Alert], dict[tuple[Any, ...], Alert]]] = {}
    parts: list[list[Alert]] = []
    for s in _ordered(summaries):
        last = memo.buckets.get(s.bucket)
        if last is not None and last[0] == s.alerts:
            kept[s.bucket] = last
            parts.append(last[1])
            continue
        fields = list(map(astuple, s.alerts))  # in C; a wire alert's fields are its identity here
        before = last[2] if last is not None else {}
        made = [before.get(f) or _made([a])[0] for f, a in zip(fields, s.alerts, strict=True)]
        kept[s.bucket] = (s.alerts, made, dict(zip(fields, made, strict=True)))
        parts.append(made)
    memo.buckets = kept
    if len(parts) != len(memo.parts) or not all(map(operator.is_, parts, memo.parts)):
        merged = [a for made in parts for a in made]
        merged.sort(key=ORDER)
        memo.parts, memo.merged = parts, merged
    return memo.merged


def _made(alerts: list[SummaryAlert]) -> list[Alert]:
    return [Alert(a.severity if a.severity in SEVERITIES else "warning", a.source, a.node, a.subject, a.message,
                  a.rule) for a in alerts]


def alerts_left_out(summaries: list[BucketSummary]) -> int:
    """How many node alerts the summaries left out (past ``ALERTS_MAX`` in a bucket): "and N more"."""
    return sum(s.alerts_left_out for s in summaries)


def merged_busiest(summaries: list[BucketSummary], limit: int) -> list[TopGpu]:
    """The ``limit`` busiest cards of the summaries, ranked as ``read.busiest.busiest_cards`` ranks them
    (highest first, ties by host then index; absurd figures not ranked). Exact up to ``TOP_GPUS``."""
    if limit <= 0:
        return []
    cards = [t for s in summaries for t in s.top_gpus
             if type(t.util_pct) is int and 0 <= t.util_pct <= MAX_UTIL_PCT]
    ranked = [(-t.util_pct, t.host, t.index, n) for n, t in enumerate(cards)]  # n: no Struct is compared
    return [cards[n] for _, _, _, n in heapq.nsmallest(limit, ranked)]
