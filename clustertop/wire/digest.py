"""Provides the node digest: one node folded into the numbers cluster-wide views read of it.

The agent publishes ``digest(snap)`` beside its snapshot and brief (``wire.digest_key``); the
dashboard's overview and nodes table read digests only, and every read folds them into the
cluster totals (``cluster.summarize``) and alerts (``cluster.alerts``). At 1,000 nodes x 8 GPUs that
is ~1,000 small structs decoded instead of ~40,000, and 1,000 sums merged instead of 8,000 GPUs
walked, on every refresh. Where a node has no usable digest (an agent from before digests, or one
with older ``rules``) the reader folds the node's brief or snapshot with this same function, so
there is one implementation of every rule, run either on the node or in the dashboard.

Also home of the per-node rules themselves (busy, hot, the NICs that count), which the tiles, the
tables and the history point share.
"""

from __future__ import annotations

from typing import Any

from clustertop.wire import schema
from clustertop.wire.text import known

#: The version of the folding and alert rules below. Bump it when a rule changes what a digest
#: holds: dashboards then fold older agents' briefs themselves instead of trusting their digests.
RULES = 3  # 2: CPU/SoC hot and throttled, GPU XID errors and row-remap/page-retirement alerts; 3: the "e" mark

#: A GPU counts as busy at or above this utilisation.
GPU_BUSY_PCT = 10
#: Temperatures at which a GPU is called hot (alert) when the card does not say its slowdown point.
GPU_HOT_C = 85

#: NIC kinds a node's network totals count: its own NICs (physical ones, bonds, and NICs of unknown
#: kind), not a bond's slaves, loopback or veths, so each byte counts once.
TOTAL_NIC_KINDS = (None, "physical", "bond")

#: A CPU/SoC sensor is called hot at this temperature when it says neither where it slows down nor its
#: critical point.
CPU_HOT_C = 90.0
#: A sensor with a critical point but no slowdown point is called hot this many degrees short of it.
CPU_CRIT_MARGIN_C = 10.0
#: An XID event raises an alert for this long after it was seen (the count itself is since agent start).
XID_ALERT_S = 3600.0
#: XIDs that mean the card itself is failing, not a user's program (NVIDIA's XID catalogue: 48 double-bit
#: ECC, 62/74 internal/NVLink, 63/64 row remap, 79 fell off the bus, 92/94/95 ECC, 119/120 GSP).
XID_CRITICAL = frozenset((48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120))

_HW_THROTTLE = frozenset(("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"))


def hot_c(g: schema.Gpu) -> int:
    """Where a GPU counts as hot: 5 °C short of the card's own slowdown point, else GPU_HOT_C."""
    return g.temp_slowdown_c - 5 if g.temp_slowdown_c else GPU_HOT_C


def is_hot(g: schema.Gpu) -> bool:
    return g.temp_c is not None and g.temp_c >= hot_c(g)


def cpu_high_c(t: schema.TempSensor) -> float:
    """Where a CPU sensor counts as hot: its slowdown point, else short of its critical point, else CPU_HOT_C."""
    if t.high_c is not None:
        return t.high_c
    if t.crit_c is not None:
        return t.crit_c - CPU_CRIT_MARGIN_C
    return CPU_HOT_C


def nearest_hot(s: schema.Sensors) -> schema.TempSensor | None:
    """The CPU sensor closest to (or furthest past) its own slowdown point: the one ``cpu_hot`` turns on,
    and all of ``temps`` a brief keeps."""
    best: schema.TempSensor | None = None
    margin = 0.0
    for t in s.temps or ():
        if not t.cpu or t.temp_c is None or known(t.temp_c) is None:
            continue
        m = t.temp_c - cpu_high_c(t)
        if best is None or m > margin:
            best, margin = t, m
    return best


def cpu_hot(s: schema.Sensors | None) -> bool:
    """A CPU/SoC sensor at or past its own slowdown point (``cpu_high_c``)."""
    t = nearest_hot(s) if s is not None else None
    return t is not None and t.temp_c is not None and t.temp_c >= cpu_high_c(t)


