"""Provides the read model's data: a node as read (NodeView), one read of the cluster (ClusterState), Totals.

Plain data and one helper; the reader fills them, the fold (``read.cluster``) and the screens read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clustertop.read.plan import ALL_FULL, ReadPlan
from clustertop.wire import schema
from clustertop.wire.brief import BriefHead, whole
from clustertop.wire.digest import digest
from clustertop.wire.summary import BucketSummary


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
    # Where ``snap`` is such a full snapshot brought up to date by this tick's brief (``wire.brief.fresh``): the two
    # as read. The overlay itself is built only when ``snap`` is first read (``defer``): screens that draw every
    # node's detail take the sections they draw from these two (``read.layers``) and never build it.
    layers: Layers | None = field(default=None, repr=False, compare=False)

    def defer(self, layers: Layers, build: Callable[[], schema.NodeSnapshot]) -> None:
        """``snap`` is ``build()`` (the overlay of ``layers``), made at its first read, not now."""
        self.layers = layers
        self.__dict__["_build"] = build

    @property
    def pending(self) -> bool:
        """Whether ``snap`` is an overlay not built yet (``defer``)."""
        return self.__dict__.get("_build") is not None


class Layers:
    """A node read in full whose full snapshot is from an earlier tick than its brief (``NodeView.layers``).

    ``full``: as read (kept decoded by ``read.fullcache``), ``detail_age_s`` old. ``brief``: this tick's, every
    figure it carries current. The reader gives the brief as decoded with its GPU section checked but not built
    (``wire.brief.decode_head``): ``head`` is that, for the sections other than ``gpus`` (the storage and network
    screens); ``brief`` builds the GPU section at its first read (the GPU ledger, the people screen, an overlay).
    Unpacks as ``full, brief``."""

    __slots__ = ("full", "head", "_brief")

    def __init__(self, full: schema.NodeSnapshot, brief: schema.NodeSnapshot) -> None:
        self.full = full
        self.head = brief  # read every section of it but ``gpus`` (a ``BriefHead``'s are not built)
        self._brief: schema.NodeSnapshot | None = None

    @property
    def brief(self) -> schema.NodeSnapshot:
        b = self._brief
        if b is None:
            b = self._brief = whole(self.head)
        return b

    @property
    def gpus_built(self) -> bool:
        """Whether ``brief`` was built (its GPU section with it)."""
        return self._brief is not None or not isinstance(self.head, BriefHead)

    def __iter__(self) -> Iterator[schema.NodeSnapshot]:
        return iter((self.full, self.brief))


def _snap(view: Any) -> schema.NodeSnapshot | None:
    d = view.__dict__
    build = d.get("_build")
    if build is not None:
        d["_build"] = None  # built once; the closure (and what it holds) goes with it
        d["_snap"] = build()
    snap: schema.NodeSnapshot | None = d.get("_snap")
    return snap


def _set_snap(view: Any, snap: schema.NodeSnapshot | None) -> None:
    view.__dict__["_build"] = None
    view.__dict__["_snap"] = snap


# ``snap`` stays a dataclass field (constructor, equality, repr), read and set through this property so that an
# overlay deferred by the reader (``NodeView.defer``) is built by whoever reads it first, and by nobody else: at
# 1,000 nodes building every node's overlay was ~31 ms of every read of the storage, network and people screens.
NodeView.snap = property(_snap, _set_snap)  # type: ignore[assignment]


@dataclass
class SummaryRead:
    """What a read at ``Level.SUMMARIES`` made of the per-bucket summaries (``wire.summary``): the ones
    believed, the buckets refused and why, and which index hosts the believed ones cover. Every index host
    they do not cover was read from its own digest in the same read (``from_digests`` of them)."""

    buckets: int
    believed: list[BucketSummary] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # bucket -> why: "missing", "stale …", the verdict
    covered: frozenset[str] = frozenset()  # index hosts a believed summary names (their views carry no digest)
    from_digests: int = 0  # index hosts no believed summary covers: read from their digests
    # Those hosts folded here per bucket (``read.bucketread.fold_uncovered``): merged beside ``believed``.
    local: list[BucketSummary] = field(default_factory=list)
    # The views of every host read from its digest (the uncovered ones and the tiles in view).
    read_here: list[NodeView] = field(default_factory=list)

    def age_s(self, now: float) -> float | None:
        """How old the oldest believed summary is (None: none believed, or absurd stamps)."""
        ages = [now - s.ts for s in self.believed if s.ts == s.ts]
        return max(0.0, max(ages)) if ages else None

    def folders(self) -> list[str]:
        """The nodes that folded the believed summaries, most buckets first."""
        count: dict[str, int] = {}
        for s in self.believed:
            count[s.folder] = count.get(s.folder, 0) + 1
        return sorted(count, key=lambda f: (-count[f], f))


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
    # A read at ``Level.SUMMARIES`` (past ``plan.SUMMARY_FROM_NODES``): the summaries it drew totals, alerts and
    # the hosts' states from; None for every other read (each node's own digest is then in ``nodes``).
    summaries: SummaryRead | None = None

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
