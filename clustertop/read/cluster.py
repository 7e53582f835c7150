"""Provides the one-machine view: cluster totals and alerts, pure functions of what was read.

Totals count only nodes that are up; every total is None (N/A) when no up node reports it,
and ``*_nodes`` says how many nodes a total is made of, so "448 GiB RAM (4/5 nodes)" is honest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from operator import attrgetter

from clustertop.read.ledger import Flag, match_hosts
from clustertop.read.model import NodeView, Totals, view_digest
from clustertop.wire import schema
from clustertop.wire.digest import add
from clustertop.wire.summary import BUCKETS, SummaryTotals, bucket_of


def summarize(nodes: list[NodeView], cluster: dict[str, schema.ClusterPayload] | None = None) -> Totals:
    """The cluster's totals, as the agents' bucket summaries merge to them (``read.summary``, issue 18), to the last
    bit: integer sums are exact in any order, and each float sum is added up per bucket in host order, then the
    buckets in bucket order (a float sum depends on the order of its terms: this is the one order both take)."""
    totals, floats = _fold(sorted(nodes, key=_host), BUCKETS)  # sorted already when read: a linear pass
    t = merge_totals([totals], len(nodes), floats)
    _cluster_totals(t, cluster or {})
    return t


def by_bucket(nodes: list[NodeView], buckets: int = BUCKETS) -> list[list[NodeView]]:
    """``nodes`` by ``wire.summary.bucket_of``, each bucket in host order (the order a fold adds them in)."""
    groups: list[list[NodeView]] = [[] for _ in range(buckets)]
    for n in sorted(nodes, key=_host):  # sorted already when read (the index's order): a linear pass
        groups[bucket_of(n.host, buckets)].append(n)
    return groups


def _host(n: NodeView) -> str:
    return n.host


def fold_totals(nodes: list[NodeView]) -> SummaryTotals:
    """The summable totals of ``nodes`` (one bucket, in host order): what ``merge_totals`` adds up across buckets."""
    return _fold(nodes, 1)[0]


#: Per bucket, the float sums of ``_fold``: Σ util x cores, load1, receive and send rates.
_Floats = tuple[list[float], list[float | None], list[float | None], list[float | None]]


def _fold(nodes: list[NodeView], buckets: int) -> tuple[SummaryTotals, _Floats]:
    """One pass over ``nodes`` in their order. With ``buckets`` > 1 (``summarize``) the float sums are also kept
    per bucket (``wire.summary.bucket_of``), in the same order a fold of that bucket alone adds them; the
    SummaryTotals' own float fields are then bucket 0's and are not to be used. One pass in the order the nodes
    were read, not one per bucket: visiting 10,000 nodes' objects out of the order they were allocated in took
    twice as long (34 ms instead of 17)."""
    # A merge of the up nodes' digests (clustertop.wire.digest): per node a few additions, not a walk over
    # its GPUs, NICs and bonds (at 1,000 nodes x 8 GPUs: 1,000 iterations, not 8,000). Sums start as
    # None (N/A) and become numbers at the first value reported (``add``).
    up = stale = bad = down = 0
    cpu_cores = mem_total = mem_used = None
    cpu_nodes = mem_nodes = 0
    weighted: list[float] = [0.0] * buckets
    load: list[float | None] = [None] * buckets
    rxs: list[float | None] = [None] * buckets
    txs: list[float | None] = [None] * buckets
    reporting_cores = 0
    b = 0
    gpu_nodes = gpus_lost = 0
    gpus_total = gpus_busy = gpu_procs = None
    vram_total = vram_used = power = power_limit = cuda = None
    gpu_util_sum, gpu_util_n = 0, 0
    bonds_total = bonds_degraded = None
    models: dict[str, int] = {}
    for n in nodes:
        state = n.state
        if state != "up":
            if state == "stale":
                stale += 1
            elif state == "bad":
                bad += 1
            else:
                down += 1
            continue
        up += 1
        d = view_digest(n)
        if d is None:
            continue
        if buckets > 1:
            b = bucket_of(n.host, buckets)
        count = d.cpu_count
        if count is not None:
            cpu_cores = add(cpu_cores, count)
            if d.cpu_util_pct is not None:
                weighted[b] += d.cpu_util_pct * count
                reporting_cores += count
                cpu_nodes += 1
        load[b] = add(load[b], d.load1)
        if d.mem_total_bytes is not None:
            mem_total = add(mem_total, d.mem_total_bytes)
            mem_used = add(mem_used, d.mem_used_bytes)
            mem_nodes += 1
        rxs[b], txs[b] = add(rxs[b], d.net_rx_bytes_s), add(txs[b], d.net_tx_bytes_s)
        if d.gpus is not None:
            gpu_nodes += 1
            gpus_total = add(gpus_total, d.gpus)
            if d.gpu_util_n or d.gpus == d.gpus_lost:
                # Busy is known where a live card reports its utilisation, or where there is no live
                # card (0 busy); a node whose cards report none adds nothing, so a cluster of them
                # says busy N/A, not 0.
                gpus_busy = add(gpus_busy, d.gpus_busy)
            gpu_procs = add(gpu_procs, d.gpu_procs or 0)
            gpus_lost += d.gpus_lost
            gpu_util_sum += d.gpu_util_sum
            gpu_util_n += d.gpu_util_n
            vram_total, vram_used = add(vram_total, d.vram_total_bytes), add(vram_used, d.vram_used_bytes)
            power, power_limit = add(power, d.power_mw), add(power_limit, d.power_limit_mw)
            cuda = add(cuda, d.cuda_cores)
            for name, k in (d.models or {}).items():
                models[name] = models.get(name, 0) + k
        if d.bonds is not None:
            bonds_total = add(bonds_total, d.bonds)
            bonds_degraded = add(bonds_degraded, d.bonds_degraded or 0)
    return SummaryTotals(
        nodes_up=up, nodes_stale=stale, nodes_down=down, nodes_bad=bad, cpu_cores=cpu_cores,
        cpu_util_weighted=weighted[0], cpu_reporting_cores=reporting_cores, cpu_nodes=cpu_nodes, load1=load[0],
        mem_total_bytes=mem_total, mem_used_bytes=mem_used, mem_nodes=mem_nodes, gpus_total=gpus_total,
        gpus_busy=gpus_busy, gpus_lost=gpus_lost, gpu_util_sum=gpu_util_sum, gpu_util_n=gpu_util_n,
        vram_total_bytes=vram_total, vram_used_bytes=vram_used, power_mw=power, power_limit_mw=power_limit,
        cuda_cores=cuda, gpu_nodes=gpu_nodes, gpu_procs=gpu_procs, net_rx_bytes_s=rxs[0], net_tx_bytes_s=txs[0],
        bonds_total=bonds_total, bonds_degraded=bonds_degraded, models=models or None,
    ), (weighted, load, rxs, txs)


def merge_totals(parts: list[SummaryTotals], nodes_total: int, floats: _Floats | None = None) -> Totals:
    """Buckets' totals added up, in the order given (bucket order), into the cluster's (its cluster payloads' part
    not included: ``_cluster_totals``). ``floats``: the float sums per bucket, in place of the parts' own
    (``summarize``: one part holding every bucket's integer sums)."""
    t = Totals(nodes_total=nodes_total)
    util_weighted = 0.0
    reporting_cores = gpu_util_sum = gpu_util_n = 0
    models = t.models
    if floats is not None:
        weighted, load, rxs, txs = floats
        for i in range(len(weighted)):
            util_weighted += weighted[i]
            t.load1 = add(t.load1, load[i])
            t.net_rx_bytes_s = add(t.net_rx_bytes_s, rxs[i])
            t.net_tx_bytes_s = add(t.net_tx_bytes_s, txs[i])
    for p in parts:
        if floats is None:
            util_weighted += p.cpu_util_weighted
            t.load1 = add(t.load1, p.load1)
            t.net_rx_bytes_s = add(t.net_rx_bytes_s, p.net_rx_bytes_s)
            t.net_tx_bytes_s = add(t.net_tx_bytes_s, p.net_tx_bytes_s)
        t.nodes_up += p.nodes_up
        t.nodes_stale += p.nodes_stale
        t.nodes_down += p.nodes_down
        t.nodes_bad += p.nodes_bad
        t.cpu_cores = add(t.cpu_cores, p.cpu_cores)
        reporting_cores += p.cpu_reporting_cores
        t.cpu_nodes += p.cpu_nodes
        t.mem_total_bytes = add(t.mem_total_bytes, p.mem_total_bytes)
        t.mem_used_bytes = add(t.mem_used_bytes, p.mem_used_bytes)
        t.mem_nodes += p.mem_nodes
        t.gpus_total = add(t.gpus_total, p.gpus_total)
        t.gpus_busy = add(t.gpus_busy, p.gpus_busy)
        t.gpus_lost += p.gpus_lost
        gpu_util_sum += p.gpu_util_sum
        gpu_util_n += p.gpu_util_n
        t.vram_total_bytes = add(t.vram_total_bytes, p.vram_total_bytes)
        t.vram_used_bytes = add(t.vram_used_bytes, p.vram_used_bytes)
        t.power_mw = add(t.power_mw, p.power_mw)
        t.power_limit_mw = add(t.power_limit_mw, p.power_limit_mw)
        t.cuda_cores = add(t.cuda_cores, p.cuda_cores)
        t.gpu_nodes += p.gpu_nodes
        t.gpu_procs = add(t.gpu_procs, p.gpu_procs)
        t.bonds_total = add(t.bonds_total, p.bonds_total)
        t.bonds_degraded = add(t.bonds_degraded, p.bonds_degraded)
        for name, k in (p.models or {}).items():
            models[name] = models.get(name, 0) + k
    if reporting_cores:
        t.cpu_util_pct = util_weighted / reporting_cores
    if gpu_util_n:
        t.gpu_util_pct = gpu_util_sum / gpu_util_n
    return t


def _cluster_totals(t: Totals, cluster: dict[str, schema.ClusterPayload]) -> None:
    ceph = cluster.get("ceph")
    if ceph is not None and ceph.ceph is not None:
        t.ceph_status = ceph.ceph.status if ceph.ok else None
    if ceph is not None and not ceph.ok:
        t.ceph_unreachable = True
    for q in queue_payloads(cluster):
        if q.queues is not None:
            depths = [x.depth for x in q.queues.queues or () if x.depth is not None]
            if depths:
                t.tasks_queued = (t.tasks_queued or 0) + sum(depths)
            if q.queues.workers is not None:
                t.workers_online = (t.workers_online or 0) + sum(1 for w in q.queues.workers if w.online)
    k = cluster.get("kubernetes")
    if k is not None and k.kubernetes is not None:
        if k.kubernetes.pods is not None:
            t.pods_running = sum(1 for p in k.kubernetes.pods if p.phase == "Running")
            t.gpus_allocated = sum(p.gpus for p in k.kubernetes.pods if p.phase in ("Running", "Pending")
                                   and p.node)


# ---------------------------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------------------------

SEVERITIES = ("info", "warning", "critical")
#: A GPU pod Pending (Unschedulable: no GPUs free anywhere) longer than this is an alert.
PENDING_GRACE_S = 300.0


@dataclass(frozen=True)
class Alert:
    severity: str  # "info" | "warning" | "critical"
    source: str  # "node" | "gpu" | "bond" | "ceph" | "collector" | "queue" | ...
    node: str | None
    subject: str  # "gpu1", "bond0/eth2", "osd.3"
    message: str  # in words; node text inside is data (escape before markup)
    # The rule it answers to (clustertop.alerting: for-durations, severities, silences, Alertmanager's
    # alertname): with node and subject, an alert's identity while its message changes ("down 5m" -> "6m").
    rule: str = ""

    @cached_property
    def key(self) -> str:
        """Stable identity, so the UI can tell a new alert from one it already shows (made once per alert: the
        app, the alert strip and the timeline each ask, for thousands of alerts at 10,000 nodes)."""
        return f"{self.source}:{self.node}:{self.subject}:{self.message}"

    @cached_property
    def order(self) -> tuple[int, str, str]:
        """``alert_order``'s key, made once per alert: an alert kept from read to read (``read.summary.AlertMemo``)
        sorts by ``ORDER`` without a Python call."""
        return _SEVERITY_RANK[self.severity], self.node or "", self.subject


def alerts(nodes: list[NodeView], cluster: dict[str, schema.ClusterPayload] | None = None,
           now: float | None = None, *, flags: Iterable[Flag] | None = None,
           pending_grace_s: float = PENDING_GRACE_S, node_part: list[Alert] | None = None,
           host_memo: HostMatchMemo | None = None) -> list[Alert]:
    """Every alert, most severe first: each node's state, what its digest says is wrong (a stale or
    down node's old problems are not repeated), then the cluster payloads' (Ceph, queues, Kubernetes)
    and the GPU ledger's ``flags``. ``pending_grace_s``: how long a GPU pod may stay Pending.
    ``node_part``: the nodes' alerts as made elsewhere instead (a read of bucket summaries:
    ``read.bucketread.node_alerts_of``); ``nodes`` then only name the hosts Kubernetes nodes map to.
    ``host_memo``: the caller's ``HostMatchMemo``, kept from read to read (None: Kubernetes nodes matched anew)."""
    out = node_alerts(nodes) if node_part is None else list(node_part)
    out.extend(_cluster_alerts(cluster or {}, now))
    out.extend(kube_alerts(cluster or {}, list(map(_HOST, nodes)), now, pending_grace_s,  # in C: 10,000 nodes
                           host_memo))
    out.extend(flag_alerts(flags or ()))
    out.sort(key=ORDER)
    return out


_HOST = attrgetter("host")
_SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}
#: The sort key of ``alert_order`` as ``Alert.order`` (cached per alert, so read at C speed).
ORDER = attrgetter("order")