def _known_sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def node_net_rates(s: schema.System | None) -> tuple[float | None, float | None]:
    """Receive and send bytes/s over a node's own NICs (TOTAL_NIC_KINDS). None where no NIC reports."""
    if s is None or s.nics is None:
        return None, None
    top = [n for n in s.nics if n.kind in TOTAL_NIC_KINDS]
    return _known_sum([n.rx_bytes_s for n in top]), _known_sum([n.tx_bytes_s for n in top])


def node_disk_rates(s: schema.System | None) -> tuple[float | None, float | None]:
    """Read and write bytes/s over a node's disks (whole devices, as the host collector lists them)."""
    if s is None or s.disks is None:
        return None, None
    return _known_sum([d.read_bytes_s for d in s.disks]), _known_sum([d.write_bytes_s for d in s.disks])


def add(total: Any, v: Any) -> Any:
    """A running sum of known values: None (N/A) until the first one, unknown ones skipped."""
    return total if v is None else (v if total is None else total + v)


def digest(snap: schema.NodeSnapshot) -> schema.NodeDigest:
    """The digest of one snapshot (full or brief: a brief keeps everything this reads)."""
    d = schema.NodeDigest(v=snap.v, host=snap.host, ts=snap.ts, seq=snap.seq, rules=RULES, role=snap.role,
                          labels=snap.labels)
    if snap.agent is not None:
        d.agent_cpu_pct, d.agent_rss_bytes = snap.agent.cpu_pct, snap.agent.rss_bytes
    s = snap.system
    if s is not None:
        d.cpu_count, d.load1, d.uptime_s = s.cpu_count, s.load1, s.uptime_s
        if s.cpu is not None:
            d.cpu_util_pct = s.cpu.util_pct
        if s.mem is not None and s.mem.total_bytes is not None:  # used without total is not shown
            d.mem_total_bytes, d.mem_used_bytes = s.mem.total_bytes, s.mem.used_bytes
        d.net_rx_bytes_s, d.net_tx_bytes_s = node_net_rates(s)
        d.disk_read_bytes_s, d.disk_write_bytes_s = node_disk_rates(s)
    if snap.gpus is not None:
        _fold_gpus(d, snap.gpus)
    if snap.bonds is not None:
        d.bonds = len(snap.bonds)
        d.bonds_degraded = sum(1 for b in snap.bonds if b.degraded)
        if all(b.slaves is not None for b in snap.bonds):
            d.bond_slaves = sum(len(b.slaves or ()) for b in snap.bonds)
            d.bond_slaves_ok = sum(1 for b in snap.bonds for x in b.slaves or () if x.ok)
    d.alerts = node_alerts(snap) or None
    return d


def _fold_gpus(d: schema.NodeDigest, gpus: list[schema.Gpu]) -> None:
    d.gpus, d.gpu_procs = len(gpus), 0
    utils: list[int | None] = []
    marks: list[str] = []
    models: dict[str, int] = {}
    temps: list[int] = []
    for g in gpus:
        if g.lost:
            d.gpus_lost += 1
            utils.append(None)
            marks.append("x")
            continue
        hot = is_hot(g)
        utils.append(g.util_pct)
        marks.append("e" if g.ecc_uncorrected else "h" if hot else ".")  # the tile's word: LOST > ECC > HOT
        d.gpus_hot += hot
        if g.name:
            models[g.name] = models.get(g.name, 0) + 1
        if g.util_pct is not None:
            d.gpu_util_sum += g.util_pct
            d.gpu_util_n += 1
            d.gpus_busy += g.util_pct >= GPU_BUSY_PCT
        if g.temp_c is not None:
            temps.append(g.temp_c)
        if g.mem_total_bytes is None or g.mem_used_bytes is None:
            d.vram_partial = True
        d.vram_total_bytes = add(d.vram_total_bytes, g.mem_total_bytes)
        d.vram_used_bytes = add(d.vram_used_bytes, g.mem_used_bytes)
        d.power_mw = add(d.power_mw, g.power_mw)
        d.power_limit_mw = add(d.power_limit_mw, g.power_limit_mw)
        d.cuda_cores = add(d.cuda_cores, g.cuda_cores)
        d.gpu_procs += len(g.procs or ())
    d.gpu_util_pct, d.gpu_marks = utils, "".join(marks)
    d.gpu_temp_max_c = max(temps) if temps else None
    d.models = models or None


