"""Provides pure parsers for /proc and /sys text: strings in, plain values out, no I/O; and the one
thin reader of /proc/<pid> (read_pid_stat, read_pid) that the host and GPU collectors, the command
executor and the task manager all use.

The host collector (collectors/host.py) reads the files under its roots and computes rates; everything
here can be tested on captured text. Counters stay raw (ticks, sectors, bytes) so rates are exact.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from clustertop.collectors.base import Roots

# /proc/diskstats counts 512-byte sectors whatever the device's real sector size (kernel ABI,
# Documentation/admin-guide/iostats.rst), so bytes = sectors * 512 on 4Kn drives too.
SECTOR_BYTES = 512


# ---------------------------------------------------------------------------------------------
# /proc/stat
# ---------------------------------------------------------------------------------------------


# The per-tick counters (CpuTicks, DiskCounters, NetCounters) are NamedTuples, not frozen dataclasses: one is built
# per CPU, disk and NIC every tick (a 128-CPU server: 129 CpuTicks a second), and a frozen dataclass's __init__
# (object.__setattr__ per field) cost 4x a tuple's. Immutable, compared by value and read by name alike.


class CpuTicks(NamedTuple):
    """One "cpu" line of /proc/stat, in USER_HZ ticks."""

    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0

    @property
    def total(self) -> int:
        # guest and guest_nice are already counted inside user and nice, so they are left out
        # (adding them would count virtual-machine time twice, as old versions of top did).
        return (self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq
                + self.steal)


@dataclass
class Stat:
    cpu: CpuTicks | None = None
    per_cpu: dict[int, CpuTicks] | None = None  # by cpu number: offline CPUs are absent, not zero
    btime: int | None = None
    procs_running: int | None = None
    procs_blocked: int | None = None


#: The kernel's counters here (ticks, sectors, bytes) are u64: a longer number is a corrupt line, not a
#: reading (it would also overflow the float divisions that turn counters into shares and rates).
U64_MAX = (1 << 64) - 1


def _u64s(fields: list[str], what: str) -> list[int]:
    vals = list(map(int, fields))
    # min/max in C rather than a generator over every value: this runs for every /proc line and every pid.
    if vals and (min(vals) < 0 or max(vals) > U64_MAX):
        raise ValueError(f"{what} counter out of range: {fields}")
    return vals


def _ticks(fields: list[str]) -> CpuTicks:
    # Old kernels print fewer columns (no steal before 2.6.11): missing ones are 0 ticks, which is
    # exactly what the kernel would have counted for them.
    vals = _u64s(fields[:8], "/proc/stat") + [0] * (8 - min(len(fields), 8))
    return CpuTicks(*vals)


def parse_stat(text: str) -> Stat:
    st = Stat(per_cpu={})
    assert st.per_cpu is not None
    for line in text.splitlines():
        if line.startswith(("intr ", "softirq ")):
            continue  # one counter per IRQ (thousands on a big server), none used here: not worth a split
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key == "cpu":
            st.cpu = _ticks(parts[1:])
        elif key.startswith("cpu") and key[3:].isdigit():
            st.per_cpu[int(key[3:])] = _ticks(parts[1:])
        elif key == "btime" and len(parts) > 1:
            st.btime = int(parts[1])
        elif key == "procs_running" and len(parts) > 1:
            st.procs_running = int(parts[1])
        elif key == "procs_blocked" and len(parts) > 1:
            st.procs_blocked = int(parts[1])
    return st


def parse_btime(text: str) -> int | None:
    """Boot time (Unix seconds) from /proc/stat; None when it names none, or a garbled one."""
    for line in text.splitlines():
        if line.startswith("btime "):
            value = line.split()[1:]
            # isdecimal, not isdigit: int() refuses "²"; a 5000-digit number is no boot time either
            return int(value[0]) if value and value[0].isdecimal() and len(value[0]) < 20 else None
    return None


def read_btime(roots: Roots) -> int | None:
    """Boot time of the machine whose /proc ``roots`` names; None when /proc/stat is unreadable or names none."""
    try:
        with open(roots.procfs("stat"), "rb") as f:
            return parse_btime(f.read().decode("utf-8", "replace"))
    except OSError:
        return None


@dataclass(frozen=True)
class CpuPct:
    util: float
    user: float
    system: float
    iowait: float
    steal: float


def cpu_pct(prev: CpuTicks, cur: CpuTicks) -> CpuPct | None:
    """Percentages of the time between two samples; None when no tick elapsed.

    Per-field deltas are clamped at 0: iowait (and idle on some nohz kernels) can go backwards.
    user counts nice too, and system counts irq and softirq, so the four parts add up with idle.
    """
    def d(a: int, b: int) -> int:
        return max(b - a, 0)

    du, dn, ds = d(prev.user, cur.user), d(prev.nice, cur.nice), d(prev.system, cur.system)
    di, dw = d(prev.idle, cur.idle), d(prev.iowait, cur.iowait)
    dirq, dsirq, dst = d(prev.irq, cur.irq), d(prev.softirq, cur.softirq), d(prev.steal, cur.steal)
    total = du + dn + ds + di + dw + dirq + dsirq + dst
    if total <= 0:
        return None
    return CpuPct(
        util=100.0 * (total - di - dw) / total,
        user=100.0 * (du + dn) / total,
        system=100.0 * (ds + dirq + dsirq) / total,
        iowait=100.0 * dw / total,
        steal=100.0 * dst / total,
    )


# ---------------------------------------------------------------------------------------------
# /proc/meminfo, /proc/loadavg, /proc/uptime
# ---------------------------------------------------------------------------------------------


def parse_meminfo(text: str, only: tuple[str, ...] | None = None) -> dict[str, int]:
    """Field -> bytes ("kB" values are KiB); unit-less fields (HugePages_Total) stay counts.

    ``only``: the fields wanted (the host collector's memory() reads 8 of ~55): the other lines are skipped before
    they are split, a third of this parse's cost per tick."""
    out: dict[str, int] = {}
    prefixes = None if only is None else tuple(k + ":" for k in only)
    for line in text.splitlines():
        if prefixes is not None and not line.startswith(prefixes):
            continue
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts:
            continue
        try:
            val = int(parts[0])
        except ValueError:
            continue
        out[key.strip()] = val * 1024 if len(parts) > 1 and parts[1] == "kB" else val
    return out


def parse_loadavg(text: str) -> tuple[float, float, float] | None:
    parts = text.split()
    if len(parts) < 3:
        return None
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_uptime(text: str) -> float | None:
    parts = text.split()
    return float(parts[0]) if parts else None


# ---------------------------------------------------------------------------------------------
# /proc/cpuinfo (x86 and ARM)
# ---------------------------------------------------------------------------------------------

# ARM Ltd (implementer 0x41) core part numbers, from the kernel's arch/arm64/include/asm/cputype.h
# and the Cortex technical reference manuals. ARM boards print no "model name" on arm64, only these.
ARM_PARTS = {
    0xB76: "ARM1176", 0xC07: "Cortex-A7", 0xC08: "Cortex-A8", 0xC09: "Cortex-A9", 0xC0D: "Cortex-A12",
    0xC0E: "Cortex-A17", 0xC0F: "Cortex-A15", 0xD01: "Cortex-A32", 0xD03: "Cortex-A53",
    0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD06: "Cortex-A65", 0xD07: "Cortex-A57",
    0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77", 0xD0E: "Cortex-A76AE", 0xD40: "Neoverse-V1",
    0xD41: "Cortex-A78", 0xD42: "Cortex-A78AE", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510",
    0xD47: "Cortex-A710", 0xD48: "Cortex-X2", 0xD49: "Neoverse-N2", 0xD4A: "Neoverse-E1",
    0xD4B: "Cortex-A78C", 0xD4D: "Cortex-A715", 0xD4E: "Cortex-X3", 0xD4F: "Neoverse-V2",
    0xD80: "Cortex-A520", 0xD81: "Cortex-A720", 0xD82: "Cortex-X4",
}


@dataclass
class CpuInfo:
    model: str | None = None  # "model name", or the ARM core names / "Hardware"
    board: str | None = None  # Raspberry Pi kernels add "Model : Raspberry Pi 4 Model B Rev 1.4"
    logical: int | None = None
    physical: int | None = None  # distinct (physical id, core id) pairs; None if the file lacks them
    mhz: float | None = None  # mean of the "cpu MHz" lines (x86 only)


def parse_cpuinfo(text: str) -> CpuInfo:
    info = CpuInfo()
    logical = 0
    cores: set[tuple[str, str]] = set()
    phys = core = None
    mhz: list[float] = []
    parts: list[str] = []  # ARM core names, in order of first appearance (big.LITTLE has two)
    implementer = None
    hardware = None
    for line in text.splitlines() + [""]:
        key, sep, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if not sep:
            # a blank line ends one processor's block
            if phys is not None and core is not None:
                cores.add((phys, core))
            phys = core = None
            continue
        if key == "processor" and val.isdigit():
            logical += 1
        elif key == "model name" and info.model is None:
            info.model = val
        elif key == "physical id":
            phys = val
        elif key == "core id":
            core = val
        elif key == "cpu MHz":
            try:
                mhz.append(float(val))
            except ValueError:
                pass
        elif key == "CPU implementer":
            implementer = val
        elif key == "CPU part":
            try:
                name = ARM_PARTS.get(int(val, 16)) if implementer in ("0x41", None) else None
            except ValueError:
                name = None
            if name and name not in parts:
                parts.append(name)
        elif key == "Hardware":
            hardware = val
        elif key == "Model":
            info.board = val
    if info.model is None:
        info.model = " + ".join(parts) if parts else hardware
    info.logical = logical or None
    info.physical = len(cores) or None
    info.mhz = round(sum(mhz) / len(mhz), 3) if mhz else None
    return info


#: More CPUs than any kernel supports (NR_CPUS is at most 8192): a list naming more is not a CPU list.
MAX_CPUS = 1 << 16


def parse_cpu_list(text: str) -> list[int]:
    """A sysfs CPU list ("0-3,8,10-11") as numbers; ValueError if it is not one."""
    out: list[int] = []
    for chunk in text.strip().split(","):
        if not chunk:
            continue
        lo, _, hi = chunk.partition("-")
        first, last = int(lo), int(hi or lo)
        if len(out) + last - first + 1 > MAX_CPUS:  # "0-99999999999" would be expanded into all of memory
            raise ValueError(f"CPU list names more than {MAX_CPUS} CPUs")
        out.extend(range(first, last + 1))
    return out


# ---------------------------------------------------------------------------------------------
# /proc/diskstats
# ---------------------------------------------------------------------------------------------


class DiskCounters(NamedTuple):
    reads: int
    read_sectors: int
    read_ticks: int  # ms
    writes: int
    write_sectors: int
    write_ticks: int  # ms
    in_flight: int
    io_ticks: int  # ms the device had I/O in flight
    weighted_ticks: int  # ms, summed over requests: its delta / interval is the average queue depth


def parse_diskstats(text: str) -> dict[str, DiskCounters]:
    """Device name -> counters. Lines are "major minor name" then 11 fields (more since 4.18, 5.5)."""
    out: dict[str, DiskCounters] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 14:
            continue  # pre-2.6.25 partition lines had 4 fields: nothing we can use
        v = _u64s(f[3:14], "/proc/diskstats")
        # fields: reads merged sectors ticks, writes merged sectors ticks, in_flight, io_ticks, weighted
        out[f[2]] = DiskCounters(v[0], v[2], v[3], v[4], v[6], v[7], v[8], v[9], v[10])
    return out


# Partition names when /sys/block cannot tell us: sda1, vdb2, xvda1, hda1, nvme0n1p1, mmcblk0p1.
_PARTITION = re.compile(r"^((h|s|v|xv)d[a-z]+\d+|(nvme\d+n\d+|mmcblk\d+|md\d+|nbd\d+)p\d+)$")


def looks_like_partition(name: str) -> bool:
    return bool(_PARTITION.match(name))


# ---------------------------------------------------------------------------------------------
# /proc/net/dev
# ---------------------------------------------------------------------------------------------


class NetCounters(NamedTuple):
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def parse_net_dev(text: str) -> dict[str, NetCounters]:
    out: dict[str, NetCounters] = {}
    for line in text.splitlines():
        # Big counters touch the colon ("eth0:98085133"): split on the colon, not on spaces.
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        f = rest.split()
        if len(f) < 16:
            continue
        v = _u64s(f[:16], "/proc/net/dev")
        out[name.strip()] = NetCounters(v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11])
    return out