def alert_order(a: Alert) -> tuple[int, str, str]:
    """The order alerts are listed in: most severe first, then by node and subject (a stable sort keeps
    one node's alerts of one subject in the order they were raised)."""
    return _SEVERITY_RANK[a.severity], a.node or "", a.subject


def node_alerts(nodes: list[NodeView]) -> list[Alert]:
    """The nodes' part of ``alerts``, unsorted: each node's state, and what its digest says is wrong (a stale
    or down node's old problems are not repeated). A bucket summary's alerts are these (``read.summary``)."""
    out: list[Alert] = []
    emit = out.append  # not ``add``: that is the running sum imported from clustertop.wire.digest
    for n in nodes:
        state = n.state
        if state == "down":
            emit(Alert("critical", "node", n.host, n.host, f"down, last seen {age_text(n.age_s)} ago", "NodeSilent"))
            continue
        if state == "stale":
            emit(Alert("warning", "node", n.host, n.host, f"stale: no report for {age_text(n.age_s)}", "NodeSilent"))
            continue
        if state == "bad":
            emit(Alert("warning", "node", n.host, n.host, n.error or "bad data", "NodeBadData"))
        d = view_digest(n)
        if d is not None and d.alerts:
            host = n.host
            for a in d.alerts:  # a digest is node data: an unknown severity word is a warning
                emit(Alert(a.severity if a.severity in SEVERITIES else "warning", a.source, host, a.subject,
                          a.message, digest_rule(a.source, a.message)))
    return out


