"""Provides the network-mount collector: NFS, CephFS, SSHFS, SMB and Gluster mounts, probed without ever hanging.

A stuck NFS server blocks ``stat``/``statvfs`` in the kernel (uninterruptible sleep, state D) for as
long as the server is gone; no Python timeout can interrupt that call. So each probe runs in its own
daemon thread and ``collect()`` waits for it only up to a deadline: a probe still out after the
deadline makes the mount "slow", after ``hung_s`` "hung". A mount whose probe has not returned never
gets a second one, so a dead server costs at most one blocked thread per mount, ever. When the
blocked call finally returns, the next collect probes afresh and the mount is ok/slow by latency.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clustertop.collectors import procfs
from clustertop.collectors.base import Context, Roots, Section
from clustertop.collectors.kept import pseudo_roots
from clustertop.collectors.mounttable import MountTable
from clustertop.config import ConfigError, Invalid, Positive, convert
from clustertop.errors import describe
from clustertop.wire import schema

#: Filesystem types that live across the network. Kernel CephFS reports "ceph" (ceph-fuse
#: "fuse.ceph-fuse"), GlusterFS mounts through FUSE, "smb3" is cifs mounted with -t smb3.
NET_FSTYPES = frozenset({
    "nfs", "nfs4", "ceph", "cephfs", "fuse.ceph-fuse", "fuse.sshfs", "cifs", "smb3", "smbfs",
    "glusterfs", "fuse.glusterfs", "lustre", "beegfs",
})

SECTION = "collectors.nfs"
DEFAULT_TIMEOUT_S = 1.0  # how long collect() waits for the probes
DEFAULT_SLOW_MS = 200.0  # a probe that completed slower than this makes the mount "slow"
DEFAULT_HUNG_S = 5.0  # a probe out for this long makes the mount "hung"



@dataclass(frozen=True)
class Mount:
    source: str
    mountpoint: str
    fstype: str




def parse_mounts(text: str) -> list[Mount]:
    """Every mount in /proc/self/mounts order. A path mounted over twice keeps only the last
    (topmost) entry, because that is what a stat of the path reaches; order of first sight is kept."""
    seen: dict[str, Mount] = {}
    for m in procfs.parse_mounts(text):  # the one /proc/self/mounts parser (fields, escapes)
        seen[m.mountpoint] = Mount(source=m.device, mountpoint=m.mountpoint, fstype=m.fstype)
    return list(seen.values())


def network_mounts(text: str) -> list[Mount]:
    return [m for m in parse_mounts(text) if m.fstype in NET_FSTYPES]


class NetworkMounts:
    """The network mounts of the table, parsed again only when its text changed (MountTable: read again only
    when the kernel says the table changed)."""

    def __init__(self, roots: Roots) -> None:
        self.table = MountTable(roots.procfs("self", "mounts"), pseudo_roots(roots.proc, roots.sys)[0])
        self._parsed: tuple[str, list[Mount]] | None = None

    def mounts(self) -> list[Mount]:
        text = self.table.text()
        if text is None:
            return []
        if self._parsed is None or self._parsed[0] is not text:
            self._parsed = (text, network_mounts(text))
        return self._parsed[1]

    def close(self) -> None:
        self.table.close()


def statvfs_probe(path: str) -> tuple[int | None, int | None]:
    """(total_bytes, used_bytes) of the filesystem at path; this is the call that can block forever.
    Some FUSE filesystems answer zero blocks: that is "does not say" (None), not an empty disk."""
    st = os.statvfs(path)
    if st.f_blocks == 0:
        return None, None
    return st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize


@dataclass
class Probe:
    """One probe of one mount: started by collect(), finished (maybe never) by its thread."""

    started: float  # on the collector's clock
    started_ts: float  # wall clock, for hung_since_ts
    done: threading.Event = field(default_factory=threading.Event)
    latency_s: float | None = None
    total_bytes: int | None = None
    used_bytes: int | None = None
    error: str | None = None


@dataclass
class MountState:
    inflight: Probe | None = None  # started and not yet returned
    last: Probe | None = None  # the last one that returned


@dataclass(frozen=True)
class Options:
    timeout_s: float
    slow_ms: float
    hung_s: float


class NfsConfig(Section):
    """``[collectors.nfs]``. ``probe_timeout`` (not ``timeout``): ``timeout`` in any ``[collectors.X]``
    section is the runner's per-collector timeout, which the agent strips before the collector sees its options."""

    probe_timeout: Positive | None = None  # None: 1 s, at most half the interval
    slow_ms: Positive = DEFAULT_SLOW_MS
    hung_s: Positive = DEFAULT_HUNG_S

    def __post_init__(self) -> None:
        if self.probe_timeout is not None and self.probe_timeout > 30:
            raise Invalid("probe_timeout", f"must be at most 30 s, got {self.probe_timeout!r}")


