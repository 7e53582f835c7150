"""Provides the bonds collector: Linux bonding state from /proc/net/bonding and sysfs, judged for health.

The reader here only opens files under ``ctx.roots``; parsing and the health rules live in
``clustertop.collectors.bonds_parse`` (pure, string in, struct out). Both views are read because each misses
something: procfs has churn counts and the LACP partner per port, sysfs has active/backup per slave,
is readable when the procfs file is not, and keeps working on kernels that change the procfs text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from clustertop.collectors import bonds_parse as bonding
from clustertop.collectors.base import Context, Roots, Section
from clustertop.collectors.kept import KeptFiles, pseudo_roots
from clustertop.config import convert
from clustertop.wire import schema

MASTER_FILES = ("mode", "slaves", "active_slave", "primary", "mii_status", "xmit_hash_policy", "lacp_rate",
                "ad_aggregator", "ad_partner_mac")
SLAVE_FILES = ("state", "mii_status", "link_failure_count", "perm_hwaddr", "ad_aggregator_id",
               "ad_actor_oper_port_state", "ad_partner_oper_port_state")


#: Files a collector keeps open (collectors/kept.py): a bond of 3 slaves reads ~40 small files a tick.
KEPT_LIMIT = 128
#: On a node without the bonding driver (no ``bonding_masters``) the two lookups that find nothing are made
#: again only this often: a failed open and listdir cost 50-90 µs a tick, and a bond made after
#: ``modprobe bonding`` shows within this long.
ABSENT_RECHECK_S = 10.0


def read_text(path: str, files: KeptFiles | None = None) -> str | None:
    """A small kernel file, or None when it is missing or unreadable (sysfs answers EINVAL for the
    speed of a link that is down, EACCES for some LACP files without CAP_NET_ADMIN). ``files``: read through
    the collector's kept descriptors (same text: newlines as a text-mode open gives them)."""
    if files is not None:
        text = files.read(path)
        if text is None:
            return None
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text.strip()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def bond_names(roots: Roots, files: KeptFiles | None = None) -> list[str]:
    """Bonds known to either view: sysfs bonding_masters and the files in /proc/net/bonding."""
    names = bonding.split_names(read_text(roots.sysfs("class", "net", "bonding_masters"), files))
    try:
        names += sorted(os.listdir(roots.procfs("net", "bonding")))
    except OSError:
        pass
    return list(dict.fromkeys(names))


def read_procfs(roots: Roots, name: str, files: KeptFiles | None = None) -> bonding.Parsed | None:
    text = read_text(roots.procfs("net", "bonding", name), files)
    return bonding.parse_procfs(name, text) if text is not None else None


def slave_dir(roots: Roots, bond: str, slave: str) -> str:
    """Where a slave's bonding_slave/ lives: the ``lower_<if>`` link on current kernels, ``slave_<if>``
    on older ones; both point at the slave's own device directory, which /sys/class/net/<if> also is."""
    base = roots.sysfs("class", "net", bond)
    for link in (f"lower_{slave}", f"slave_{slave}"):
        path = os.path.join(base, link)
        if os.path.isdir(os.path.join(path, "bonding_slave")):
            return path
    return roots.sysfs("class", "net", slave)


def read_sysfs(roots: Roots, name: str, files: KeptFiles | None = None) -> bonding.Parsed | None:
    base = roots.sysfs("class", "net", name)
    bdir = os.path.join(base, "bonding")
    if not os.path.isdir(bdir):
        return None
    master = {f: read_text(os.path.join(bdir, f), files) for f in MASTER_FILES}
    names = bonding.split_names(master["slaves"])
    if master["slaves"] is None:
        names = _linked_slaves(base)
    slaves: dict[str, dict[str, str | None]] = {}
    for slave in names:
        sdir = slave_dir(roots, name, slave)
        values = {f: read_text(os.path.join(sdir, "bonding_slave", f), files) for f in SLAVE_FILES}
        dev = roots.sysfs("class", "net", slave)
        values["speed"] = read_text(os.path.join(dev, "speed"), files)
        values["duplex"] = read_text(os.path.join(dev, "duplex"), files)
        slaves[slave] = values
    return bonding.from_sysfs(name, master, slaves)