def _cluster_alerts(cluster: dict[str, schema.ClusterPayload], now: float | None) -> list[Alert]:
    out: list[Alert] = []
    ceph = cluster.get("ceph")
    if ceph is not None:
        if not ceph.ok:
            age = f", last good data {age_text(now - ceph.last_ok_ts)} ago" if now and ceph.last_ok_ts else ""
            out.append(Alert("critical", "ceph", None, "ceph", f"{_ceph_error(ceph.error)}{age}", "CephUnreachable"))
        elif ceph.ceph is not None:
            down_osds = [o for o in ceph.ceph.osds or () if o.up is False]
            for c in ceph.ceph.checks or ():
                sev = "critical" if c.severity == "HEALTH_ERR" else "warning"
                if c.code == "OSD_DOWN" and down_osds:
                    # One alert per OSD, on its host: "which disk, which box" is what the operator needs.
                    for o in down_osds:
                        where = f" on {o.host}" if o.host else ""
                        out.append(Alert(sev, "ceph", o.host, f"osd.{o.id}",
                                         f"Ceph OSD_DOWN: osd.{o.id}{where} is down", "CephOsdDown"))
                    continue
                msg = f"Ceph {c.code}: {c.message or ''}".rstrip(": ")
                if c.detail and c.code != "PG_DEGRADED":  # pg lists are noise; OSD/pool names are not
                    msg += " (" + "; ".join(c.detail[:2]) + (", …" if len(c.detail) > 2 else "") + ")"
                out.append(Alert(sev, "ceph", None, c.code, msg, "CephHealth"))
    for q in queue_payloads(cluster):
        if q.queues is None:
            continue
        for x in q.queues.queues or ():
            if x.growing_unconsumed:
                out.append(Alert("warning", "queue", None, x.name, f"queue {x.name} growing with no consumer ({x.depth})",
                                 "QueueGrowingNoConsumer"))
        for err in q.queues.errors or ():
            out.append(Alert("warning", "queue", None, "queues", err, "QueueSourceError"))
    return out

