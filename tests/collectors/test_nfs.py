"""Tests the network-mount collector: mounts parsing, real statvfs probes, and hang safety."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clustertop.collectors import base, nfs, procfs
from clustertop.collectors.base import Context, Roots
from clustertop.config import ConfigError
from clustertop.read import cluster
from clustertop.read.reader import NodeView
from clustertop.wire import schema
from tests.conftest import FIXTURES

NFS = FIXTURES / "nfs"
WALL = 1_700_000_000.0


def ctx_for(proc: Path, **config: Any) -> Context:
    return Context(node="n1", roots=Roots(proc=str(proc)), config=config, config_file="/etc/clustertop/agent.toml")


def write_mounts(tmp_path: Path, *lines: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self" / "mounts").write_text("".join(line + "\n" for line in lines))
    return proc


def nfs_line(path: Path | str, server: str = "nas01:/export") -> str:
    return f"{server} {str(path).replace(' ', chr(92) + '040')} nfs4 rw,relatime,vers=4.2,hard,proto=tcp 0 0"


def probe_threads(path: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"ct-nfs-probe {path}"]


def run_bounded(fn: Callable[[], Any]) -> Any:
    """Run fn in a helper thread and require that it returns at all: a hang check, not a speed check
    (the bound is generous on purpose; the probe under test is blocked forever)."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "collect() hung behind a blocked probe"
    return box[0]


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------


def test_parse_gpu_node_mounts() -> None:
    text = (NFS / "gpu-node" / "proc" / "self" / "mounts").read_text()
    assert nfs.network_mounts(text) == [
        nfs.Mount("nas01:/export/home", "/home", "nfs4"),
        nfs.Mount("nas01:/export/datasets", "/data/datasets", "nfs"),
        nfs.Mount("10.0.0.21:6789,10.0.0.22:6789,10.0.0.23:6789:/volumes/_nogroup/scratch", "/mnt/cephfs", "ceph"),
        nfs.Mount("ceph-fuse", "/mnt/ceph-fuse", "fuse.ceph-fuse"),
        nfs.Mount("alice@laptop:/home/alice/models", "/home/alice/remote models", "fuse.sshfs"),
        nfs.Mount("//fileserver/Shared Drive", "/mnt/shared drive", "cifs"),
        nfs.Mount("gluster1:/gv0", "/mnt/gluster", "fuse.glusterfs"),
        # /scratch is NFS under a tmpfs: only the top mount is what statvfs reaches, so it is not listed.
        nfs.Mount("nas01:/export/home", "/var/lib/kubelet/pods/8c1d/volumes/kubernetes.io~nfs/home", "nfs4"),
    ]


def test_unescape_all_kernel_escapes() -> None:
    assert procfs.unescape(r"/a\040b\011c\012d\134e") == "/a b\tc\nd\\e"


def test_no_network_mounts_is_an_empty_list_and_probes_nothing() -> None:
    calls: list[str] = []
    c = nfs.NetMountCollector(ctx_for(NFS / "no-netmounts" / "proc"), probe=lambda p: calls.append(p) or (1, 0))
    assert c.collect() == []
    assert calls == [] and c.probes_started == 0
    assert nfs.NetMountCollector(ctx_for(Path("/nonexistent/proc"))).collect() == []


# ---------------------------------------------------------------------------------------------
# real probes: statvfs of real directories listed as nfs4 mounts
# ---------------------------------------------------------------------------------------------


def test_real_statvfs_probe_of_real_directories(tmp_path: Path) -> None:
    good = tmp_path / "export with space"
    good.mkdir()
    gone = tmp_path / "gone"  # listed but missing: statvfs raises ENOENT, as for a stale mountpoint
    proc = write_mounts(tmp_path, nfs_line(good), nfs_line(gone, "nas02:/x"))
    c = nfs.NetMountCollector(ctx_for(proc, probe_timeout=5, hung_s=30))
    ok, bad = c.collect()
    st = os.statvfs(good)
    assert (ok.mountpoint, ok.fstype, ok.source, ok.state) == (str(good), "nfs4", "nas01:/export", "ok")
    assert ok.total_bytes == st.f_blocks * st.f_frsize
    assert ok.used_bytes is not None and 0 <= ok.used_bytes <= ok.total_bytes
    assert ok.latency_ms is not None and ok.latency_ms >= 0 and ok.hung_since_ts is None
    assert (bad.state, bad.error, bad.total_bytes) == ("unknown", "No such file or directory", None)
    assert c.probes_started == 2


