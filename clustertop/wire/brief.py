"""Provides the brief: a node snapshot cut down to what the cluster-wide views read every refresh.

The agent publishes it beside the full snapshot (``wire.brief_key``). At 1,000 nodes with 8 GPUs a
refresh of full snapshots decodes ~9 MB and ~1.3 M objects (about 45 ms of msgspec alone); the briefs
are 40 % of the bytes and decode in about half the time. The wall, the work screen, the GPU table
(all but the selected GPU's processes) and the GPU ledger read nothing else; network and storage
read full snapshots. Smaller still, the digest (``clustertop.wire.digest``) is what the overview, the
nodes table and every read's totals and alerts take; where a node has no digest, its brief is
folded into one, so a brief keeps everything the digest reads.

A brief is a ``NodeSnapshot`` (the same type, so every fold over snapshots works on it unchanged).
What it leaves out is *absent*, not unknown: a brief-read ``NodeView`` says so (``brief=True``) and
only the screens above draw from one. What a brief keeps, and who needs it:

- top level: identity, seq and interval, role and labels (search), the agent's own cost (nodes
  table), tasks and templates (work screen, launcher); of the collectors only those failing (alerts).
- system: CPU util and its split, count, load, uptime, memory; per-disk read/write rates; per-NIC
  rx/tx of the NICs the node's totals count (physical, bond, unknown kind); every filesystem's
  size and use (the "95 % full" alert). Not kept: per-CPU use, top processes, static strings.
- gpus: every column of the GPU table (index, name, util, VRAM, temperature and slowdown threshold,
  power and limit, fan, P-state, ECC, throttle reasons), lost/error, CUDA cores, and the processes'
  pid, user, name and owner (GPU ledger, the table's user filter; ``None`` stays ``None``:
  "unknown"). Not kept: UUID, bus id, clocks, PCIe, energy, driver; the processes' VRAM and
  command lines, which the GPU table's process pane reads from the selected node in full.
- bonds and network mounts whole: small, and their state words feed tiles, wall and alerts.
- containers: only the container templates (the launcher); the containers themselves are read from the
  node in full (its screen, ``clustertop container``).
- sensors: the CPU temperature figures, throttle state, and of the readings only the one nearest its slowdown
  point (the CPU-hot alert); GPUs also keep their XID count, last XID and memory-repair flags (alerts).
"""

from __future__ import annotations

from clustertop.wire import schema
from clustertop.wire.digest import TOTAL_NIC_KINDS, nearest_hot


def brief(snap: schema.NodeSnapshot) -> schema.NodeSnapshot:
    """The brief of ``snap`` (a new struct; ``snap`` is not changed)."""
    return schema.NodeSnapshot(
        v=snap.v, host=snap.host, ts=snap.ts, seq=snap.seq, interval_s=snap.interval_s, role=snap.role,
        labels=snap.labels, collectors={k: st for k, st in snap.collectors.items() if not st.ok},
        agent=snap.agent, system=_system(snap.system), gpus=_gpus(snap.gpus), bonds=snap.bonds,
        netmounts=snap.netmounts, tasks=snap.tasks, templates=snap.templates, sensors=_sensors(snap.sensors),
        # the launcher's container templates only: the container list is read in full (node screen, CLI)
        containers=None if snap.containers is None or not snap.containers.templates else schema.Containers(
            templates=snap.containers.templates))


def _sensors(s: schema.Sensors | None) -> schema.Sensors | None:
    """The CPU figures and alerts: the hottest reading and the one nearest its slowdown point, no list."""
    if s is None:
        return None
    near = nearest_hot(s)
    return schema.Sensors(cpu_temp_c=s.cpu_temp_c, cpu_high_c=s.cpu_high_c, cpu_crit_c=s.cpu_crit_c,
                          temps=[near] if near is not None else None, throttle_new=s.throttle_new,
                          cooling=s.cooling, throttled=s.throttled)


def _system(s: schema.System | None) -> schema.System | None:
    if s is None:
        return None
    c = s.cpu
    cpu = None if c is None else schema.CpuTimes(util_pct=c.util_pct, user_pct=c.user_pct, system_pct=c.system_pct,
                                                  iowait_pct=c.iowait_pct, steal_pct=c.steal_pct)
    disks = None if s.disks is None else [
        schema.DiskIO(name=d.name, read_bytes_s=d.read_bytes_s, write_bytes_s=d.write_bytes_s) for d in s.disks]
    nics = None if s.nics is None else [
        schema.Nic(name=n.name, kind=n.kind, rx_bytes_s=n.rx_bytes_s, tx_bytes_s=n.tx_bytes_s)
        for n in s.nics if n.kind in TOTAL_NIC_KINDS]
    fss = None if s.filesystems is None else [
        schema.Filesystem(mountpoint=f.mountpoint, total_bytes=f.total_bytes, used_bytes=f.used_bytes)
        for f in s.filesystems]
    return schema.System(cpu_count=s.cpu_count, load1=s.load1, load5=s.load5, load15=s.load15,
                         uptime_s=s.uptime_s, cpu=cpu, mem=s.mem, disks=disks, nics=nics, filesystems=fss)


def _gpus(gpus: list[schema.Gpu] | None) -> list[schema.Gpu] | None:
    if gpus is None:
        return None
    return [schema.Gpu(
        index=g.index, name=g.name, lost=g.lost, error=g.error, util_pct=g.util_pct,
        mem_total_bytes=g.mem_total_bytes, mem_used_bytes=g.mem_used_bytes, temp_c=g.temp_c,
        temp_slowdown_c=g.temp_slowdown_c, power_mw=g.power_mw, power_limit_mw=g.power_limit_mw,
        fan_pct=g.fan_pct, pstate=g.pstate, cuda_cores=g.cuda_cores, ecc_corrected=g.ecc_corrected,
        ecc_uncorrected=g.ecc_uncorrected, throttle_reasons=g.throttle_reasons,
        xid_errors=g.xid_errors, xid_last=g.xid_last, xid_last_ts=g.xid_last_ts, retired_pending=g.retired_pending,
        remap_pending=g.remap_pending, remap_failed=g.remap_failed,
        procs=None if g.procs is None else [schema.GpuProc(pid=p.pid, user=p.user, name=p.name, owner=p.owner)
                                            for p in g.procs],
    ) for g in gpus]