# What a node's digest alert is, from the words wire.digest.node_alerts writes (fixed templates; the
# node text only ever follows them). An alert a newer agent adds maps to its source's catch-all.
_DIGEST_RULES: list[tuple[str, re.Pattern[str], str]] = [
    ("gpu", re.compile(r"GPU \S+ lost"), "GpuLost"),
    ("gpu", re.compile(r"GPU \S+ hot"), "GpuHot"),
    ("gpu", re.compile(r"GPU \S+: \S+ uncorrected ECC"), "GpuEccErrors"),
    ("gpu", re.compile(r"GPU \S+ throttled"), "GpuThrottled"),
    ("gpu", re.compile(r"GPU \S+: XID "), "GpuXid"),
    ("gpu", re.compile(r"GPU \S+: (row remapping failed|memory repair pending)"), "GpuMemoryRepair"),
    ("cpu", re.compile(r"CPU hot"), "CpuHot"),
    ("cpu", re.compile(r"CPU thermally throttled"), "CpuThrottled"),
    ("mount", re.compile(r"\S+ .* hung$"), "MountHung"),
    ("mount", re.compile(r"\S+ .* slow \("), "MountSlow"),
]
_SOURCE_RULES = {"collector": "CollectorFailing", "bond": "BondDegraded", "mount": "MountError",
                 "disk": "FilesystemFull", "gpu": "GpuProblem"}


