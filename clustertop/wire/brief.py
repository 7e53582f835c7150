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

from typing import Any

import msgspec

from clustertop import wire
from clustertop.wire import schema
from clustertop.wire.digest import TOTAL_NIC_KINDS, nearest_hot


def brief(snap: schema.NodeSnapshot) -> schema.NodeSnapshot:
    """The brief of ``snap`` (a new struct; ``snap`` is not changed)."""
    return schema.NodeSnapshot(
        v=snap.v, host=snap.host, ts=snap.ts, seq=snap.seq, interval_s=snap.interval_s, role=snap.role,
        labels=snap.labels, collectors={k: st for k, st in (snap.collectors or {}).items() if not st.ok},
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


# ---------------------------------------------------------------------------------------------
# The overlay: a full snapshot from an earlier tick brought up to date by this tick's brief.
# It lives beside brief() so the two can't drift: every field brief() keeps is taken from the brief here
# (tests/wire/test_brief_overlay.py checks this field by field, generated from the structs). The public
# ``fresh_*`` functions are the overlay of one section: ``read.layers`` makes a screen's sections with them
# without building the whole overlay.
# ---------------------------------------------------------------------------------------------


def fresh(full: schema.NodeSnapshot, br: schema.NodeSnapshot) -> schema.NodeSnapshot:
    """``full`` (older) with every field ``br`` (its node's newer brief) carries taken from ``br``, a ``None``
    there included (unknown now: the old value is never kept in its place); what only a full snapshot
    carries (per-CPU use, top processes, GPU UUID/bus id/clocks/PCIe/energy/driver, GPU processes' VRAM and
    command lines, the container list, the sensor list, static strings) kept from ``full``. Neither is
    changed. Things gone since ``full`` (a GPU, a disk, a counted NIC, a filesystem) are dropped; things new
    in ``br`` are taken as ``br`` has them."""
    return msgspec.structs.replace(
        full, v=br.v, host=br.host, ts=br.ts, seq=br.seq, interval_s=br.interval_s, role=br.role, labels=br.labels,
        collectors=_fresh_collectors(full.collectors, br.collectors), agent=br.agent,
        system=_fresh_system(full.system, br.system), gpus=fresh_gpus(full.gpus, br.gpus), bonds=br.bonds,
        netmounts=br.netmounts, tasks=br.tasks, templates=br.templates,
        containers=fresh_containers(full.containers, br.containers),
        sensors=_fresh_sensors(full.sensors, br.sensors))


def _fresh_collectors(full: dict[str, schema.CollectorStatus],
                      br: dict[str, schema.CollectorStatus]) -> dict[str, schema.CollectorStatus]:
    # A brief lists only the failing collectors: one failing in ``full`` but not listed now has recovered
    # (how long its run took is not known: None, not the old figure).
    out = {k: st if st.ok or k in br else schema.CollectorStatus(ok=True, interval_s=st.interval_s)
           for k, st in full.items()}
    out.update(br)
    return out


def _fresh_system(f: schema.System | None, b: schema.System | None) -> schema.System | None:
    if b is None or f is None:
        return b  # None now: unknown; no full system section: all there is, is the brief's
    cpu = b.cpu if b.cpu is None or f.cpu is None else msgspec.structs.replace(
        f.cpu, util_pct=b.cpu.util_pct, user_pct=b.cpu.user_pct, system_pct=b.cpu.system_pct,
        iowait_pct=b.cpu.iowait_pct, steal_pct=b.cpu.steal_pct)
    return msgspec.structs.replace(
        f, cpu_count=b.cpu_count, load1=b.load1, load5=b.load5, load15=b.load15, uptime_s=b.uptime_s, cpu=cpu,
        mem=b.mem, disks=fresh_disks(f.disks, b.disks), nics=fresh_nics(f.nics, b.nics),
        filesystems=fresh_filesystems(f.filesystems, b.filesystems))


def _by_name(f: list[Any] | None, b: list[Any] | None, key: str, fields: tuple[str, ...]) -> list[Any] | None:
    """The brief's list, each entry the full snapshot's one of the same ``key`` with ``fields`` from the
    brief (one gone since is dropped, one new is the brief's)."""
    if b is None or f is None:
        return b
    old = {getattr(x, key): x for x in f}
    return [x if (o := old.get(getattr(x, key))) is None else
            msgspec.structs.replace(o, **{k: getattr(x, k) for k in fields}) for x in b]


def fresh_disks(f: list[schema.DiskIO] | None, b: list[schema.DiskIO] | None) -> list[schema.DiskIO] | None:
    return _by_name(f, b, "name", ("read_bytes_s", "write_bytes_s"))


def fresh_nics(f: list[schema.Nic] | None, b: list[schema.Nic] | None) -> list[schema.Nic] | None:
    if b is None or f is None:
        return b
    # The brief has only the NICs the totals count: the others (virtual, loopback, bond slaves) are the full
    # snapshot's; a counted one missing from the brief is gone. The full snapshot's order is kept.
    new = {n.name: n for n in b}
    out: list[schema.Nic] = []
    for o in f:
        n = new.pop(o.name, None)
        if n is not None:
            out.append(msgspec.structs.replace(o, kind=n.kind, rx_bytes_s=n.rx_bytes_s, tx_bytes_s=n.tx_bytes_s))
        elif o.kind not in TOTAL_NIC_KINDS:
            out.append(o)
    out += new.values()
    return out


def fresh_filesystems(f: list[schema.Filesystem] | None,
                       b: list[schema.Filesystem] | None) -> list[schema.Filesystem] | None:
    return _by_name(f, b, "mountpoint", ("total_bytes", "used_bytes"))


def fresh_gpus(f: list[schema.Gpu] | None, b: list[schema.Gpu] | None) -> list[schema.Gpu] | None:
    if b is None or f is None:
        return b
    # Matched by index (and model: a card swapped under the same index shares nothing with the old one).
    old = {g.index: g for g in f}
    out = []
    for g in b:
        o = old.get(g.index)
        if o is None or o.name != g.name:
            out.append(g)
            continue
        out.append(msgspec.structs.replace(
            o, name=g.name, lost=g.lost, error=g.error, util_pct=g.util_pct, mem_total_bytes=g.mem_total_bytes,
            mem_used_bytes=g.mem_used_bytes, temp_c=g.temp_c, temp_slowdown_c=g.temp_slowdown_c,
            power_mw=g.power_mw, power_limit_mw=g.power_limit_mw, fan_pct=g.fan_pct, pstate=g.pstate,
            cuda_cores=g.cuda_cores, ecc_corrected=g.ecc_corrected, ecc_uncorrected=g.ecc_uncorrected,
            throttle_reasons=g.throttle_reasons, xid_errors=g.xid_errors, xid_last=g.xid_last,
            xid_last_ts=g.xid_last_ts, retired_pending=g.retired_pending, remap_pending=g.remap_pending,
            remap_failed=g.remap_failed, procs=_fresh_gpu_procs(o.procs, g.procs)))
    return out


def _fresh_gpu_procs(f: list[schema.GpuProc] | None, b: list[schema.GpuProc] | None) -> list[schema.GpuProc] | None:
    if b is None:
        return None
    # A process's VRAM, command line and identity only where the same pid (and user) is in both: a pid reused
    # since the full snapshot is another process, and gets None, not the old one's figures.
    old = {p.pid: p for p in f or ()}
    out = []
    for p in b:
        o = old.get(p.pid)
        out.append(p if o is None or o.user != p.user else msgspec.structs.replace(
            o, pid=p.pid, user=p.user, name=p.name, owner=p.owner))
    return out


def fresh_containers(f: schema.Containers | None, b: schema.Containers | None) -> schema.Containers | None:
    # The brief keeps the container templates only (None: none now); the container list is the full's.
    if f is None:
        return b
    return msgspec.structs.replace(f, templates=None if b is None else b.templates)


def _fresh_sensors(f: schema.Sensors | None, b: schema.Sensors | None) -> schema.Sensors | None:
    if b is None or f is None:
        return b
    temps = f.temps
    if b.temps:
        # The brief's one reading (the nearest its slowdown point) replaces the same sensor's in the list (or
        # leads it, a sensor new since); the others are the full snapshot's.
        near = b.temps[0]
        rest = [t for t in temps or () if _sensor_id(t) != _sensor_id(near)]
        if temps and len(rest) < len(temps):
            at = next(i for i, t in enumerate(temps) if _sensor_id(t) == _sensor_id(near))
            temps = rest[:at] + [near] + rest[at:]
        else:
            temps = [near] + rest
    return msgspec.structs.replace(f, cpu_temp_c=b.cpu_temp_c, cpu_high_c=b.cpu_high_c, cpu_crit_c=b.cpu_crit_c,
                                   temps=temps, throttle_new=b.throttle_new, cooling=b.cooling, throttled=b.throttled)


def _sensor_id(t: schema.TempSensor) -> tuple[str, str | None, str | None, str | None]:
    return t.source, t.chip, t.label, t.device


# ---------------------------------------------------------------------------------------------
# A brief read without building its GPU section. At 1,000 8-GPU nodes the GPU cards are most of the time a brief
# takes to decode (~10 of ~16 ms), and the storage and network screens never draw them. The reader checks the
# section when it reads it (``decode_head``: a malformed one still makes its node bad in that read, as a whole
# decode did) and builds it only for whoever asks (``gpus_of``, ``whole``: the GPU ledger, the people screen on
# the nodes where its user's GPU process may be, an overlay built for a node's screen or the CLI).
# ---------------------------------------------------------------------------------------------


class BriefHead(schema.NodeSnapshot, kw_only=True, gc=False):
    """A brief as decoded by ``decode_head``: every section built but ``gpus``, which holds that section's
    msgpack bytes, checked, not built (``gpus_of``). Never read ``gpus`` of it as a list: take ``whole``."""

    gpus: msgspec.Raw = msgspec.Raw()  # type: ignore[assignment]  # the section as sent (b"\xc0": None)


#: The GPU section's type, as ``NodeSnapshot.gpus`` has it.
_GPU_LIST = list[schema.Gpu] | None
#: What ``whole`` copies from a head: every field of the snapshot but the GPU section it builds.
_FIELDS = tuple(f for f in schema.NodeSnapshot.__struct_fields__ if f != "gpus")


def decode_head(data: bytes | bytearray | memoryview) -> BriefHead:
    """A brief's plain bytes (``wire.plain``) decoded with its GPU section checked and left unbuilt. Raises
    ``WireError`` where ``wire.decode_plain(data, NodeSnapshot)`` would: the check of the GPU section is a whole
    decode of it, thrown away (cheaper than building the cards in place and keeping them: measured in
    docs/architecture.md), so a card with one field of the wrong type makes the brief bad as before, and the
    message names the same place (``$.gpus[3].util_pct``)."""
    head = wire.decode_plain(data, BriefHead)
    if len(head.gpus):
        _gpu_section(head.gpus)
    return head


def _gpu_section(raw: msgspec.Raw) -> list[schema.Gpu] | None:
    try:
        gpus: list[schema.Gpu] | None = wire.decode_plain(raw, _GPU_LIST)  # type: ignore[arg-type]
    except wire.WireError as e:
        # Its path as a decode of the whole brief gives it ("at `$.gpus[0].util_pct`", not "at `$[0]...`"; msgspec
        # names no path for the section itself, where the whole decode says "at `$.gpus`").
        msg = str(e)
        if "`$" in msg:
            msg = msg.replace("`$", "`$.gpus", 1)
        elif msg.startswith("invalid payload"):
            msg += " - at `$.gpus`"
        raise wire.WireError(msg) from None
    return gpus


def gpus_of(head: BriefHead) -> list[schema.Gpu] | None:
    """The GPU section of ``head`` built (a new list each call; ``decode_head`` checked it: cannot fail then)."""
    raw = head.gpus
    return _gpu_section(raw) if len(raw) else None


class _ProcUser(msgspec.Struct, gc=False):
    user: str | None = None


class _CardUsers(msgspec.Struct, gc=False):
    procs: list[_ProcUser] | None = None


def gpu_users(head: BriefHead) -> set[str | None]:
    """The user names of the GPU processes in ``head``'s GPU section, without building its cards (the section was
    checked: msgspec reads only the processes' ``user`` of it): whether a user's GPU process may be on a node."""
    raw = head.gpus
    if not len(raw):
        return set()
    cards: list[_CardUsers] | None = wire.decode_plain(raw, list[_CardUsers] | None)  # type: ignore[arg-type]
    return {p.user for c in cards or () for p in c.procs or ()}


def whole(head: schema.NodeSnapshot) -> schema.NodeSnapshot:
    """``head`` as a ``NodeSnapshot`` with every section built (itself where it is one already): what
    ``wire.decode_plain(data, NodeSnapshot)`` gives of the same bytes."""
    if not isinstance(head, BriefHead):
        return head
    return schema.NodeSnapshot(gpus=gpus_of(head), **{f: getattr(head, f) for f in _FIELDS})