def _figure(v: float, spec: str = "") -> str:
    """A number from a snapshot, for an alert's words: as sent, or "?" where it is no reading at all
    (``wire.text.known``: NaN, ±inf, a broken counter's 2**64 - 1), so an alert never carries a 20-digit
    figure. Here, not in the dashboard's fmt: agents write these words into their digests."""
    return "?" if known(v) is None else format(v, spec)


def node_alerts(snap: schema.NodeSnapshot) -> list[schema.DigestAlert]:
    """What a node's own snapshot says is wrong (the node's up/stale/down state is the reader's)."""
    out: list[schema.DigestAlert] = []

    def alert(severity: str, source: str, subject: str, message: str) -> None:
        out.append(schema.DigestAlert(severity=severity, source=source, subject=subject, message=message))

    for name in sorted(name for name, st in snap.collectors.items() if not st.ok and st.error):
        alert("warning", "collector", name, f"collector {name} failing: {snap.collectors[name].error}")
    for g in snap.gpus or ():
        index = _figure(g.index)
        subject = f"gpu{index}"
        if g.lost:
            alert("critical", "gpu", subject, f"GPU {index} lost: {g.error or 'fell off the bus'}")
            continue
        if is_hot(g):
            alert("warning", "gpu", subject, f"GPU {index} hot: {_figure(g.temp_c or 0)} °C")
        if g.ecc_uncorrected:
            alert("critical", "gpu", subject, f"GPU {index}: {_figure(g.ecc_uncorrected)} uncorrected ECC errors")
        reasons = g.throttle_reasons
        if reasons and not _HW_THROTTLE.isdisjoint(reasons):
            alert("warning", "gpu", subject, f"GPU {index} throttled: {', '.join(reasons)}")
        if g.xid_errors and g.xid_last_ts is not None and snap.ts - g.xid_last_ts < XID_ALERT_S:
            code = g.xid_last
            alert("critical" if code in XID_CRITICAL else "warning", "gpu", subject,
                  f"GPU {index}: XID {_figure(code) if code is not None else '?'}"
                  f" ({_figure(g.xid_errors)} since agent start)")
        if g.remap_failed:
            alert("critical", "gpu", subject, f"GPU {index}: row remapping failed, the card needs service")
        elif g.remap_pending or g.retired_pending:
            alert("warning", "gpu", subject, f"GPU {index}: memory repair pending, reset the GPU")
    for b in snap.bonds or ():
        if b.degraded:
            why = "; ".join(b.problems or []) or "degraded"
            alert("warning" if any(s.ok for s in b.slaves or ()) else "critical", "bond", b.name,
                f"bond {b.name} degraded: {why}")
    for m in snap.netmounts or ():
        kind = m.fstype or "mount"
        if m.state == "hung":
            alert("critical", "mount", m.mountpoint, f"{kind} {m.mountpoint} hung")
        elif m.state == "slow":
            lat = f"{_figure(m.latency_ms, '.0f')} ms" if m.latency_ms is not None else "slow"
            alert("warning", "mount", m.mountpoint, f"{kind} {m.mountpoint} slow ({lat})")
        elif m.error:
            alert("warning", "mount", m.mountpoint, f"{kind} {m.mountpoint}: {m.error}")
    sensors = snap.sensors
    if sensors is not None:
        if cpu_hot(sensors):
            alert("warning", "cpu", "cpu", f"CPU hot: {_figure(sensors.cpu_temp_c or 0, '.0f')} °C")
        if sensors.throttled:
            why = (f"{_figure(sensors.throttle_new)} throttle events" if sensors.throttle_new else
                   f"{_figure(sensors.cooling or 0)} cooling devices active")
            alert("warning", "cpu", "cpu", f"CPU thermally throttled ({why})")
    system = snap.system
    for fs in (system.filesystems or ()) if system is not None else ():
        if fs.total_bytes and fs.used_bytes is not None and fs.used_bytes / fs.total_bytes >= 0.95:
            alert("warning", "disk", fs.mountpoint,
                  f"filesystem {fs.mountpoint} {_figure(100 * fs.used_bytes / fs.total_bytes, '.0f')}% full")
    return out