#: ``digest_rule`` remembers this many (source, message) answers: the same few messages come back from
#: thousands of nodes read after read (21 distinct among ~3,600 alerts on the simulated 10,000 nodes), and node
#: text that varies without end costs memory only up to the bound.
_RULE_MEMO_MAX = 20_000


@lru_cache(maxsize=_RULE_MEMO_MAX)
def digest_rule(source: str, message: str) -> str:
    """The rule name of a node's digest alert ("NodeProblem" for a source this reader does not know)."""
    return _digest_rule(source, message)


def _digest_rule(source: str, message: str) -> str:
    for src, pattern, rule in _DIGEST_RULES:
        if src == source and pattern.match(message):
            return rule
    return _SOURCE_RULES.get(source, "NodeProblem")


class HostMatchMemo:
    """``kube_alerts``' last match of Kubernetes node names to hosts, kept by its caller from read to read (the
    app, the alert service: each its own): ``last`` = (node names, hosts, node name -> host), one entry, replaced
    whole. The same names and hosts as last call (nearly every read) reuse its match: two list compares in C,
    where the match walks every host in Python (~10 ms at 10,000 nodes, every read)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[list[str], list[str], dict[str, str]] | None = None


def kube_alerts(cluster: dict[str, schema.ClusterPayload], hosts: list[str], now: float | None,
                pending_grace_s: float = PENDING_GRACE_S, memo: HostMatchMemo | None = None) -> list[Alert]:
    """NotReady nodes, GPU pods Pending past the grace, pods in CrashLoopBackOff. Only from a payload
    whose source answered: the last good data of an unreachable API is not a node's state now.
    ``memo``: the caller's last match of node names to hosts (``HostMatchMemo``); None: matched anew."""
    k = cluster.get("kubernetes")
    if k is None or k.kubernetes is None or not k.ok:
        return []
    kube = k.kubernetes
    # Kubernetes node name -> the agent's host, where they match: the alert lands on the node's row (the same
    # names and hosts as the memo's last call reuse its match).
    names = [n.name for n in kube.nodes or ()]
    last = memo.last if memo is not None else None
    if last is not None and last[0] == names and last[1] == hosts:
        host_of = last[2]
    else:
        host_of = {name: host for host, name in match_hosts(names, hosts).items()}
        if memo is not None:
            memo.last = (names, hosts, host_of)
    out: list[Alert] = []
    for n in kube.nodes or ():
        if n.ready is False:
            out.append(Alert("critical", "kubernetes", host_of.get(n.name, n.name), n.name,
                             f"Kubernetes node {n.name} NotReady", "KubeNodeNotReady"))
    for p in kube.pods or ():
        pod = f"{p.namespace}/{p.name}"
        node = host_of.get(p.node, p.node) if p.node else None
        if p.gpus and p.phase == "Pending" and now is not None and p.created_ts is not None \
                and now - p.created_ts >= pending_grace_s:
            why = f" ({p.reason})" if p.reason else ""
            out.append(Alert("warning", "kubernetes", node, pod,
                             f"GPU pod {pod} ({p.gpus} GPU) pending for {age_text(now - p.created_ts)}{why}",
                             "KubeGpuPodPending"))
        if p.reason == "CrashLoopBackOff":
            restarts = f" ({p.restarts} restarts)" if p.restarts is not None else ""
            out.append(Alert("warning", "kubernetes", node, pod, f"pod {pod} in CrashLoopBackOff{restarts}",
                             "KubePodCrashLooping"))
    return out


