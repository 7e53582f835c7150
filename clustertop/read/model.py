"""Provides the read model's data: a node as read (NodeView), one read of the cluster (ClusterState), Totals.

Plain data and one helper; the reader fills them, the fold (``read.cluster``) and the screens read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clustertop.read.plan import ALL_FULL, ReadPlan
from clustertop.wire import schema
from clustertop.wire.digest import digest


@dataclass
class Totals:
    nodes_total: int = 0
    nodes_up: int = 0
    nodes_stale: int = 0
    nodes_down: int = 0
    nodes_bad: int = 0
    cpu_cores: int | None = None
    cpu_util_pct: float | None = None  # core-weighted mean over reporting nodes
    cpu_nodes: int = 0
    load1: float | None = None
    mem_total_bytes: int | None = None
    mem_used_bytes: int | None = None
    mem_nodes: int = 0
    gpus_total: int | None = None  # None: no node reports its GPUs
    gpus_busy: int | None = None
    gpus_lost: int = 0
    gpu_util_pct: float | None = None  # mean over GPUs that report it
    vram_total_bytes: int | None = None
    vram_used_bytes: int | None = None
    power_mw: int | None = None  # GPU board power, sum of reporting GPUs
    power_limit_mw: int | None = None
    cuda_cores: int | None = None
    gpu_nodes: int = 0
    gpu_procs: int | None = None
    net_rx_bytes_s: float | None = None
    net_tx_bytes_s: float | None = None
    bonds_total: int | None = None
    bonds_degraded: int | None = None
    ceph_status: str | None = None  # None: not configured, or unreachable (see ceph_unreachable)
    ceph_unreachable: bool = False
    tasks_queued: int | None = None
    workers_online: int | None = None
    pods_running: int | None = None
    gpus_allocated: int | None = None
    models: dict[str, int] = field(default_factory=dict)  # GPU model -> count


#: A node last seen longer ago than this is "down" (listed, values hidden); before that "stale".
DOWN_AFTER_S = 60.0


@dataclass
class NodeView:
    host: str
    state: str  # "up" | "stale" | "down" | "bad"
    last_seen_ts: float | None = None
    age_s: float | None = None
    snap: schema.NodeSnapshot | None = None  # the newest decodable snapshot (may be old: see state)
    error: str | None = None  # "bad data from node X: ..." when the latest payload was unusable
    newer_schema: bool = False
    brief: bool = False  # ``snap`` is a brief (clustertop.wire.brief): absent detail is not unknown detail
    # The node folded (clustertop.wire.digest): as its agent published it, or folded here from ``snap``.
    # A node up in a digest-only read has no ``snap`` (see ClusterState.plan).
    digest: schema.NodeDigest | None = None
    # How old ``snap``'s detail is where it is a full snapshot from an earlier tick than the node's digest (its
    # agent rewrites it every few seconds, or every tick while someone wants it: "Byte budget" in
    # docs/architecture.md); None: ``snap`` is of the node's latest tick (or the node is not up).
    detail_age_s: float | None = None


@dataclass
class ClusterState:
    ts: float
    nodes: list[NodeView] = field(default_factory=list)
    cluster: dict[str, schema.ClusterPayload] = field(default_factory=dict)
    cluster_errors: dict[str, str] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    fetch_ms: float | None = None
    decode_ms: float | None = None
    error: str | None = None  # the store itself is unreachable
    # The plan this read was made by (``plan.covers(level)``, ``plan.in_full(host)``): after the
    # size rule, so a small cluster's read says it holds everything in full.
    plan: ReadPlan = ALL_FULL
    # Raw bytes to check a node's seal against, for the hosts a read was asked to (``Reader.read``'s
    # ``seals``): host -> (seal field: "node", "brief" or "digest"; that payload as read; its seal).
    sealed: dict[str, tuple[str, bytes | None, bytes | None]] = field(default_factory=dict)
    # Why this reader could not ask agents for full snapshots (``read.want``: an ACL without it, a READONLY
    # replica), so a screen never says "a fresh one is requested" when it was not; None: asked, or nothing to ask.
    want_error: str | None = None

    def node(self, host: str) -> NodeView | None:
        for n in self.nodes:
            if n.host == host:
                return n
        return None


def view_digest(view: NodeView) -> schema.NodeDigest | None:
    """The view's digest, folded from its snapshot (and kept on it) where the reader left none."""
    if view.digest is None and view.snap is not None:
        view.digest = digest(view.snap)
    return view.digest