# ---------------------------------------------------------------------------------------------
# hang safety
# ---------------------------------------------------------------------------------------------


class StuckServer:
    """Stands in for the kernel blocking statvfs on a dead NFS server: probes of ``stuck`` block
    until ``release`` is set (a real hang would block in D state, where nothing can interrupt it).
    Other paths answer at once."""

    def __init__(self, stuck: str) -> None:
        self.stuck = stuck
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, path: str) -> tuple[int, int]:
        self.calls.append(path)
        if path == self.stuck:
            self.release.wait()
        return 1000, 250


def test_stuck_mount_goes_slow_then_hung_with_one_thread_then_recovers(tmp_path: Path) -> None:
    proc = write_mounts(tmp_path, nfs_line("/mnt/stuck"), nfs_line("/mnt/fine", "nas02:/y"))
    server = StuckServer("/mnt/stuck")
    now = [100.0]  # the collector's clock: stepped by hand so slow -> hung needs no sleeping
    c = nfs.NetMountCollector(ctx_for(proc, probe_timeout=0.05, hung_s=5, slow_ms=200), probe=server,
                              clock=lambda: now[0], wall=lambda: WALL)
    try:
        t0 = time.monotonic()
        stuck, fine = run_bounded(c.collect)
        assert time.monotonic() - t0 >= 0.05  # it did wait for the deadline before giving up
        assert (stuck.state, stuck.hung_since_ts) == ("slow", None)
        assert (fine.state, fine.total_bytes, fine.used_bytes) == ("ok", 1000, 250)  # not held up by the stuck one
        assert len(probe_threads("/mnt/stuck")) == 1

        now[0] = 101.5
        stuck, fine = run_bounded(c.collect)
        assert (stuck.state, stuck.latency_ms, stuck.hung_since_ts) == ("slow", 1500.0, None)

        for step in (105.0, 160.0):  # past hung_s, and long after: still one thread, never a second probe
            now[0] = step
            stuck, fine = run_bounded(c.collect)
            assert (stuck.state, stuck.hung_since_ts) == ("hung", WALL)
            assert stuck.latency_ms == (step - 100.0) * 1000
            assert fine.state == "ok"
        assert server.calls.count("/mnt/stuck") == 1
        assert len(probe_threads("/mnt/stuck")) == 1
        assert c.probes_started == 1 + 4  # the stuck one once, the fine one every call
    finally:
        server.release.set()  # the server comes back
    for t in probe_threads("/mnt/stuck"):
        t.join(10)
    assert probe_threads("/mnt/stuck") == []

    stuck, fine = run_bounded(c.collect)
    assert (stuck.state, stuck.hung_since_ts, stuck.total_bytes) == ("ok", None, 1000)
    assert server.calls.count("/mnt/stuck") == 2  # probed afresh once the blocked call returned


def test_unmounted_while_stuck_and_mounted_again_starts_no_second_probe(tmp_path: Path) -> None:
    proc = write_mounts(tmp_path, nfs_line("/mnt/stuck"))
    server = StuckServer("/mnt/stuck")
    c = nfs.NetMountCollector(ctx_for(proc, probe_timeout=0.05), probe=server)
    try:
        assert [m.state for m in run_bounded(c.collect)] == ["slow"]
        write_mounts(tmp_path)  # umount -l: gone from the table, the blocked thread lives on
        assert run_bounded(c.collect) == []
        write_mounts(tmp_path, nfs_line("/mnt/stuck"))  # automount brings it back
        assert [m.state for m in run_bounded(c.collect)] == ["slow"]
        assert server.calls == ["/mnt/stuck"] and len(probe_threads("/mnt/stuck")) == 1
    finally:
        server.release.set()