# ---------------------------------------------------------------------------------------------
# /proc/self/mounts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: str


_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash in paths as \\040 \\011 \\012 \\134."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    out: list[Mount] = []
    # Split exactly where the kernel does (one space, one newline): splitlines() and split() would also
    # cut at characters it leaves unescaped in a path (U+00A0, U+3000, \x1c...).
    for line in text.split("\n"):
        f = [x for x in line.split(" ") if x]
        if len(f) < 4:
            continue
        out.append(Mount(unescape(f[0]), unescape(f[1]), f[2], f[3]))
    return out


# ---------------------------------------------------------------------------------------------
# /proc/<pid>/{stat,status,cmdline}
# ---------------------------------------------------------------------------------------------


# USER_HZ: the unit of /proc/stat and /proc/<pid>/stat times. Fixed by the kernel ABI (100 on every
# mainstream architecture), so reading it from the running machine is right for a fixture tree too.
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class PidStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    utime: int  # ticks
    stime: int  # ticks
    threads: int
    starttime: int  # clock ticks after boot (field 22): with pid, identifies the process across reuse
    rss_pages: int


#: One /proc/<pid>/stat line's fields, in PidStat's order: (pid, comm, state, ppid, pgrp, utime, stime,
#: threads, starttime, rss_pages).
PidStatFields = tuple[int, str, str, int, int, int, int, int, int, int]


