"""Provides the one-machine view: cluster totals and alerts, pure functions of what was read.

Totals count only nodes that are up; every total is None (N/A) when no up node reports it,
and ``*_nodes`` says how many nodes a total is made of, so "448 GiB RAM (4/5 nodes)" is honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collectors import schema

if TYPE_CHECKING:
    from collectors.reader import NodeView

#: A GPU counts as busy at or above this utilisation.
GPU_BUSY_PCT = 10
#: Temperatures at which a GPU is called hot (alert) when the card does not say its slowdown point.
GPU_HOT_C = 85


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


def hot_c(g: schema.Gpu) -> int:
    """Where a GPU counts as hot: 5 °C short of the card's own slowdown point, else GPU_HOT_C."""
    return g.temp_slowdown_c - 5 if g.temp_slowdown_c else GPU_HOT_C


def is_hot(g: schema.Gpu) -> bool:
    return g.temp_c is not None and g.temp_c >= hot_c(g)


def _known_sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


#: NIC kinds a node's network totals count: its own NICs (physical ones, bonds, and NICs of unknown
#: kind), not a bond's slaves, loopback or veths, so each byte counts once.
TOTAL_NIC_KINDS = (None, "physical", "bond")


def node_net_rates(s: schema.System | None) -> tuple[float | None, float | None]:
    """Receive and send bytes/s over a node's own NICs: physical ones and bonds, not a bond's
    slaves, loopback or veths, so each byte counts once. None where no NIC reports a rate."""
    if s is None or s.nics is None:
        return None, None
    top = [n for n in s.nics if n.kind in TOTAL_NIC_KINDS]
    return _known_sum([n.rx_bytes_s for n in top]), _known_sum([n.tx_bytes_s for n in top])


def node_disk_rates(s: schema.System | None) -> tuple[float | None, float | None]:
    """Read and write bytes/s over a node's disks (whole devices, as the host collector lists them)."""
    if s is None or s.disks is None:
        return None, None
    return _known_sum([d.read_bytes_s for d in s.disks]), _known_sum([d.write_bytes_s for d in s.disks])


