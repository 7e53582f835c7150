"""KeptFiles (collectors/kept.py): per-tick /proc and /sys files kept open and re-read at offset 0.

Real procfs and sysfs of this machine, a real child process that exits, real files in a temp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from clustertop.agents.selfstats import read_rss
from clustertop.collectors import procfs
from clustertop.collectors.base import Context, Roots
from clustertop.collectors.bonds import KEPT_LIMIT, BondsCollector
from clustertop.collectors.host import HostCollector
from clustertop.collectors.kept import FIRST_SIZE, KeptFiles, pseudo_roots

LIVE = pseudo_roots("/proc", "/sys")
needs_live = pytest.mark.skipif(LIVE != (True, True), reason="no procfs and sysfs mounted at /proc and /sys")


def test_pseudo_roots_from_a_mount_table(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text(f"proc {tmp_path}/p proc rw 0 0\nsysfs {tmp_path}/s sysfs rw 0 0\n"
                     f"tmpfs {tmp_path}/t tmpfs rw 0 0\n")
    for d in "pst":
        (tmp_path / d).mkdir()
    assert pseudo_roots(str(tmp_path / "p"), str(tmp_path / "s"), str(table)) == (True, True)
    # A fixture tree (a plain directory, or a tmpfs) is not procfs: its files are opened per read.
    assert pseudo_roots(str(tmp_path / "t"), str(tmp_path / "p"), str(table)) == (False, False)
    assert pseudo_roots("/proc", "/sys", str(tmp_path / "absent")) == (False, False)


@needs_live
def test_a_kept_procfs_file_reads_fresh_text_each_time() -> None:
    files = KeptFiles(("/proc",))
    first = files.read("/proc/uptime")
    assert first is not None and len(files) == 1
    time.sleep(0.05)  # /proc/uptime counts in hundredths of a second
    second = files.read("/proc/uptime")
    assert second is not None and len(files) == 1  # the same descriptor, read again at offset 0
    assert float(second.split()[0]) > float(first.split()[0])
    # The same bytes as a fresh open (a file that does not change between the two reads).
    with open("/proc/self/mounts", "rb") as f:
        assert files.read_bytes("/proc/self/mounts") == f.read()
    files.close()
    assert len(files) == 0


@needs_live
def test_a_kept_sysfs_attribute_reads_like_an_open() -> None:
    files = KeptFiles(("/sys",))
    path = "/sys/class/net/lo/operstate"
    if not os.path.exists(path):
        pytest.skip("no lo in sysfs")
    with open(path, "rb") as f:
        expected = f.read()
    assert files.read_bytes(path) == expected
    assert files.read_bytes(path) == expected and len(files) == 1
    # EINVAL on a kept descriptor (lo has no speed) is None, as a plain open and read says.
    assert files.read("/sys/class/net/lo/speed") is None


@needs_live
def test_a_file_that_went_away_is_none_and_its_descriptor_closed() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    path = f"/proc/{child.pid}/stat"
    files = KeptFiles(("/proc",))
    try:
        text = files.read(path)
        assert text is not None and procfs.parse_pid_stat(text).pid == child.pid
        assert len(files) == 1
    finally:
        child.kill()
        child.wait()
    # The kept descriptor now answers ESRCH: dropped, the path opened afresh, and that fails too.
    assert files.read(path) is None
    assert len(files) == 0


def test_outside_the_kept_roots_every_read_opens(tmp_path: Path) -> None:
    f = tmp_path / "stat"
    f.write_text("one")
    files = KeptFiles(("/proc",))
    assert files.read(str(f)) == "one" and len(files) == 0
    # A fixture edited by replacement is seen, because nothing outside the roots is kept.
    (tmp_path / "new").write_text("two")
    os.replace(tmp_path / "new", f)
    assert files.read(str(f)) == "two"
    assert files.read(str(tmp_path / "absent")) is None


def test_a_file_bigger_than_the_buffer_is_read_whole_and_the_limit_holds(tmp_path: Path) -> None:
    big = tmp_path / "big"
    data = bytes(range(256)) * (3 * FIRST_SIZE // 256 + 7)
    big.write_bytes(data)
    small = tmp_path / "small"
    small.write_bytes(b"x")
    files = KeptFiles((str(tmp_path),), limit=1)
    assert files.read_bytes(str(big)) == data and len(files) == 1
    assert files.read_bytes(str(big)) == data  # the next read starts with room for all of it
    with open(big, "r+b") as fh:  # rewritten in place: the kept descriptor sees it
        fh.write(b"\0\1")
    assert files.read_bytes(str(big)) == b"\0\1" + data[2:]
    assert files.read_bytes(str(small)) == b"x" and len(files) == 1  # past the limit: opened per read


@needs_live
def test_host_collector_keeps_live_files_and_closes_them() -> None:
    c = HostCollector(Context(node="t"))
    first = c.collect()
    kept = len(c._files)
    assert kept >= 6  # uptime, stat, diskstats, net/dev, loadavg, meminfo, mounts, NIC states
    second = c.collect()
    assert len(c._files) == kept
    assert first.mem is not None and second.mem is not None and second.mem.total_bytes == first.mem.total_bytes
    assert second.uptime_s is not None and first.uptime_s is not None and second.uptime_s >= first.uptime_s
    c.close()
    assert len(c._files) == 0


def test_host_collector_on_a_tree_keeps_nothing(tmp_path: Path) -> None:
    c = HostCollector(Context(node="t", roots=Roots(proc=str(tmp_path / "proc"), sys=str(tmp_path / "sys"))))
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "uptime").write_text("100.00 50.00\n")
    assert c.collect().uptime_s == 100.0
    (tmp_path / "proc" / "next").write_text("102.00 51.00\n")
    os.replace(tmp_path / "proc" / "next", tmp_path / "proc" / "uptime")
    assert c.collect().uptime_s == 102.0 and len(c._files) == 0


@needs_live
def test_self_rss_from_a_kept_statm() -> None:
    files = KeptFiles(("/proc",), limit=1)
    rss = read_rss(files=files)
    assert rss is not None and rss > 1 << 20 and len(files) == 1
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    # Within a few pages of an independent read a moment later (the interpreter allocates in between).
    assert abs(rss - pages * os.sysconf("SC_PAGE_SIZE")) < 64 * os.sysconf("SC_PAGE_SIZE")


def test_parse_stat_skips_the_irq_lines_and_gives_the_same_result() -> None:
    base = ("cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 10 0 5 100 1 0 0 0 0 0\n"
            "ctxt 5\nbtime 1700000000\nprocs_running 2\nprocs_blocked 0\n")
    irqs = "intr 99 " + " ".join(["0"] * 5000) + "\nsoftirq 7 1 2 3 4 5 6 7 8 9 10\n"
    assert procfs.parse_stat(base.replace("ctxt", irqs + "ctxt")) == procfs.parse_stat(base)


BONDS = Path(__file__).resolve().parent.parent / "fixtures" / "bonds" / "sysfs"


def _bond_roots(top: Path) -> Roots:
    return Roots(proc=str(top / "proc"), sys=str(top / "sys"))


@pytest.mark.parametrize("scenario", ["healthy", "degraded", "old-layout", "empty", "none"])
def test_bonds_read_through_kept_files_give_the_same_bonds(tmp_path: Path, scenario: str) -> None:
    """The bonds collector's kept path (live sysfs only) on a copy of each fixture, kept on purpose."""
    top = tmp_path / scenario
    shutil.copytree(BONDS / scenario, top, symlinks=True)
    plain = BondsCollector(Context(node="n1", roots=_bond_roots(top)))
    assert len(plain._files) == 0 and not plain._files._prefixes  # a fixture tree: nothing kept by itself
    kept = BondsCollector(Context(node="n1", roots=_bond_roots(top)))
    kept._files = KeptFiles((str(top),), limit=KEPT_LIMIT)
    want = msgspec.to_builtins(plain.collect())
    assert msgspec.to_builtins(kept.collect()) == want
    # And again, through descriptors already open (rates now known: 0 B/s, the counters stand still).
    assert msgspec.to_builtins(kept.collect()) == msgspec.to_builtins(plain.collect())
    if want:
        assert len(kept._files) > 0  # bonding_masters, the bond's files, every slave's (those that exist)
    kept.close()
    assert len(kept._files) == 0