def pid_stat_fields(text: str) -> PidStatFields:
    """parse_pid_stat without building the PidStat: the process walk parses every pid's line and builds a
    PidStat only for the few it shows (the frozen dataclass's construction was half the parse)."""
    # comm is in parentheses and may itself hold spaces and ")" ("(sd-pam)", "(my ) proc)"):
    # the last ")" ends it.
    open_, close = text.find("("), text.rfind(")")
    # Split no further than field 24 (rss): the 28 fields after it are never used.
    f = text[close + 2:].split(None, 22)
    if open_ < 0 or close < open_ or len(f) < 22:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    # f[0] is field 3 (state) of proc(5); the counters are u64 (a longer number would overflow the
    # float divisions that turn ticks into seconds)
    utime, stime, starttime, rss_pages = int(f[11]), int(f[12]), int(f[19]), int(f[21])
    if min(utime, stime, starttime, rss_pages) < 0 or max(utime, stime, starttime, rss_pages) > U64_MAX:
        raise ValueError(f"/proc/<pid>/stat counter out of range: {[f[11], f[12], f[19], f[21]]}")
    return (int(text[:open_]), text[open_ + 1:close], f[0], int(f[1]), int(f[2]), utime, stime, int(f[17]),
            starttime, rss_pages)


def parse_pid_stat(text: str) -> PidStat:
    """One /proc/<pid>/stat line; ValueError if it is not one (the only error it raises)."""
    return PidStat(*pid_stat_fields(text))