_FLAG_RULES = {"idle-allocated": "GpuIdleAllocated", "unowned-busy": "GpuUnownedBusy"}


def flag_alerts(flags: Iterable[Flag]) -> list[Alert]:
    """The GPU ledger's flags (already past their own durations) as warnings on their node."""
    out = []
    for f in flags:
        subject = f.pod or ",".join(f"gpu{i}" for i in f.gpu_indices) or f.kind
        out.append(Alert("warning", "ledger", f.node or None, subject, f.message, _FLAG_RULES.get(f.kind, "GpuLedger")))
    return out


def _ceph_error(error: str | None) -> str:
    """The runner reports "<ExceptionType>: <message>"; the ceph collector's messages already say
    what failed ("Ceph unreachable: all mgr URLs failed: ...", "Ceph login refused for ..."), so
    they are shown as they are instead of as "Ceph unreachable: CephUnreachable: Ceph unreachable"."""
    if not error:
        return "Ceph unreachable: no answer"
    _, sep, rest = error.partition(": ")
    if error.startswith("Ceph "):
        return error
    if sep and rest.startswith("Ceph "):
        return rest
    return f"Ceph unreachable: {error}"


def queue_payloads(cluster: dict[str, schema.ClusterPayload]) -> list[schema.ClusterPayload]:
    """The payloads that carry queues/workers (celery, dask), in a stable order."""
    return [p for name, p in sorted(cluster.items()) if p.queues is not None]


#: Ages past this (about 317 years) are a node's absurd timestamp: "?", never a 300-digit figure.
MAX_AGE_S = 1e10


def age_text(s: float | None) -> str:
    """3 -> "3s", 300 -> "5m", 7200 -> "2h" ("?" when unknown: also NaN, inf and ages past MAX_AGE_S,
    which come from a node's absurd timestamp, never from time that passed)."""
    if s is None or not -MAX_AGE_S < s < MAX_AGE_S:  # NaN fails the comparison too
        return "?"
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"