def test_bond_rates_and_a_slave_leaving_through_kept_files(tmp_path: Path) -> None:
    top = tmp_path / "t"
    shutil.copytree(BONDS / "throughput" / "t0", top, symlinks=True)
    now = [100.0]
    c = BondsCollector(Context(node="n1", roots=_bond_roots(top)), clock=lambda: now[0])
    c._files = KeptFiles((str(top),), limit=KEPT_LIMIT)
    c.collect()
    kept = len(c._files)
    # The counters change in place, as sysfs's do (t1's values written into t0's open files).
    t1 = BONDS / "throughput" / "t1" / "sys" / "class" / "net"
    for slave in ("eno1", "enp5s0", "enp6s0"):
        for name in ("rx_bytes", "tx_bytes"):
            src = t1 / slave / "statistics" / name
            with open(top / "sys" / "class" / "net" / slave / "statistics" / name, "r+b") as f:
                f.truncate(0)
                f.write(src.read_bytes())
    now[0] = 102.0
    second = c.collect()[0]
    assert {s.name: (s.rx_bytes_s, s.tx_bytes_s) for s in second.slaves or ()} == {
        "eno1": (125_000_000.0, 50_000.0), "enp5s0": (0.0, 2_000_000.0), "enp6s0": (None, 0.0)}
    assert len(c._files) == kept
    # A slave leaves the bond: its files are not read any more, and the sweep closes them.
    slaves = top / "sys" / "class" / "net" / "bond0" / "bonding" / "slaves"
    names = slaves.read_text().split()
    assert "enp6s0" in names
    with open(slaves, "r+") as f:
        f.truncate(0)
        f.write(" ".join(n for n in names if n != "enp6s0") + "\n")
    (top / "sys" / "class" / "net" / "bond0" / "lower_enp6s0").unlink()
    third = c.collect()[0]
    assert [s.name for s in third.slaves or ()] == [n for n in names if n != "enp6s0"]
    assert len(c._files) < kept
    assert not any("enp6s0" in p for p in c._files._fds)