@dataclass(frozen=True)
class PidStatus:
    name: str | None = None
    uid: int | None = None  # real uid
    rss_bytes: int | None = None  # VmRSS; kernel threads have none
    threads: int | None = None


#: The lines of /proc/<pid>/status parse_pid_status reads (4 of ~55: the rest are skipped before they are split).
_STATUS_LINES = ("Name:", "Uid:", "VmRSS:", "Threads:")


def parse_pid_status(text: str) -> PidStatus:
    name = uid = rss = threads = None
    for line in text.splitlines():
        if not line.startswith(_STATUS_LINES):
            continue
        key, _, val = line.partition(":")
        val = val.strip()
        if key == "Name":
            name = val
        elif key == "Uid" and val:
            uid = int(val.split()[0])
        elif key == "VmRSS" and val:
            rss = int(val.split()[0]) * 1024
        elif key == "Threads" and val:
            threads = int(val)
    return PidStatus(name=name, uid=uid, rss_bytes=rss, threads=threads)


def parse_cmdline(raw: bytes) -> list[str]:
    """argv from NUL-separated bytes; a process that rewrote its title may use spaces instead."""
    text = raw.decode("utf-8", "replace")
    return text.rstrip("\0").split("\0") if text else []


def started_at(btime: float, starttime: int) -> float:
    """A process's start as Unix seconds: boot time plus its start in clock ticks. Good to a second at
    best, since btime is whole seconds; the ticks themselves are the exact identity."""
    return btime + starttime / CLK_TCK