def summarize(nodes: list[NodeView], cluster: dict[str, schema.ClusterPayload] | None = None) -> Totals:
    # One pass with every running sum in a local variable: at 1,000 nodes x 8 GPUs this runs on
    # every refresh, and attribute writes plus a helper call per field cost ~4x as much. Sums start
    # as None (N/A) and become numbers at the first value reported, in the same order as before,
    # so float results are bit-for-bit what a field-by-field fold gives.
    up = stale = bad = down = 0
    cpu_cores = load1 = mem_total = mem_used = None
    cpu_nodes = mem_nodes = 0
    util_weighted = 0.0
    reporting_cores = 0
    rx = tx = None
    gpu_nodes = gpus_lost = 0
    gpus_total = gpus_busy = gpu_procs = None
    vram_total = vram_used = power = power_limit = cuda = None
    gpu_util_sum, gpu_util_n = 0, 0
    bonds_total = bonds_degraded = None
    models: dict[str, int] = {}
    busy_pct = GPU_BUSY_PCT
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
        snap = n.snap
        if snap is None:
            continue
        s = snap.system
        if s is not None:
            count = s.cpu_count
            if count is not None:
                cpu_cores = count if cpu_cores is None else cpu_cores + count
                cpu = s.cpu
                if cpu is not None and cpu.util_pct is not None:
                    util_weighted += cpu.util_pct * count
                    reporting_cores += count
                    cpu_nodes += 1
            if s.load1 is not None:
                load1 = s.load1 if load1 is None else load1 + s.load1
            mem = s.mem
            if mem is not None and mem.total_bytes is not None:
                mem_total = mem.total_bytes if mem_total is None else mem_total + mem.total_bytes
                if mem.used_bytes is not None:
                    mem_used = mem.used_bytes if mem_used is None else mem_used + mem.used_bytes
                mem_nodes += 1
            for nic in s.nics or ():
                if nic.kind in TOTAL_NIC_KINDS:
                    v = nic.rx_bytes_s
                    if v is not None:
                        rx = v if rx is None else rx + v
                    v = nic.tx_bytes_s
                    if v is not None:
                        tx = v if tx is None else tx + v
        gpus = snap.gpus
        if gpus is not None:
            gpu_nodes += 1
            gpus_total = len(gpus) if gpus_total is None else gpus_total + len(gpus)
            if gpus_busy is None:
                gpus_busy = 0
            if gpu_procs is None:
                gpu_procs = 0
            for g in gpus:
                if g.lost:
                    gpus_lost += 1
                    continue
                if g.name:
                    models[g.name] = models.get(g.name, 0) + 1
                u = g.util_pct
                if u is not None:
                    gpu_util_sum += u
                    gpu_util_n += 1
                    if u >= busy_pct:
                        gpus_busy += 1
                v = g.mem_total_bytes
                if v is not None:
                    vram_total = v if vram_total is None else vram_total + v
                v = g.mem_used_bytes
                if v is not None:
                    vram_used = v if vram_used is None else vram_used + v
                v = g.power_mw
                if v is not None:
                    power = v if power is None else power + v
                v = g.power_limit_mw
                if v is not None:
                    power_limit = v if power_limit is None else power_limit + v
                v = g.cuda_cores
                if v is not None:
                    cuda = v if cuda is None else cuda + v
                if g.procs:
                    gpu_procs += len(g.procs)
        bonds = snap.bonds
        if bonds is not None:
            degraded = sum(1 for b in bonds if b.degraded)
            bonds_total = len(bonds) if bonds_total is None else bonds_total + len(bonds)
            bonds_degraded = degraded if bonds_degraded is None else bonds_degraded + degraded
    t = Totals(
        nodes_total=len(nodes), nodes_up=up, nodes_stale=stale, nodes_down=down, nodes_bad=bad,
        cpu_cores=cpu_cores, cpu_nodes=cpu_nodes, load1=load1, mem_total_bytes=mem_total,
        mem_used_bytes=mem_used, mem_nodes=mem_nodes, gpus_total=gpus_total, gpus_busy=gpus_busy,
        gpus_lost=gpus_lost, vram_total_bytes=vram_total, vram_used_bytes=vram_used, power_mw=power,
        power_limit_mw=power_limit, cuda_cores=cuda, gpu_nodes=gpu_nodes, gpu_procs=gpu_procs,
        net_rx_bytes_s=rx, net_tx_bytes_s=tx, bonds_total=bonds_total, bonds_degraded=bonds_degraded,
        models=models,
    )
    if cpu_nodes and cpu_cores:
        t.cpu_util_pct = util_weighted / reporting_cores if reporting_cores else None
    if gpu_util_n:
        t.gpu_util_pct = gpu_util_sum / gpu_util_n
    _cluster_totals(t, cluster or {})
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


@dataclass(frozen=True)
class Alert:
    severity: str  # "info" | "warning" | "critical"
    source: str  # "node" | "gpu" | "bond" | "ceph" | "collector" | "queue" | ...
    node: str | None
    subject: str  # "gpu1", "bond0/eth2", "osd.3"
    message: str  # in words; node text inside is data (escape before markup)

    @property
    def key(self) -> str:
        """Stable identity, so the UI can tell a new alert from one it already shows."""
        return f"{self.source}:{self.node}:{self.subject}:{self.message}"


_HW_THROTTLE = frozenset(("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"))


