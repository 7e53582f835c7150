"""Provides what a read of bucket summaries (``Level.SUMMARIES``, issue 18) is made into: the cluster's totals,
its nodes' alerts and the busiest GPUs, from the believed summaries and the hosts none of them covers.

A summary stands for its bucket's hosts; every host no believed summary covers was read from its own digest
in the same read (``Reader._summaries``) and is folded here by ``read.summary.fold`` into a summary of this
reader's own (``SummaryRead.local``, unsigned, never written anywhere), so the one merge (``read.summary``)
makes the totals and the busiest cards of both: a summary saves work, it never hides a node.
"""

from __future__ import annotations

from clustertop.read.busiest import busiest_cards
from clustertop.read.cluster import Alert, by_bucket, node_alerts
from clustertop.read.model import ClusterState, NodeView, SummaryRead
from clustertop.read.summary import AlertMemo, fold, merged_alerts, merged_busiest
from clustertop.wire.summary import BucketSummary, TopGpu

#: The ``folder`` of a reader's own fold of the hosts no believed summary covers (never signed or written).
LOCAL_FOLDER = ""


def fold_uncovered(summaries: SummaryRead, nodes: list[NodeView], now: float) -> list[BucketSummary]:
    """``nodes`` (read from their digests: no believed summary covers them) folded per bucket, as a summary
    node folds its bucket, for ``read.summary.merge`` and ``merged_busiest`` beside the believed ones."""
    return [fold(group, bucket, LOCAL_FOLDER, now, seq=0, interval_s=1.0, gpu_columns=False,
                 buckets=summaries.buckets)
            for bucket, group in enumerate(by_bucket(nodes, summaries.buckets)) if group]


def uncovered(state: ClusterState) -> list[NodeView]:
    """The nodes of a summary read that no believed summary covers (all of them for any other read)."""
    if state.summaries is None:
        return state.nodes
    covered = state.summaries.covered
    return [n for n in state.summaries.read_here if n.host not in covered]


def node_alerts_of(state: ClusterState, memo: AlertMemo | None = None) -> list[Alert] | None:
    """The nodes' alerts of a summary read, for ``cluster.alerts(node_part=…)``: the believed summaries'
    (``read.summary.merged_alerts``, with ``memo``: the unchanged buckets' alerts kept from the last read) and
    those of the hosts read from their digests (``cluster.node_alerts``, every one of them). None for any other
    read (``cluster.alerts`` makes them from every node)."""
    if state.summaries is None:
        return None
    return merged_alerts(state.summaries.believed, memo) + node_alerts(uncovered(state))


def busiest_of(state: ClusterState, limit: int) -> list[TopGpu]:
    """The ``limit`` busiest GPUs of a summary read, highest first: the believed summaries' busiest cards and
    those of the hosts no believed summary covers, ranked together (``read.summary.merged_busiest``)."""
    s = state.summaries
    assert s is not None
    if not s.believed:  # every host read from its digest (``Reader.read``: no fold of its own then)
        return [TopGpu(host, i, int(u)) for host, i, u, _ in busiest_cards(s.read_here, limit)]
    return merged_busiest(s.believed + s.local, limit)