@dataclass(frozen=True)
class PidInfo:
    """A process as /proc/<pid> shows it: who it is (pid + start time), whose it is, what it runs."""

    stat: PidStat  # comm, state, ppid, pgrp, utime/stime, starttime in clock ticks
    uid: int | None  # real uid (whose process it is); None when status names none
    argv: list[str]  # empty for kernel threads and zombies
    start_ts: float | None  # started_at(btime, stat.starttime); None when the boot time is unknown

    @property
    def cmdline(self) -> str:
        return " ".join(self.argv)


# The readers' one error contract: None when the process is gone (the file vanished, or the kernel
# says ESRCH while we read it); ValueError when a file is corrupt; any other OSError (a /proc mounted
# hidepid=1 refusing us) raised, because only the caller knows whether that is a process to skip or
# an error to report.
_GONE = (FileNotFoundError, ProcessLookupError)


def read_pid_stat(roots: Roots, pid: int) -> PidStat | None:
    """/proc/<pid>/stat under ``roots``, parsed (see the error contract above)."""
    try:
        fd = os.open(roots.procfs(str(pid), "stat"), os.O_RDONLY)
        try:
            # The host collector's hot path (hundreds of pids a second): raw os.open/os.read skip the
            # buffered text layer, which costs as much as the syscalls themselves; the line fits in one read.
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
    except _GONE:
        return None
    if not raw:
        return None  # exited between open and read
    return parse_pid_stat(raw.decode("utf-8", "replace"))


def _read_pid_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except _GONE:
        return None


def read_pid(roots: Roots, pid: int, btime: float | None) -> PidInfo | None:
    """stat, status and cmdline of ``pid`` under ``roots`` (see the error contract above).

    ``btime`` is the boot time (read_btime) that turns the start ticks into Unix seconds.
    """
    stat = read_pid_stat(roots, pid)
    if stat is None:
        return None
    status = _read_pid_file(roots.procfs(str(pid), "status"))
    cmdline = _read_pid_file(roots.procfs(str(pid), "cmdline"))
    if status is None or cmdline is None:
        return None
    return PidInfo(stat=stat, uid=parse_pid_status(status.decode("utf-8", "replace")).uid,
                   argv=parse_cmdline(cmdline),
                   start_ts=started_at(btime, stat.starttime) if btime is not None else None)


# ---------------------------------------------------------------------------------------------
# /etc/os-release, /etc/passwd, /sys/class/net attributes
# ---------------------------------------------------------------------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
            val = val[1:-1]
        out[key] = val
    return out


def parse_passwd(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 3 and f[2].isdigit():
            try:
                out.setdefault(int(f[2]), f[0])
            except ValueError:  # isdigit() passes "²" and 5000-digit numbers, which int() refuses
                continue
    return out


def parse_speed(text: str) -> int | None:
    """/sys/class/net/<if>/speed in Mb/s; -1 (and the old unsigned forms of -1) mean unknown."""
    try:
        v = int(text.strip())
    except ValueError:
        return None
    return v if v > 0 and v not in (0xFFFF, 0xFFFFFFFF) else None


def parse_operstate(operstate: str | None, carrier: str | None) -> bool | None:
    """RFC 2863 operstate; "unknown" (loopback, many tun/virtual drivers) falls back to carrier."""
    state = (operstate or "").strip()
    if state == "up":
        return True
    if state in ("down", "lowerlayerdown", "notpresent", "dormant"):
        return False
    c = (carrier or "").strip()
    return True if c == "1" else False if c == "0" else None
