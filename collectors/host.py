"""Provides the host collector: CPU, memory, disks, filesystems, NICs and top processes of this node.

Everything is read from files under ``ctx.roots`` (never a hard-coded /proc, never os.getloadavg or
platform.uname, which would describe the machine running the agent rather than the tree being read),
parsed by collectors/procfs.py, and turned into rates here by keeping the previous sample.

Rates (CPU %, disk and NIC throughput, process CPU %) need two samples: the first collect() returns
None for them, never 0. Time between samples is measured on the kernel's own clock (/proc/uptime),
so a fixture tree with an edited uptime gives exact, hand-checkable rates.

Processes are walked by reading /proc/<pid>/stat directly rather than through psutil: psutil's
PROCFS_PATH is one process-wide global (the gpu collector may use psutil concurrently from another
thread), and one small read per pid is the cheapest walk there is on a small ARM board.
"""

from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass

from clustertop.collectors import procfs
from clustertop.collectors.base import Context, Roots, Section
from clustertop.collectors.kept import KeptFiles, pseudo_roots
from clustertop.collectors.mounttable import MountTable
from clustertop.collectors.owner import apply_cmdline, parse_cgroup
from clustertop.config import NonNegative, convert
from clustertop.wire.schema import CpuTimes, DiskIO, Filesystem, Memory, Nic, Owner, Proc, System

TOP_N = 10  # processes by CPU and by RSS each; the union is at most 2 * TOP_N
MAX_VIRTUAL_NICS = 16  # a Kubernetes node has one veth per pod: keep the busiest, keep payloads small
MAX_FILESYSTEMS = 64
CMDLINE_MAX = 200
STATIC_REFRESH_S = 60.0  # hostname, OS, CPU model: re-read now and then, not every tick
#: How long what a process shows of itself (name, command line, owner) is reused for the same process (pid,
#: start ticks, comm) without reading its cmdline and cgroup again: exec changes comm (the key), but a process
#: that rewrites its title in place (setproctitle) or moves cgroups is seen at most this late.
IDENTITY_REFRESH_S = 60.0
#: At most this many /proc/<pid> files kept open between walks (collectors/kept.py). Each costs a descriptor and
#: ~4.4 KiB of kernel memory (the seq_file keeps its page-sized buffer between reads: 4.1-4.7 KiB of Slab per
#: read descriptor, measured over 8,000), so ~1.1 MiB at most; a node with 5,000 processes keeps this many and
#: opens the rest per walk, as before.
MAX_KEPT_PIDS = 256

# Never statvfs these: a hung server or FUSE daemon blocks statvfs in the kernel, uninterruptibly,
# and would take the collector's thread with it. Network mounts are the `nfs` collector's job (it
# probes them with a timeout in a child it can abandon).
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "cephfs", "glusterfs", "lustre", "gpfs", "beegfs",
    "afs", "ncpfs", "9p", "davfs", "ocfs2", "gfs2", "orangefs", "pvfs2", "virtiofs",
})
# Kernel and runtime pseudo filesystems: no capacity to report. autofs is here because statvfs on an
# autofs mountpoint triggers the mount (possibly a network one).
PSEUDO_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "pstore", "debugfs",
    "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs", "bpf", "autofs", "binfmt_misc",
    "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "ramfs", "rootfs", "nfsd", "sockfs", "pipefs",
    "binder", "overlay", "aufs", "shiftfs", "tmpfs",
})
# Read-only images are 100% full by construction (snap packages, live media): they would raise a
# "disk full" alert on every Ubuntu node.
IMAGE_FS = frozenset({"squashfs", "iso9660", "udf", "erofs", "cramfs", "romfs"})

_CONTROL = {c: " " for c in (*range(32), 127)}
#: How often the seldom-changing facts (NIC kind, speed and MTU; which disks are stacked) are re-read.
STATIC_EVERY_S = 10.0
KIND_ORDER = {"physical": 0, "bond": 1, "bond-slave": 2, "virtual": 3, "loopback": 4}


def _read(path: str) -> str | None:
    # Bytes, decoded once: a text-mode open builds a buffered reader and an incremental decoder for
    # every one of the ~30 small /proc and /sys files a tick reads (a tenth of the tick's CPU).
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:  # absent on this kernel, permission, or a pid that just exited
        return None


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _listdir(path: str) -> list[str] | None:
    try:
        return os.listdir(path)
    except OSError:
        return None


def _r(x: float | None, nd: int = 2) -> float | None:
    # Rounded to keep snapshots small: 12.3456789 % carries no more information than 12.35 %.
    return None if x is None else round(x, nd)