def alerts(nodes: list[NodeView], cluster: dict[str, schema.ClusterPayload] | None = None,
           now: float | None = None) -> list[Alert]:
    # Runs on every refresh over every node and GPU (8,000 at the benchmark's scale): the common
    # case (nothing wrong) is kept to a few attribute reads per GPU; alerts are only built for
    # what is actually wrong, in the same order as always (the final sort is stable).
    out: list[Alert] = []
    add = out.append
    for n in nodes:
        state = n.state
        if state == "down":
            add(Alert("critical", "node", n.host, n.host, f"down, last seen {age_text(n.age_s)} ago"))
            continue
        if state == "stale":
            add(Alert("warning", "node", n.host, n.host, f"stale: no report for {age_text(n.age_s)}"))
            continue
        if state == "bad":
            add(Alert("warning", "node", n.host, n.host, n.error or "bad data"))
        snap = n.snap
        if snap is None:
            continue
        host = n.host
        failing = [name for name, st in snap.collectors.items() if not st.ok and st.error]
        for name in sorted(failing):
            add(Alert("warning", "collector", host, name, f"collector {name} failing: {snap.collectors[name].error}"))
        for g in snap.gpus or ():
            if g.lost:
                add(Alert("critical", "gpu", host, f"gpu{g.index}", f"GPU {g.index} lost: {g.error or 'fell off the bus'}"))
                continue
            temp = g.temp_c
            hot = is_hot(g)
            reasons = g.throttle_reasons
            throttled = bool(reasons) and not _HW_THROTTLE.isdisjoint(reasons)  # type: ignore[arg-type]
            if not (hot or g.ecc_uncorrected or throttled):
                continue
            if hot:
                add(Alert("warning", "gpu", host, f"gpu{g.index}", f"GPU {g.index} hot: {temp} °C"))
            if g.ecc_uncorrected:
                add(Alert("critical", "gpu", host, f"gpu{g.index}", f"GPU {g.index}: {g.ecc_uncorrected} uncorrected ECC errors"))
            if throttled:
                add(Alert("warning", "gpu", host, f"gpu{g.index}", f"GPU {g.index} throttled: {', '.join(reasons or ())}"))
        for b in snap.bonds or ():
            if b.degraded:
                why = "; ".join(b.problems or []) or "degraded"
                add(Alert("warning" if any(s.ok for s in b.slaves or ()) else "critical",
                          "bond", host, b.name, f"bond {b.name} degraded: {why}"))
        for m in snap.netmounts or ():
            if m.state == "hung":
                add(Alert("critical", "mount", host, m.mountpoint, f"{m.fstype or 'mount'} {m.mountpoint} hung"))
            elif m.state == "slow":
                lat = f"{m.latency_ms:.0f} ms" if m.latency_ms is not None else "slow"
                add(Alert("warning", "mount", host, m.mountpoint, f"{m.fstype or 'mount'} {m.mountpoint} slow ({lat})"))
            elif m.error:
                add(Alert("warning", "mount", host, m.mountpoint, f"{m.fstype or 'mount'} {m.mountpoint}: {m.error}"))
        system = snap.system
        if system is not None and system.filesystems:
            for fs in system.filesystems:
                if fs.total_bytes and fs.used_bytes is not None and fs.used_bytes / fs.total_bytes >= 0.95:
                    add(Alert("warning", "disk", host, fs.mountpoint,
                              f"filesystem {fs.mountpoint} {100 * fs.used_bytes / fs.total_bytes:.0f}% full"))
    out.extend(_cluster_alerts(cluster or {}, now))
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    out.sort(key=lambda a: (order[a.severity], a.node or "", a.subject))
    return out


def _cluster_alerts(cluster: dict[str, schema.ClusterPayload], now: float | None) -> list[Alert]:
    out: list[Alert] = []
    ceph = cluster.get("ceph")
    if ceph is not None:
        if not ceph.ok:
            age = f", last good data {age_text(now - ceph.last_ok_ts)} ago" if now and ceph.last_ok_ts else ""
            out.append(Alert("critical", "ceph", None, "ceph", f"{_ceph_error(ceph.error)}{age}"))
        elif ceph.ceph is not None:
            down_osds = [o for o in ceph.ceph.osds or () if o.up is False]
            for c in ceph.ceph.checks or ():
                sev = "critical" if c.severity == "HEALTH_ERR" else "warning"
                if c.code == "OSD_DOWN" and down_osds:
                    # One alert per OSD, on its host: "which disk, which box" is what the operator needs.
                    for o in down_osds:
                        where = f" on {o.host}" if o.host else ""
                        out.append(Alert(sev, "ceph", o.host, f"osd.{o.id}",
                                         f"Ceph OSD_DOWN: osd.{o.id}{where} is down"))
                    continue
                msg = f"Ceph {c.code}: {c.message or ''}".rstrip(": ")
                if c.detail and c.code != "PG_DEGRADED":  # pg lists are noise; OSD/pool names are not
                    msg += " (" + "; ".join(c.detail[:2]) + (", …" if len(c.detail) > 2 else "") + ")"
                out.append(Alert(sev, "ceph", None, c.code, msg))
    for q in queue_payloads(cluster):
        if q.queues is None:
            continue
        for x in q.queues.queues or ():
            if x.growing_unconsumed:
                out.append(Alert("warning", "queue", None, x.name, f"queue {x.name} growing with no consumer ({x.depth})"))
        for err in q.queues.errors or ():
            out.append(Alert("warning", "queue", None, "queues", err))
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


def age_text(s: float | None) -> str:
    """3 -> "3s", 300 -> "5m", 7200 -> "2h" ("?" when unknown)."""
    if s is None:
        return "?"
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"