def _linked_slaves(base: str) -> list[str]:
    """Slave names from the lower_/slave_ links, for when bonding/slaves cannot be read."""
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    out = [e.removeprefix("lower_") for e in entries if e.startswith("lower_")]
    return out or [e.removeprefix("slave_") for e in entries if e.startswith("slave_")]


def read_bonds(roots: Roots, files: KeptFiles | None = None) -> list[schema.Bond]:
    """Every bond on the node, merged from both views and judged. No bonds -> []."""
    out = []
    for name in bond_names(roots, files):
        parsed = bonding.merge(read_procfs(roots, name, files), read_sysfs(roots, name, files))
        if parsed is not None:  # listed but gone by the time we looked: deleted in between
            out.append(bonding.judge(parsed))
    return out


def read_counters(roots: Roots, slave: str, files: KeptFiles | None = None) -> tuple[int | None, int | None]:
    stats = roots.sysfs("class", "net", slave, "statistics")
    rx = bonding.to_int(read_text(os.path.join(stats, "rx_bytes"), files))
    tx = bonding.to_int(read_text(os.path.join(stats, "tx_bytes"), files))
    return rx, tx


def rate(prev: int | None, cur: int | None, dt: float) -> float | None:
    """Bytes per second between two counter reads; None when either is unknown or the counter went
    backwards (driver reload, interface re-created): a reset is not negative traffic."""
    if prev is None or cur is None or dt <= 0 or cur < prev:
        return None
    return (cur - prev) / dt


class BondsCollector:
    """Collector "bonds": list[schema.Bond] for the snapshot's ``bonds`` field."""

    name = "bonds"
    field = "bonds"
    scope = "node"
    default_interval_s = 1.0
    config_type = Section  # no options of its own: only enabled, interval, timeout

    def __init__(self, ctx: Context, clock: Callable[[], float] = time.monotonic) -> None:
        convert(ctx.config, Section, ctx.config_file, "collectors.bonds")  # an unknown key is an error here too
        # clock is injectable so tests can compute rates by hand; production uses the monotonic clock
        # (wall-clock jumps would make throughput spike or go negative).
        self.ctx = ctx
        self._clock = clock
        self._prev: dict[str, tuple[float, int | None, int | None]] = {}
        self._absent_until: float | None = None  # no bonding driver: not looked for again before this
        # Kept open under the real procfs and sysfs (collectors/kept.py); a fixture tree opens per read.
        live_proc, live_sys = pseudo_roots(ctx.roots.proc, ctx.roots.sys)
        self._files = KeptFiles(tuple(r for r, ok in ((ctx.roots.proc, live_proc), (ctx.roots.sys, live_sys)) if ok),
                                limit=KEPT_LIMIT)

    def collect(self) -> list[schema.Bond]:
        roots = self.ctx.roots
        files = self._files
        now = self._clock()
        if self._absent_until is not None and now < self._absent_until:
            return []
        bonds = read_bonds(roots, files)
        if not bonds and read_text(roots.sysfs("class", "net", "bonding_masters"), files) is None:
            self._absent_until = now + ABSENT_RECHECK_S
        else:
            self._absent_until = None
        seen: dict[str, tuple[float, int | None, int | None]] = {}
        for bond in bonds:
            for s in bond.slaves or ():
                rx, tx = read_counters(roots, s.name, files)
                prev = self._prev.get(s.name)
                if prev is not None:
                    dt = now - prev[0]
                    s.rx_bytes_s = rate(prev[1], rx, dt)
                    s.tx_bytes_s = rate(prev[2], tx, dt)
                seen[s.name] = (now, rx, tx)
        self._prev = seen  # slaves that left every bond are forgotten: no growth over hours
        files.sweep()  # and the files of bonds and slaves not read this tick are closed
        return bonds

    def close(self) -> None:
        self._prev.clear()
        self._files.close()