def test_completed_but_slow_probe_is_slow_by_latency(tmp_path: Path) -> None:
    proc = write_mounts(tmp_path, nfs_line("/mnt/laggy"))
    now = [0.0]
    lag = [0.3]

    def laggy(path: str) -> tuple[int, int]:
        now[0] += lag[0]  # the call takes 300 ms on the collector's clock
        return 10, 5

    c = nfs.NetMountCollector(ctx_for(proc, probe_timeout=1, slow_ms=200), probe=laggy, clock=lambda: now[0])
    (m,) = c.collect()
    assert (m.state, m.latency_ms) == ("slow", 300.0)
    lag[0] = 0.01
    (m,) = c.collect()
    assert (m.state, m.latency_ms) == ("ok", 10.0)


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "key", "problem"), [
    ({"probe_timeout": 0}, "probe_timeout", "must be > 0, got 0.0"),
    ({"probe_timeout": -1}, "probe_timeout", "must be > 0, got -1.0"),
    ({"probe_timeout": 31}, "probe_timeout", "must be at most 30 s, got 31.0"),
    ({"probe_timeout": "1s"}, "probe_timeout", "expected int or float, got str '1s'"),
    ({"slow_ms": True}, "slow_ms", "expected int or float, got bool True"),
    ({"slow_ms": float("nan")}, "slow_ms", "must be > 0, got nan"),
    ({"hung_s": 1, "probe_timeout": 2}, "hung_s", "must be longer than probe_timeout (2 s), got 1.0"),
    # timeout is every collector's key (the runner's deadline), so it is known here too
    ({"slow_msec": 5}, "slow_msec", "unknown key (known: enabled, hung_s, interval, probe_timeout, slow_ms, timeout)"),
])
def test_bad_options_name_file_and_key(tmp_path: Path, config: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        nfs.NetMountCollector(ctx_for(tmp_path, **config))
    assert (e.value.file, e.value.key, e.value.problem) == ("/etc/clustertop/agent.toml",
                                                            f"[collectors.nfs] {key}", problem)


def test_options_defaults_and_deadline_under_the_interval(tmp_path: Path) -> None:
    assert nfs.options(ctx_for(tmp_path)) == nfs.Options(timeout_s=0.5, slow_ms=200.0, hung_s=5.0)  # interval 1 s
    ctx = ctx_for(tmp_path, probe_timeout=2, slow_ms=50, hung_s=20)
    ctx.interval_s = 10
    assert nfs.options(ctx) == nfs.Options(timeout_s=2.0, slow_ms=50.0, hung_s=20.0)


# ---------------------------------------------------------------------------------------------
# contract: registry, wire, alerts
# ---------------------------------------------------------------------------------------------


def test_registry_loads_the_collector(tmp_path: Path) -> None:
    c = base.load("nfs", ctx_for(write_mounts(tmp_path)))
    assert isinstance(c, nfs.NetMountCollector)
    assert (c.name, c.field, c.scope) == ("nfs", "netmounts", "node")


def test_wire_and_alerts_read_well(tmp_path: Path) -> None:
    proc = write_mounts(tmp_path, nfs_line("/mnt/stuck"))
    server = StuckServer("/mnt/stuck")
    now = [0.0]
    c = nfs.NetMountCollector(ctx_for(proc, probe_timeout=0.05), probe=server, clock=lambda: now[0])
    try:
        run_bounded(c.collect)
        now[0] = 1.2
        slow = run_bounded(c.collect)
        now[0] = 7.0
        hung = run_bounded(c.collect)
    finally:
        server.release.set()
    for mounts, want in ((slow, ("warning", "nfs4 /mnt/stuck slow (1200 ms)")),
                         (hung, ("critical", "nfs4 /mnt/stuck hung"))):
        snap = schema.NodeSnapshot(host="n1", netmounts=mounts)
        back = msgspec.json.decode(msgspec.json.encode(snap), type=schema.NodeSnapshot)
        assert back.netmounts == mounts
        node = NodeView(host="n1", state="up", snap=back)
        assert [(a.severity, a.message) for a in cluster.alerts([node]) if a.source == "mount"] == [want]