def options(ctx: Context) -> Options:
    """``[collectors.nfs]`` probe_timeout, slow_ms, hung_s; bad values name the file and key."""
    file = ctx.config_file
    c = convert(ctx.config, NfsConfig, file, SECTION)
    # Default deadline: 1 s, but at most half the interval so collect() ends well before the agent's
    # own per-collector timeout (which defaults to the interval).
    timeout = c.probe_timeout or min(DEFAULT_TIMEOUT_S, max(ctx.interval_s, 0.1) / 2)
    slow_ms, hung_s = c.slow_ms, c.hung_s
    # Here, not in NfsConfig: the default deadline depends on the interval the agent chose.
    if hung_s <= timeout:
        raise ConfigError(file, f"[{SECTION}] hung_s",
                          f"must be longer than probe_timeout ({timeout:g} s), got {hung_s!r}")
    return Options(timeout_s=timeout, slow_ms=slow_ms, hung_s=hung_s)


class NetMountCollector:
    """Collector "nfs": list[schema.NetMount] for the snapshot's ``netmounts`` field."""

    name = "nfs"
    field = "netmounts"
    config_type = NfsConfig
    scope = "node"
    default_interval_s = 2.0

    def __init__(self, ctx: Context, probe: Callable[[str], tuple[int | None, int | None]] = statvfs_probe,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        # probe and clock are parameters so tests can stand in for a kernel that blocks statvfs and
        # step time past hung_s without sleeping; production uses statvfs and the monotonic clock.
        self.ctx = ctx
        self.opts = options(ctx)
        self._probe = probe
        self._clock = clock
        self._wall = wall
        self._mounts: dict[str, MountState] = {}
        self._table = NetworkMounts(ctx.roots)
        self._lock = threading.Lock()
        self.probes_started = 0  # for tests and self-diagnosis: threads ever started

    def collect(self) -> list[schema.NetMount]:
        with self._lock:
            mounts = self._table.mounts()
            for m in mounts:
                st = self._mounts.setdefault(m.mountpoint, MountState())
                self._harvest(st)
                if st.inflight is None:
                    st.inflight = self._start(m.mountpoint)
            # One shared deadline for all mounts (real time: it is what bounds this call).
            deadline = time.monotonic() + self.opts.timeout_s
            for m in mounts:
                p = self._mounts[m.mountpoint].inflight
                if p is not None:
                    p.done.wait(max(0.0, deadline - time.monotonic()))
            out = [self._report(m, self._mounts[m.mountpoint]) for m in mounts]
            self._forget({m.mountpoint for m in mounts})
            return out

    def _start(self, path: str) -> Probe:
        p = Probe(started=self._clock(), started_ts=self._wall())

        def run() -> None:
            t0 = self._clock()
            try:
                p.total_bytes, p.used_bytes = self._probe(path)
            except OSError as e:  # ESTALE, ENOTCONN (dead sshfs), EACCES: the mount answered, badly
                p.error = e.strerror or str(e)
            except Exception as e:  # a probe bug must not kill the thread before done is set
                p.error = describe(e)
            finally:
                p.latency_s = self._clock() - t0
                p.done.set()

        threading.Thread(target=run, name=f"ct-nfs-probe {path}", daemon=True).start()
        self.probes_started += 1
        return p

    @staticmethod
    def _harvest(st: MountState) -> None:
        if st.inflight is not None and st.inflight.done.is_set():
            st.last, st.inflight = st.inflight, None

    def _report(self, m: Mount, st: MountState) -> schema.NetMount:
        self._harvest(st)
        nm = schema.NetMount(mountpoint=m.mountpoint, fstype=m.fstype, source=m.source)
        last = st.last
        if last is not None:  # sizes of the last answer, even while a newer probe is out
            nm.total_bytes, nm.used_bytes = last.total_bytes, last.used_bytes
        if st.inflight is not None:
            # Past the deadline and still out. Latency is how long it has been out so far (a lower
            # bound, and more telling than the last completed probe's few milliseconds).
            out_s = self._clock() - st.inflight.started
            nm.latency_ms = round(out_s * 1000, 3)
            if out_s >= self.opts.hung_s:
                nm.state = "hung"
                nm.hung_since_ts = st.inflight.started_ts
            else:
                nm.state = "slow"
            return nm
        assert last is not None and last.latency_s is not None  # started this call, and it returned
        nm.latency_ms = round(last.latency_s * 1000, 3)
        if last.error is not None:
            nm.state = "unknown"
            nm.error = last.error
        else:
            nm.state = "slow" if nm.latency_ms > self.opts.slow_ms else "ok"
        return nm

    def _forget(self, mounted: set[str]) -> None:
        # Unmounted paths are dropped, except while their probe is still out: if the path comes back
        # (automount), its stuck thread must still count, so no second one is started.
        for path, st in list(self._mounts.items()):
            if path not in mounted:
                self._harvest(st)
                if st.inflight is None:
                    del self._mounts[path]

    def close(self) -> None:
        """The mount table's descriptor only: a probe blocked in the kernel cannot be cancelled, and its daemon
        thread does not keep the agent from exiting."""
        self._table.close()