# ---------------------------------------------------------------------------------------------
# Choices that need no I/O (tested directly)
# ---------------------------------------------------------------------------------------------


def keep_filesystem(m: procfs.Mount) -> bool:
    fstype = m.fstype
    if fstype in NETWORK_FS or fstype in IMAGE_FS:
        return False
    if fstype.startswith("fuse") and fstype != "fuseblk":
        # fuse.sshfs, fuse.s3fs, fuse.rclone, fuse.ceph-fuse ...: network or user daemons that can
        # hang; fuseblk (ntfs-3g, exfat-fuse) is a local block device.
        return False
    if fstype == "tmpfs":
        # /dev/shm is the one tmpfs that matters here: PyTorch DataLoader workers pass batches
        # through it, and a full /dev/shm kills training jobs ("Bus error").
        return m.mountpoint == "/dev/shm"
    if fstype == "overlay":
        # Container root filesystems clutter a node's mount table (one per container); when the
        # agent itself runs in a container its "/" is an overlay, and that one is worth showing.
        return m.mountpoint == "/"
    return fstype not in PSEUDO_FS


def select_filesystems(mounts: list[procfs.Mount]) -> list[procfs.Mount]:
    """Local filesystems worth a usage figure, one entry per filesystem, sorted by mountpoint."""
    by_mountpoint: dict[str, procfs.Mount] = {}
    for m in mounts:
        if keep_filesystem(m):
            # a later mount on the same path hides the earlier one
            by_mountpoint[m.mountpoint] = m
    by_device: dict[tuple[str, str], procfs.Mount] = {}
    out: list[procfs.Mount] = []
    for m in by_mountpoint.values():
        if m.device.startswith("/dev/"):
            # Bind mounts and btrfs subvolumes repeat the same block device (kubelet binds the same
            # disk into every pod): one filesystem, one row, at its shortest mountpoint.
            key = (m.device, m.fstype)
            seen = by_device.get(key)
            if seen is None or len(m.mountpoint) < len(seen.mountpoint):
                by_device[key] = m
        else:
            out.append(m)  # zfs datasets, /dev/shm: distinct usage per mount
    out.extend(by_device.values())
    out.sort(key=lambda m: m.mountpoint)
    return out[:MAX_FILESYSTEMS]


def nic_kind(name: str, *, iftype: str | None, bonds: set[str], master: str | None,
             device_path: str | None) -> str:
    """Loopback, bond, bond slave, virtual (veth, bridge, docker0, cni0 ...) or physical."""
    if name == "lo" or (iftype or "").strip() == "772":  # ARPHRD_LOOPBACK
        return "loopback"
    if name in bonds:
        return "bond"
    if master is not None and master in bonds:
        return "bond-slave"
    if device_path is not None and "/devices/virtual/" in device_path:
        return "virtual"
    return "physical"


VIRTUAL_BLOCK_PREFIXES = ("loop", "ram", "zram", "sr", "fd")


def keep_disk(name: str, cur: procfs.DiskCounters, prev: procfs.DiskCounters | None,
              whole: set[str] | None, stacked: set[str]) -> bool:
    """Whole, real block devices; virtual ones only while they do I/O.

    whole: names in /sys/block (None when sysfs is unreadable: then guess partitions from the name).
    stacked: dm-*/md* devices built on other disks; skipped so that the node's disk totals do not
    count the same bytes twice (the member disks carry them).
    """
    if whole is not None:
        if name.replace("/", "!") not in whole:  # sysfs spells cciss/c0d0 as cciss!c0d0
            return False
    elif procfs.looks_like_partition(name):
        return False
    if name in stacked:
        return False
    if name.startswith("zram"):
        # compressed swap on ARM boards: worth seeing once it is in use
        return cur.reads + cur.writes > 0
    if name.startswith(VIRTUAL_BLOCK_PREFIXES):
        # loop devices (snaps) and ramdisks are noise unless something is hammering them right now
        return cur.in_flight > 0 or (prev is not None and (cur.reads + cur.writes) > (prev.reads + prev.writes))
    return True


