"""Provides the GPU ledger: per node and for the cluster, GPUs owned vs allocated by pods vs actually busy.

Three sources meet here, all already on the wire: Kubernetes says how many GPUs each node has and how
many its pods requested (``schema.K8sNode``, ``schema.K8sPod``); each node's agent says how busy each
GPU is and whose processes run on it (``Gpu.util_pct``, ``GpuProc.owner``: the agent maps every GPU
process through /proc/<pid>/cgroup to ``Owner(kind="pod", pod_uid=...)``).

Kubernetes does not say *which* GPU a pod got (only the kubelet's device plugin knows), so a pod's
GPUs are the ones its processes run on. Two flags, each only after it has lasted a while:

- ``idle-allocated``: a Running pod holds GPUs but its processes keep them below ``idle_below_pct``
  (or it runs nothing on any GPU) for ``idle_after_s``: GPUs others are queueing for.
- ``unowned-busy``: a GPU on a Kubernetes node is busy for ``unowned_after_s`` and no pod owns any of
  its processes: work outside the scheduler's books, on GPUs it believes free.

Pure and cheap: ``LedgerTracker.update`` is one pass over pods and GPUs, its state is two small dicts
pruned to what is current on every call, so the dashboard can call it on every refresh. Unknowns stay
unknown: a node without a snapshot (or without process lists) is never flagged and counts as N/A.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from clustertop.read.layers import current
from clustertop.wire import schema


@dataclass(frozen=True)
class LedgerSettings:
    idle_below_pct: float = 5.0  # a GPU under this utilisation is idle; at or over it, busy
    idle_after_s: float = 15 * 60.0  # an allocated GPU idle this long is flagged
    unowned_after_s: float = 60.0  # a busy GPU without a pod this long is flagged


@dataclass
class PodUse:
    """One pod that requested GPUs, and what its processes do with them."""

    namespace: str
    name: str
    uid: str | None
    node: str | None
    phase: str | None
    gpus: int  # requested
    gpu_indices: list[int] = field(default_factory=list)  # GPUs its processes run on (node's indices)
    util_pct: float | None = None  # the busiest of those GPUs; None = unknown
    idle: bool | None = None  # None = cannot tell (no snapshot, no process lists)
    idle_since_ts: float | None = None


@dataclass
class LedgerRow:
    """One node (or ``node="cluster"`` for the sums). None = unknown, shown as N/A."""

    node: str
    in_kubernetes: bool = False
    has_agent: bool = False
    cordoned: bool = False
    capacity: int | None = None  # Kubernetes nvidia.com/gpu capacity
    allocatable: int | None = None
    allocated: int | None = None  # requested by non-terminated pods bound here
    gpus_seen: int | None = None  # GPUs the node's agent reports
    busy: int | None = None  # GPUs at or above the idle threshold right now
    idle_allocated: int = 0  # GPUs held by pods flagged idle-allocated
    unowned_busy: int = 0  # GPUs flagged unowned-busy


@dataclass
class Flag:
    kind: str  # "idle-allocated" | "unowned-busy"
    node: str
    since_ts: float
    duration_s: float
    message: str  # in words; names inside are node text (escape before markup)
    pod: str | None = None  # "namespace/name"
    pod_uid: str | None = None
    gpu_indices: list[int] = field(default_factory=list)


@dataclass
class Ledger:
    ts: float
    nodes: list[LedgerRow]
    cluster: LedgerRow
    pods: list[PodUse]
    flags: list[Flag]


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _short(name: str) -> str:
    return name.split(".", 1)[0]


def match_hosts(k8s_names: Iterable[str], hosts: Iterable[str]) -> dict[str, str]:
    """agent host -> Kubernetes node name. Exact first; else the short names (an agent reporting
    "tower-1" for the node "tower-1.lab.example"), when that short name is unambiguous."""
    names = list(k8s_names)
    exact = set(names)
    by_short: dict[str, list[str]] = {}
    for n in names:
        by_short.setdefault(_short(n), []).append(n)
    out: dict[str, str] = {}
    taken = set()
    for h in hosts:
        if h in exact:
            out[h] = h
            taken.add(h)
    for h in hosts:
        if h in out:
            continue
        cands = [n for n in by_short.get(_short(h), []) if n not in taken]
        if len(cands) == 1:
            out[h] = cands[0]
            taken.add(cands[0])
    return out


def kube_host_filter(names: Iterable[str]) -> Callable[[str], bool]:
    """Whether an agent's host may be one of the Kubernetes node ``names`` as ``match_hosts`` matches them (the
    same name, or the same short name): a reader that only needs Kubernetes nodes' GPUs (the hidden ledger, whose
    flags concern nothing else) reads those hosts only. A superset of what ``match_hosts`` picks."""
    exact = frozenset(names)
    shorts = frozenset(map(_short, exact))
    return lambda host: host in exact or _short(host) in shorts


def _gpu_known(gpus: list[schema.Gpu] | None) -> bool:
    """Process lists on every GPU: without them, ownership (and so idleness per pod) is unknown."""
    return gpus is not None and all(g.procs is not None for g in gpus if not g.lost)


def _sum(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _proc_words(g: schema.Gpu) -> str:
    procs = g.procs or []
    if not procs:
        return "no process visible"
    words = []
    for p in procs[:3]:
        who = f" ({p.user})" if p.user else ""
        words.append(f"pid {p.pid} {p.name or '?'}{who}")
    more = f" and {len(procs) - 3} more" if len(procs) > 3 else ""
    return ", ".join(words) + more


class LedgerTracker:
    """Keeps how long each pod has been idle and each GPU busy without a pod; ``update`` every refresh."""

    def __init__(self, settings: LedgerSettings | None = None) -> None:
        self.settings = settings or LedgerSettings()
        self._idle_since: dict[str, float] = {}  # pod uid (or ns/name) -> first seen idle
        self._unowned_since: dict[tuple[str, int], float] = {}  # (node, gpu index) -> first seen

    def update(self, k8s: schema.Kubernetes | None, snaps: Iterable[schema.NodeSnapshot], now: float) -> Ledger:
        s = self.settings
        snaps = [x for x in snaps if x is not None]
        k8s_nodes = {n.name: n for n in (k8s.nodes or [])} if k8s is not None else {}
        host_to_node = match_hosts(k8s_nodes, [x.host for x in snaps])
        snap_by_node: dict[str, schema.NodeSnapshot] = {}
        rows: dict[str, LedgerRow] = {}
        for x in snaps:
            name = host_to_node.get(x.host, x.host)
            snap_by_node[name] = x
        for name in list(k8s_nodes) + [n for n in snap_by_node if n not in k8s_nodes]:
            kn = k8s_nodes.get(name)
            snap = snap_by_node.get(name)
            row = LedgerRow(node=name, in_kubernetes=kn is not None, has_agent=snap is not None)
            if kn is not None:
                row.cordoned = kn.unschedulable
                row.capacity, row.allocatable, row.allocated = kn.gpu_capacity, kn.gpu_allocatable, kn.gpu_allocated
            if snap is not None and snap.gpus is not None:
                live = [g for g in snap.gpus if not g.lost]
                row.gpus_seen = len(snap.gpus)
                utils = [g.util_pct for g in live if g.util_pct is not None]
                row.busy = sum(1 for u in utils if u >= s.idle_below_pct) if utils or not live else None
            rows[name] = row

        # -- which pod runs on which GPU: one pass over every known GPU process --------------------
        # (node, pod uid) -> GPU indices; and which GPUs have any pod-owned process.
        pod_gpus: dict[tuple[str, str], list[int]] = {}
        owned: set[tuple[str, int]] = set()
        for node, snap in snap_by_node.items():
            for g in snap.gpus or ():
                for p in g.procs or ():
                    if p.owner is not None and p.owner.kind == "pod":
                        owned.add((node, g.index))
                        if p.owner.pod_uid:
                            idx = pod_gpus.setdefault((node, p.owner.pod_uid), [])
                            if g.index not in idx:
                                idx.append(g.index)

        flags: list[Flag] = []
        pods_out: list[PodUse] = []
        idle_since: dict[str, float] = {}
        for pod in (k8s.pods or []) if k8s is not None else []:
            if not pod.gpus or not pod.holds_resources():
                continue
            use = PodUse(namespace=pod.namespace, name=pod.name, uid=pod.uid, node=pod.node, phase=pod.phase,
                         gpus=pod.gpus)
            pods_out.append(use)
            key = pod.uid or f"{pod.namespace}/{pod.name}"
            snap = snap_by_node.get(pod.node or "")
            if pod.phase != "Running" or snap is None or not _gpu_known(snap.gpus):
                # Pending pods have not started; unknown data judges nothing but keeps the timer.
                if pod.phase == "Running" and key in self._idle_since:
                    idle_since[key] = self._idle_since[key]
                continue
            by_index = {g.index: g for g in snap.gpus or ()}
            use.gpu_indices = sorted(pod_gpus.get((pod.node or "", pod.uid or ""), []))
            utils = [u for u in (by_index[i].util_pct for i in use.gpu_indices) if u is not None]
            if use.gpu_indices and not utils:
                if key in self._idle_since:
                    idle_since[key] = self._idle_since[key]
                continue
            use.util_pct = float(max(utils)) if utils else 0.0
            use.idle = use.util_pct < s.idle_below_pct
            if not use.idle:
                continue
            since = self._idle_since.get(key, now)
            idle_since[key] = use.idle_since_ts = since
            if now - since >= s.idle_after_s:
                what = (f"but they have been idle (<{s.idle_below_pct:g}% util) for {fmt_duration(now - since)}"
                        if use.gpu_indices else f"but has run nothing on any GPU for {fmt_duration(now - since)}")
                n = "GPU" if pod.gpus == 1 else "GPUs"
                flags.append(Flag(kind="idle-allocated", node=pod.node or "", since_ts=since, duration_s=now - since,
                                  pod=f"{pod.namespace}/{pod.name}", pod_uid=pod.uid, gpu_indices=use.gpu_indices,
                                  message=f"pod {pod.namespace}/{pod.name} holds {pod.gpus} {n} on {pod.node} {what}"))
                if pod.node in rows:
                    rows[pod.node].idle_allocated += pod.gpus
        self._idle_since = idle_since

        unowned_since: dict[tuple[str, int], float] = {}
        for node, snap in snap_by_node.items():
            if node not in k8s_nodes or snap.gpus is None:
                continue  # a GPU box outside Kubernetes runs whatever it likes
            for g in snap.gpus:
                if g.lost or g.procs is None or g.util_pct is None or g.util_pct < s.idle_below_pct:
                    continue
                if (node, g.index) in owned:
                    continue
                since = self._unowned_since.get((node, g.index), now)
                unowned_since[(node, g.index)] = since
                if now - since >= s.unowned_after_s:
                    flags.append(Flag(
                        kind="unowned-busy", node=node, since_ts=since, duration_s=now - since, gpu_indices=[g.index],
                        message=(f"{node} GPU {g.index} busy ({g.util_pct}% util) for {fmt_duration(now - since)} "
                                 f"but no pod owns it: {_proc_words(g)}")))
                    rows[node].unowned_busy += 1
        self._unowned_since = unowned_since

        ordered = [rows[n] for n in sorted(rows)]
        cluster = LedgerRow(
            node="cluster", in_kubernetes=any(r.in_kubernetes for r in ordered),
            has_agent=any(r.has_agent for r in ordered), cordoned=False,
            capacity=_sum(r.capacity for r in ordered), allocatable=_sum(r.allocatable for r in ordered),
            allocated=_sum(r.allocated for r in ordered), gpus_seen=_sum(r.gpus_seen for r in ordered),
            busy=_sum(r.busy for r in ordered), idle_allocated=sum(r.idle_allocated for r in ordered),
            unowned_busy=sum(r.unowned_busy for r in ordered))
        flags.sort(key=lambda f: -f.duration_s)
        return Ledger(ts=now, nodes=ordered, cluster=cluster, pods=pods_out, flags=flags)


def update_from_state(tracker: LedgerTracker, state: object) -> Ledger:
    """Convenience for the dashboard: a ``reader.ClusterState`` in, only nodes that are up count."""
    cluster = getattr(state, "cluster", {}) or {}
    payload = cluster.get("kubernetes")
    k8s = payload.kubernetes if payload is not None else None
    # Each node's snapshot of this tick, without building an overlay the read left to be built (``read.layers``):
    # where a node's full snapshot is older, its brief, whose GPUs are the overlay's with every field read here.
    snaps = [s for v in getattr(state, "nodes", []) if v.state == "up" and (s := current(v)) is not None]
    return tracker.update(k8s, snaps, float(getattr(state, "ts", 0.0)))