def disk_rates(name: str, cur: procfs.DiskCounters, prev: procfs.DiskCounters | None,
               elapsed: float | None) -> DiskIO:
    d = DiskIO(name=name, in_flight=cur.in_flight)
    if prev is None or not elapsed or elapsed <= 0:
        return d

    def delta(a: int, b: int) -> int | None:
        # counters are unsigned long: they wrap on 32-bit kernels and restart when a device is
        # re-added; a negative delta cannot be told apart from either, so the rate is unknown.
        return b - a if b >= a else None

    rs, ws = delta(prev.read_sectors, cur.read_sectors), delta(prev.write_sectors, cur.write_sectors)
    ri, wi = delta(prev.reads, cur.reads), delta(prev.writes, cur.writes)
    rt, wt = delta(prev.read_ticks, cur.read_ticks), delta(prev.write_ticks, cur.write_ticks)
    io, wq = delta(prev.io_ticks, cur.io_ticks), delta(prev.weighted_ticks, cur.weighted_ticks)
    ms = elapsed * 1000.0
    d.read_bytes_s = _r(rs * procfs.SECTOR_BYTES / elapsed, 1) if rs is not None else None
    d.write_bytes_s = _r(ws * procfs.SECTOR_BYTES / elapsed, 1) if ws is not None else None
    d.read_iops = _r(ri / elapsed) if ri is not None else None
    d.write_iops = _r(wi / elapsed) if wi is not None else None
    # io_ticks can overshoot the wall clock by a tick or two: a busy disk is 100 %, not 101 %.
    d.util_pct = _r(min(100.0, 100.0 * io / ms)) if io is not None else None
    d.queue_depth = _r(wq / ms) if wq is not None else None
    if ri is not None and wi is not None and rt is not None and wt is not None and ri + wi > 0:
        d.await_ms = _r((rt + wt) / (ri + wi))  # no request completed: no average, None
    return d


def nic_rates(nic: Nic, cur: procfs.NetCounters, prev: procfs.NetCounters | None,
              elapsed: float | None) -> None:
    nic.rx_errors, nic.tx_errors = cur.rx_errors, cur.tx_errors
    nic.rx_dropped, nic.tx_dropped = cur.rx_dropped, cur.tx_dropped
    if prev is None or not elapsed or elapsed <= 0:
        return

    def rate(a: int, b: int) -> float | None:
        return _r((b - a) / elapsed, 1) if b >= a else None  # wrap (32-bit ARM) or reset: unknown

    nic.rx_bytes_s, nic.tx_bytes_s = rate(prev.rx_bytes, cur.rx_bytes), rate(prev.tx_bytes, cur.tx_bytes)
    nic.rx_packets_s = rate(prev.rx_packets, cur.rx_packets)
    nic.tx_packets_s = rate(prev.tx_packets, cur.tx_packets)


# ---------------------------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------------------------


@dataclass
class _Sample:
    uptime: float | None
    mono: float
    stat: procfs.Stat | None
    disks: dict[str, procfs.DiskCounters] | None
    nets: dict[str, procfs.NetCounters] | None


@dataclass
class _Static:
    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    arch: str | None = None
    cpu: procfs.CpuInfo | None = None
    cpu_physical: int | None = None
    read_at: float = 0.0


@dataclass
class _Identity:
    """What a shown process says of itself that only exec (or a rewritten title) changes."""

    name: str
    cmdline: str | None
    owner: Owner | None
    read_at: float  # the walk's clock (kernel uptime, else monotonic)


def _kept_pid_limit() -> int:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 0
    return MAX_KEPT_PIDS if soft == resource.RLIM_INFINITY else max(0, min(MAX_KEPT_PIDS, soft // 4))


#: Default seconds between process walks ([collectors.host] procs_interval).
DEFAULT_PROCS_INTERVAL_S = 5.0


class HostConfig(Section):
    """``[collectors.host]``."""

    # Where the machine's root is mounted when /proc is another machine's (a container reading the
    # host's /proc): see HostCollector.rootfs.
    rootfs: str | None = None
    # The process walk is ~70 % of this collector's cost (one open+read per pid); top processes
    # refreshed every few seconds read as well as every second, and their CPU % becomes an
    # average over that window instead of a one-second blip. 0 = every collect.
    procs_interval: NonNegative = DEFAULT_PROCS_INTERVAL_S


class HostCollector:
    name = "host"
    field = "system"
    scope = "node"
    default_interval_s = 1.0
    config_type = HostConfig

    def __init__(self, ctx: Context) -> None:
        c = convert(ctx.config, HostConfig, ctx.config_file, "collectors.host")
        self.procs_interval_s = c.procs_interval
        self._procs_at: float | None = None  # kernel uptime (or monotonic) of the last walk
        self._procs_last: tuple[list[Proc] | None, int | None] = (None, None)
        # What changes seldom, re-read every STATIC_EVERY_S instead of every tick: per NIC its kind,
        # speed and MTU (link up/down stays per tick), the disks stacked on others; and the parsed
        # mount table, kept while /proc/self/mounts reads the same.
        self._nic_static: dict[str, tuple[bool | None, tuple[str | None, int | None, int | None]]] = {}
        self._disk_topology: tuple[set[str] | None, set[str], set[str]] | None = None
        self._static_at: float | None = None
        self._mounts: tuple[str, list[procfs.Mount]] | None = None
        self._policies: list[str] | None = None  # cpufreq policy dirs, listed with the other seldom-changing facts
        self._nic_names: set[str] = set()
        self.roots: Roots = ctx.roots
        # The files read every tick stay open where the roots are the real procfs and sysfs (collectors/kept.py):
        # a pread at offset 0 regenerates them for a fifth of an open's cost. A fixture tree opens per read.
        live_proc, live_sys = pseudo_roots(ctx.roots.proc, ctx.roots.sys)
        self._files = KeptFiles(tuple(r for r, ok in ((ctx.roots.proc, live_proc), (ctx.roots.sys, live_sys)) if ok))
        # The mount table is read again only when the kernel says it changed (collectors/mounttable.py).
        self._mount_table = MountTable(ctx.roots.procfs("self", "mounts"), live_proc)
        self.live = os.path.realpath(ctx.roots.proc) == "/proc"
        # A fixture tree is laid out as <tree>/proc, <tree>/sys, <tree>/etc. When only --proc-root is
        # given, /etc/os-release and /etc/passwd are taken from the same tree: reading the running
        # machine's /etc would mix two machines in one snapshot.
        if ctx.roots.etc != "/etc" or self.live:
            self.etc = ctx.roots.etc
        else:
            self.etc = os.path.join(os.path.dirname(os.path.abspath(ctx.roots.proc)), "etc")
        # Where mountpoints are reachable for statvfs. Live: "/". With another proc root (a fixture,
        # or an agent in a container reading the host's /proc) mountpoints are paths on another
        # machine: usage is reported only if `rootfs` says where that machine's root is mounted
        # (e.g. "/host"); otherwise filesystems are listed with unknown usage.
        self.rootfs: str | None = c.rootfs if c.rootfs is not None else ("/" if self.live else None)
        self._prev: _Sample | None = None
        self._pid_ticks: dict[int, tuple[int, int]] = {}  # pid -> (starttime, utime+stime)
        # (pid, starttime, comm) -> what a shown process says of itself (name, command line, owner), with the
        # clock it was read at: reused for IDENTITY_REFRESH_S (the incremental walk: a known process costs its
        # stat and status reads only). comm is in the key because exec keeps pid and start time (a wrapper
        # script exec'ing celery) but changes comm.
        self._idents: dict[tuple[int, int, str], _Identity] = {}
        self._users: dict[int, str] = {}
        self._passwd: dict[int, str] | None = None
        self._static = _Static()
        # The walk's /proc/<pid>/stat (every pid) and status (the shown ones), kept open between walks on the
        # live procfs: a pread of a kept one skips the path walk, open and close. Bounded by MAX_KEPT_PIDS and
        # by a quarter of the descriptor limit (the command executor and Redis clients need theirs); what a
        # walk did not read (an exited pid) is closed after it. A kept descriptor of a process that exited
        # answers ESRCH even once its pid is reused: KeptFiles then opens the path afresh (the new process).
        self._pid_files = KeptFiles((ctx.roots.proc,) if live_proc else (), limit=_kept_pid_limit())
        self._walk_clock = 0.0

    def close(self) -> None:
        self._pid_ticks.clear()
        self._idents.clear()
        self._files.close()
        self._pid_files.close()
        self._mount_table.close()

    # -- static facts ------------------------------------------------------------------------

    def _read_static(self) -> _Static:
        now = time.monotonic()
        if self._static.read_at and now - self._static.read_at < STATIC_REFRESH_S:
            return self._static
        p = self.roots.procfs
        s = _Static(read_at=now)
        s.hostname = (_read(p("sys", "kernel", "hostname")) or "").strip() or None
        s.kernel = (_read(p("sys", "kernel", "osrelease")) or "").strip() or None
        # /proc/sys/kernel/arch exists since Linux 6.1; before that only uname() knows, and uname()
        # describes the running machine, so it is used only when reading the live /proc.
        s.arch = (_read(p("sys", "kernel", "arch")) or "").strip() or (os.uname().machine if self.live else None)
        rel = _read(os.path.join(self.etc, "os-release"))
        if rel is None and self.etc == "/etc":
            rel = _read("/usr/lib/os-release")  # os-release(5): the fallback location
        if rel is not None:
            info = procfs.parse_os_release(rel)
            s.os = info.get("PRETTY_NAME") or info.get("NAME")
        if s.os is None:
            s.os = (_read(p("sys", "kernel", "ostype")) or "").strip() or None
        text = _read(p("cpuinfo"))
        cpu = procfs.parse_cpuinfo(text) if text is not None else procfs.CpuInfo()
        # ARM boards: the board name comes from the device tree (/proc/device-tree -> the firmware
        # tree in sysfs); it says more than the core names alone ("Raspberry Pi 4 Model B Rev 1.4").
        board = cpu.board
        if board is None:
            dt = (_read_bytes(p("device-tree", "model"))
                  or _read_bytes(self.roots.sysfs("firmware", "devicetree", "base", "model")))
            if dt:
                board = dt.decode("utf-8", "replace").strip("\0\n ") or None
        if board and cpu.model and board not in cpu.model:
            cpu.model = f"{cpu.model} ({board})"
        elif board and cpu.model is None:
            cpu.model = board
        s.cpu = cpu
        s.cpu_physical = cpu.physical if cpu.physical is not None else self._physical_from_sysfs()
        self._static = s
        return s

    def _physical_from_sysfs(self) -> int | None:
        # ARM cpuinfo has no "core id": count distinct cores from the topology sysfs instead
        # (core_cpus_list since 5.x, thread_siblings_list before).
        base = self.roots.sysfs("devices", "system", "cpu")
        names = _listdir(base)
        if not names:
            return None
        cores: set[str] = set()
        for n in names:
            if not (n.startswith("cpu") and n[3:].isdigit()):
                continue
            for attr in ("core_cpus_list", "thread_siblings_list"):
                t = _read(os.path.join(base, n, "topology", attr))
                if t is not None:
                    cores.add(t.strip())
                    break
        return len(cores) or None

    def _cpu_mhz(self, static: _Static) -> float | None:
        # cpufreq policies hold the current frequency (ARM boards have no "cpu MHz" in cpuinfo;
        # on x86 this is also fresher than cpuinfo, which is only re-read every minute).
        base = self.roots.sysfs("devices", "system", "cpu", "cpufreq")
        vals: list[float] = []
        if self._policies is None:
            self._policies = sorted(n for n in _listdir(base) or () if n.startswith("policy"))
        for n in self._policies:
            t = self._files.read(os.path.join(base, n, "scaling_cur_freq"))
            if t is not None and t.strip().isdigit():
                vals.append(int(t) / 1000.0)  # kHz
        if vals:
            return _r(sum(vals) / len(vals), 1)
        return static.cpu.mhz if static.cpu else None

    # -- the tick ------------------------------------------------------------------------------

    def collect(self) -> System:
        p = self.roots.procfs
        static = self._read_static()
        mono = time.monotonic()
        up_text = self._files.read(p("uptime"))
        uptime = procfs.parse_uptime(up_text) if up_text else None
        stat_text = self._files.read(p("stat"))
        stat = procfs.parse_stat(stat_text) if stat_text else None
        disk_text = self._files.read(p("diskstats"))
        disks = procfs.parse_diskstats(disk_text) if disk_text is not None else None
        net_text = self._files.read(p("net", "dev"))
        nets = procfs.parse_net_dev(net_text) if net_text is not None else None
        cur = _Sample(uptime=uptime, mono=mono, stat=stat, disks=disks, nets=nets)
        prev, self._prev = self._prev, cur
        elapsed = None
        if prev is not None:
            if prev.uptime is not None and uptime is not None:
                elapsed = uptime - prev.uptime
            else:
                elapsed = mono - prev.mono
            if elapsed <= 0:
                elapsed = None

        sysinfo = System(hostname=static.hostname, os=static.os, kernel=static.kernel, arch=static.arch)
        if static.cpu is not None:
            sysinfo.cpu_model = static.cpu.model
            sysinfo.cpu_count = static.cpu.logical
        if sysinfo.cpu_count is None and stat is not None and stat.per_cpu:
            sysinfo.cpu_count = len(stat.per_cpu)
        sysinfo.cpu_physical = static.cpu_physical
        sysinfo.cpu_mhz = self._cpu_mhz(static)
        sysinfo.uptime_s = uptime
        if stat is not None:
            sysinfo.boot_ts = float(stat.btime) if stat.btime is not None else None
            sysinfo.cpu = self._cpu(prev.stat if prev else None, stat)
        la_text = self._files.read(p("loadavg"))
        la = procfs.parse_loadavg(la_text) if la_text else None
        if la:
            sysinfo.load1, sysinfo.load5, sysinfo.load15 = la
        mem_text = self._files.read(p("meminfo"))
        if mem_text is not None:
            sysinfo.mem = memory(procfs.parse_meminfo(mem_text, MEMINFO_FIELDS))
        if disks is not None:
            sysinfo.disks = self._disks(disks, prev.disks if prev else None, elapsed)
        clock = uptime if uptime is not None else mono
        if self._static_at is None or not 0 <= clock - self._static_at < STATIC_EVERY_S:
            self._nic_static, self._disk_topology, self._static_at = {}, None, clock
            self._policies = None
        mounts_text = self._mount_table.text()
        if mounts_text is not None:
            if self._mounts is None or self._mounts[0] is not mounts_text and self._mounts[0] != mounts_text:
                self._mounts = (mounts_text, procfs.parse_mounts(mounts_text))
            sysinfo.filesystems = self._filesystems(self._mounts[1])
        if nets is not None:
            sysinfo.nics = self._nics(nets, prev.nets if prev else None, elapsed)
        if self._procs_at is None or clock - self._procs_at >= self.procs_interval_s - 0.05:
            since = clock - self._procs_at if self._procs_at is not None else None
            self._walk_clock = clock
            self._procs_last = self._procs(since if since and since > 0 else None, sysinfo.boot_ts)
            self._procs_at = clock
        sysinfo.procs, sysinfo.procs_total = self._procs_last
        return sysinfo

    # -- sections ----------------------------------------------------------------------------

    @staticmethod
    def _cpu(prev: procfs.Stat | None, cur: procfs.Stat) -> CpuTimes:
        out = CpuTimes()
        if prev is None or prev.cpu is None or cur.cpu is None:
            return out  # first sample: no rates yet (None, not 0)
        total = procfs.cpu_pct(prev.cpu, cur.cpu)
        if total is not None:
            out.util_pct, out.user_pct = _r(total.util), _r(total.user)
            out.system_pct, out.iowait_pct, out.steal_pct = _r(total.system), _r(total.iowait), _r(total.steal)
        per: list[float] = []
        for n in sorted((cur.per_cpu or {}).keys()):
            before = (prev.per_cpu or {}).get(n)
            pct = procfs.cpu_pct(before, cur.per_cpu[n]) if before is not None and cur.per_cpu else None
            if pct is None:
                # a CPU that just came online (or had no tick): the list would lose its alignment
                per = []
                break
            per.append(_r(pct.util) or 0.0)
        out.per_cpu_pct = per or None
        return out

    def _disks(self, cur: dict[str, procfs.DiskCounters], prev: dict[str, procfs.DiskCounters] | None,
               elapsed: float | None) -> list[DiskIO]:
        if self._disk_topology is None or self._disk_topology[2] != cur.keys():  # a disk came or went
            block = self.roots.sysfs("block")
            names = _listdir(block)
            stacked: set[str] = set()
            for n in names or ():
                slaves = _listdir(os.path.join(block, n, "slaves"))
                if slaves and any(not s.startswith(".") for s in slaves):
                    stacked.add(n)
            self._disk_topology = (set(names) if names is not None else None, stacked, set(cur))
        whole, stacked, _ = self._disk_topology
        out = []
        for name in sorted(cur):
            before = prev.get(name) if prev else None
            if keep_disk(name, cur[name], before, whole, stacked):
                out.append(disk_rates(name, cur[name], before, elapsed))
        return out

    def _filesystems(self, mounts: list[procfs.Mount]) -> list[Filesystem]:
        out = []
        for m in select_filesystems(mounts):
            fs = Filesystem(mountpoint=m.mountpoint, device=m.device, fstype=m.fstype)
            if self.rootfs is not None:
                path = os.path.join(self.rootfs, m.mountpoint.lstrip("/"))
                try:
                    st = os.statvfs(path)
                except OSError:
                    st = None  # unmounted meanwhile, or no permission: usage unknown
                if st is not None:
                    fs.total_bytes = st.f_blocks * st.f_frsize
                    fs.used_bytes = (st.f_blocks - st.f_bfree) * st.f_frsize
                    fs.avail_bytes = st.f_bavail * st.f_frsize
                    if st.f_files > 0:  # btrfs and vfat report 0 inodes: not applicable, not "0 used"
                        fs.inodes_total = st.f_files
                        fs.inodes_used = st.f_files - st.f_ffree
            out.append(fs)
        return out

    def _nics(self, cur: dict[str, procfs.NetCounters], prev: dict[str, procfs.NetCounters] | None,
              elapsed: float | None) -> list[Nic]:
        s = self.roots.sysfs
        known = self._nic_static
        bonds: set[str] | None = None
        out: list[Nic] = []
        if cur.keys() != self._nic_names:  # a NIC went away: close what was kept open of it
            for gone in self._nic_names - cur.keys():
                self._files.forget_under(s("class", "net", gone) + os.sep)
            self._nic_names = set(cur)
        for name, counters in cur.items():
            base = s("class", "net", name)
            nic = Nic(name=name)
            state = self._files.read(os.path.join(base, "operstate"))
            nic.up = procfs.parse_operstate(state, None)
            if nic.up is None:  # "unknown" (loopback, tun, many virtual drivers): only then the carrier says
                # (read only then: a down link's carrier answers EINVAL, an open and a failed read every tick)
                nic.up = procfs.parse_operstate(state, self._files.read(os.path.join(base, "carrier")))
            cached = known.get(name)
            if cached is None or cached[0] != nic.up:  # new, or the link went up or down: speed changes
                if bonds is None:
                    bonds = set((_read(s("class", "net", "bonding_masters")) or "").split())
                cached = known[name] = (nic.up, self._nic_attrs(name, base, bonds))
            nic.kind, nic.speed_mbps, nic.mtu = cached[1]
            nic_rates(nic, counters, prev.get(name) if prev else None, elapsed)
            out.append(nic)
        virtual = [n for n in out if n.kind == "virtual"]
        if len(virtual) > MAX_VIRTUAL_NICS:
            # busiest since boot, not in the last second: the list stays stable from tick to tick
            def moved(n: Nic) -> int:
                c = cur[n.name]
                return c.rx_bytes + c.tx_bytes

            keep = {n.name for n in sorted(virtual, key=lambda n: (-moved(n), n.name))[:MAX_VIRTUAL_NICS]}
            out = [n for n in out if n.kind != "virtual" or n.name in keep]
        out.sort(key=lambda n: (KIND_ORDER.get(n.kind or "", 9), n.name))
        return out

    @staticmethod
    def _nic_attrs(name: str, base: str, bonds: set[str]) -> tuple[str | None, int | None, int | None]:
        """(kind, speed Mb/s, MTU) from sysfs."""
        try:
            device_path: str | None = os.readlink(base)
        except OSError:
            device_path = None
        try:
            master: str | None = os.path.basename(os.readlink(os.path.join(base, "master")))
        except OSError:
            master = None
        kind = nic_kind(name, iftype=_read(os.path.join(base, "type")), bonds=bonds, master=master,
                        device_path=device_path)
        speed = _read(os.path.join(base, "speed"))  # EINVAL on a down link or a virtual NIC
        mtu = (_read(os.path.join(base, "mtu")) or "").strip()
        return kind, procfs.parse_speed(speed) if speed is not None else None, int(mtu) if mtu.isdigit() else None

    # -- processes -----------------------------------------------------------------------------

    def _procs(self, elapsed: float | None, boot_ts: float | None) -> tuple[list[Proc] | None, int | None]:
        proc_dir = self.roots.procfs()
        names = _listdir(proc_dir)
        if names is None:
            return None, None
        base = os.path.join(proc_dir, "")
        read = self._pid_files.read_bytes
        before_ticks = self._pid_ticks
        seen: dict[int, tuple[int, int]] = {}
        # Every pid's stat line is read and parsed (its CPU ticks and RSS rank it), but a PidStat is built
        # only for the few shown: rows hold the parsed fields.
        rows: list[tuple[procfs.PidStatFields, float | None]] = []
        tick_s = procfs.CLK_TCK
        for n in names:
            if not (n.isdigit() and n.isascii()):
                continue
            raw = read(base + n + "/stat")  # None: exited since listdir, or hidden from us (hidepid)
            if not raw:
                continue  # (empty: exited between open and read)
            try:
                f = procfs.pid_stat_fields(raw.decode("utf-8", "replace"))
            except ValueError:  # a corrupt line: not one to list
                continue
            pid, starttime = f[0], f[8]
            ticks = f[5] + f[6]
            seen[pid] = (starttime, ticks)
            before = before_ticks.get(pid)
            cpu = None
            # same pid and same start time: the same process (pids are reused)
            if elapsed and before is not None and before[0] == starttime:
                cpu = max(ticks - before[1], 0) / tick_s / elapsed * 100.0
            rows.append((f, cpu))
        # Replacing the dict forgets exited pids: memory stays bounded by the live process count.
        self._pid_ticks = seen
        self._idents = {k: v for k, v in self._idents.items() if seen.get(k[0], (None,))[0] == k[1]}

        by_rss = heapq.nlargest(TOP_N, (r for r in rows if r[0][9] > 0), key=lambda r: r[0][9])
        by_cpu = heapq.nlargest(TOP_N, (r for r in rows if r[1]), key=lambda r: r[1] or 0.0)
        chosen = {r[0][0]: r for r in by_cpu + by_rss}
        procs = [self._proc(procfs.PidStat(*f), cpu, boot_ts) for f, cpu in chosen.values()]
        procs.sort(key=lambda q: (-(q.cpu_pct or 0.0), -(q.rss_bytes or 0), q.pid))
        self._pid_files.sweep()  # close what this walk did not read: exited pids, rows no longer shown
        return procs, len(seen)

    def _proc(self, ps: procfs.PidStat, cpu: float | None, boot_ts: float | None) -> Proc:
        p = self.roots.procfs
        pid = str(ps.pid)
        # status every walk: the exact RSS (VmRSS sums the kernel's per-CPU counters; stat's rss field is
        # their approximate total, 406 vs 449 pages in the captured fixture) and the real uid as it is now.
        raw_status = self._pid_files.read_bytes(p(pid, "status"))
        status_text = raw_status.decode("utf-8", "replace") if raw_status else None
        status = procfs.parse_pid_status(status_text) if status_text else procfs.PidStatus()
        key = (ps.pid, ps.starttime, ps.comm)
        ident = self._idents.get(key)
        if ident is None or not 0 <= self._walk_clock - ident.read_at < IDENTITY_REFRESH_S:
            ident = self._identity(ps, key)
        return Proc(
            pid=ps.pid,
            user=self._user(status.uid),
            name=ident.name,
            cmdline=ident.cmdline,
            start_ts=_r(procfs.started_at(boot_ts, ps.starttime)) if boot_ts is not None else None,
            # The exact identity a kill is bound to: the kernel's start ticks and the real uid, as read.
            start_ticks=ps.starttime,
            uid=status.uid,
            cpu_pct=_r(cpu),
            rss_bytes=status.rss_bytes if status.rss_bytes is not None else (0 if ps.rss_pages == 0 else None),
            state=ps.state,
            threads=ps.threads,
            owner=ident.owner,
        )

    def _identity(self, ps: procfs.PidStat, key: tuple[int, int, str]) -> _Identity:
        """Name, command line and owner of a process shown for the first time (or not for a while)."""
        p = self.roots.procfs
        pid = str(ps.pid)
        raw = _read_bytes(p(pid, "cmdline"))
        argv = procfs.parse_cmdline(raw) if raw else []
        name = ps.comm
        # comm is cut at 15 characters ("python3.11-mana"); argv[0] usually has the whole name
        if len(name) == 15 and argv:
            base = os.path.basename(argv[0].split(" ")[0])
            if base.startswith(name):
                name = base
        # one line, as ps shows it: a newline in an argument (python -c "...") would break table rows
        cmdline = " ".join(argv).translate(_CONTROL).strip()
        cg = _read(p(pid, "cgroup"))
        owner = apply_cmdline(parse_cgroup(cg), argv) if cg is not None else None
        ident = _Identity(name=name, cmdline=cmdline[:CMDLINE_MAX] or None,  # kernel threads have none
                          owner=owner, read_at=self._walk_clock)
        if argv:
            # an empty argv is a kernel thread, or a process caught in the middle of execve:
            # ask again next time rather than remember a half answer
            self._idents[key] = ident
        return ident

    def _user(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        name = self._users.get(uid)
        if name is not None:
            return name
        if self.live and self.etc == "/etc":
            import pwd  # NSS: LDAP and sssd users too, not only /etc/passwd

            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = None
        else:
            if self._passwd is None:
                text = _read(os.path.join(self.etc, "passwd"))
                self._passwd = procfs.parse_passwd(text) if text else {}
            name = self._passwd.get(uid)
        # a uid with no name (deleted user, container uid) is still an answer
        name = name or str(uid)
        self._users[uid] = name
        return name


#: What memory() reads of /proc/meminfo.
MEMINFO_FIELDS = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SReclaimable", "SwapTotal", "SwapFree")


def memory(info: dict[str, int]) -> Memory:
    mem = Memory(total_bytes=info.get("MemTotal"))
    avail = info.get("MemAvailable")
    if avail is None and "MemFree" in info:
        # kernels before 3.14 have no MemAvailable: free + page cache is what free(1) used then
        avail = info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0)
    mem.available_bytes = avail
    if mem.total_bytes is not None and avail is not None:
        mem.used_bytes = mem.total_bytes - avail
    if "Cached" in info:
        # free(1)'s "buff/cache"
        mem.cached_bytes = info.get("Buffers", 0) + info["Cached"] + info.get("SReclaimable", 0)
    if "SwapTotal" in info:
        mem.swap_total_bytes = info["SwapTotal"]
        if "SwapFree" in info:
            mem.swap_used_bytes = info["SwapTotal"] - info["SwapFree"]
    return mem

