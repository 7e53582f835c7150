"""The host collector: parsers on real captured text, rates over two samples, roots, and the live machine.

Fixture trees are described in tests/fixtures/host/README.md; every expected rate below is computed
by hand from the deltas listed there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec
import psutil
import pytest

from clustertop.collectors import procfs
from clustertop.collectors.base import Context, Roots
from clustertop.collectors.host import HostCollector, keep_disk, memory, nic_kind, select_filesystems
from clustertop.config import ConfigError
from clustertop.wire.schema import CpuTimes, DiskIO, Filesystem, Nic, Owner, Proc, System
from tests.conftest import FIXTURES

HOST = FIXTURES / "host"
BASIC = HOST / "basic"
SECOND = HOST / "basic-second"


def collector(tree: Path, **config: object) -> HostCollector:
    return HostCollector(Context(node="t", roots=Roots(proc=str(tree / "proc"), sys=str(tree / "sys")),
                                 config=dict(config)))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the basic tree (symlinks kept), for overlaying the second sample."""
    dst = tmp_path / "tree"
    shutil.copytree(BASIC, dst, symlinks=True)
    return dst


def second_sample(tree: Path) -> None:
    shutil.copytree(SECOND, tree, dirs_exist_ok=True)


# ---------------------------------------------------------------------------------------------
# Pure parsers on the real captured text
# ---------------------------------------------------------------------------------------------


def test_parse_stat() -> None:
    st = procfs.parse_stat((BASIC / "proc/stat").read_text())
    assert st.cpu == procfs.CpuTicks(10628, 0, 4263, 99184, 415, 0, 89, 9)
    assert st.per_cpu == {0: procfs.CpuTicks(3257, 0, 1780, 52074, 129, 0, 25, 3),
                          1: procfs.CpuTicks(7370, 0, 2483, 47109, 285, 0, 63, 5)}
    assert st.btime == 1795355132
    assert st.procs_blocked == 0


def test_parse_stat_old_kernel_has_fewer_columns() -> None:
    st = procfs.parse_stat("cpu  100 2 30 400\ncpu0 100 2 30 400\n")  # 2.6-era: no iowait/irq/steal
    assert st.cpu == procfs.CpuTicks(100, 2, 30, 400, 0, 0, 0, 0)
    assert st.btime is None



def test_parsers_refuse_counters_beyond_u64() -> None:
    # Found by the fuzz test: a 400-digit "tick count" parsed, then overflowed cpu_pct's float
    # division (OverflowError, not the ValueError the host collector reports as bad data). Disk
    # and NIC counters become rates the same way.
    huge = "1" + "0" * 400
    with pytest.raises(ValueError, match="/proc/stat counter out of range"):
        procfs.parse_stat(f"cpu  {huge} 0 1 2\n")
    with pytest.raises(ValueError, match="/proc/diskstats counter out of range"):
        procfs.parse_diskstats(f"   8       0 sda 1 2 {huge} 4 5 6 7 8 0 10 11\n")
    with pytest.raises(ValueError, match="/proc/net/dev counter out of range"):
        procfs.parse_net_dev(f"  eth0: {huge} 2 0 0 0 0 0 0 9 10 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="out of range"):
        procfs.parse_stat("cpu  -5 0 1 2\n")  # the kernel prints unsigned counters
    edge = procfs.parse_stat(f"cpu  {(1 << 64) - 1} 0 1 2\n")  # the largest u64 is a counter
    assert edge.cpu is not None and edge.cpu.user == (1 << 64) - 1
    assert procfs.cpu_pct(edge.cpu, edge.cpu) is None  # no tick elapsed

def test_cpu_pct_exact() -> None:
    a = procfs.CpuTicks(user=100, nice=0, system=50, idle=800, iowait=10, irq=0, softirq=5, steal=0)
    b = procfs.CpuTicks(user=150, nice=10, system=70, idle=870, iowait=30, irq=5, softirq=10, steal=20)
    # deltas: user 50, nice 10, system 20, idle 70, iowait 20, irq 5, softirq 5, steal 20 = 200
    pct = procfs.cpu_pct(a, b)
    assert pct == procfs.CpuPct(util=55.0, user=30.0, system=15.0, iowait=10.0, steal=10.0)


def test_cpu_pct_no_ticks_is_unknown_and_backwards_counters_clamp() -> None:
    a = procfs.CpuTicks(user=100, idle=100, iowait=50)
    assert procfs.cpu_pct(a, a) is None
    # iowait went backwards (a known kernel quirk): it counts as 0, not as negative time
    b = procfs.CpuTicks(user=150, idle=150, iowait=40)
    assert procfs.cpu_pct(a, b) == procfs.CpuPct(util=50.0, user=50.0, system=0.0, iowait=0.0, steal=0.0)


def test_parse_meminfo_and_memory() -> None:
    info = procfs.parse_meminfo((BASIC / "proc/meminfo").read_text())
    assert info["MemTotal"] == 24684092 * 1024
    assert info["HugePages_Total"] == 0  # a count, not kB
    mem = memory(info)
    assert mem.total_bytes == 24684092 * 1024
    assert mem.available_bytes == 24268148 * 1024
    assert mem.used_bytes == (24684092 - 24268148) * 1024
    assert mem.cached_bytes == (9148 + 430096 + 110500) * 1024
    assert (mem.swap_total_bytes, mem.swap_used_bytes) == (0, 0)  # no swap is a fact, not unknown


def test_memory_before_memavailable_and_without_swap_lines() -> None:
    mem = memory(procfs.parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"))
    assert mem.available_bytes == 400 * 1024
    assert mem.used_bytes == 600 * 1024
    assert mem.swap_total_bytes is None and mem.swap_used_bytes is None


def test_parse_loadavg_uptime() -> None:
    assert procfs.parse_loadavg((BASIC / "proc/loadavg").read_text()) == (0.63, 0.40, 0.20)
    assert procfs.parse_uptime((BASIC / "proc/uptime").read_text()) == 575.45
    assert procfs.parse_loadavg("") is None
    assert procfs.parse_uptime("") is None


def test_parse_cpuinfo_x86() -> None:
    info = procfs.parse_cpuinfo((BASIC / "proc/cpuinfo").read_text())
    assert (info.model, info.logical, info.physical, info.mhz) == ("AMD EPYC", 2, 2, 2596.12)
    assert info.board is None


def test_parse_cpuinfo_arm() -> None:
    rpi = procfs.parse_cpuinfo((HOST / "arm-rpi4/proc/cpuinfo").read_text())
    assert (rpi.model, rpi.board, rpi.logical, rpi.physical, rpi.mhz) == (
        "Cortex-A72", "Raspberry Pi 4 Model B Rev 1.4", 4, None, None)
    rk = procfs.parse_cpuinfo((HOST / "arm-rk3588/proc/cpuinfo").read_text())
    assert (rk.model, rk.logical) == ("Cortex-A55 + Cortex-A76", 8)
    # 32-bit Raspberry Pi OS: "model name" is there and wins; "Hardware" names the SoC
    armv7 = procfs.parse_cpuinfo("processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\n"
                                 "CPU implementer\t: 0x41\nCPU part\t: 0xd03\n\nHardware\t: BCM2835\n")
    assert armv7.model == "ARMv7 Processor rev 4 (v7l)"
    # an unknown core from another implementer: fall back to "Hardware"
    other = procfs.parse_cpuinfo("processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x801\n\n"
                                 "Hardware\t: Qualcomm Technologies, Inc SDM845\n")
    assert other.model == "Qualcomm Technologies, Inc SDM845"


def test_parse_cpu_list() -> None:
    assert procfs.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]


def test_parse_diskstats() -> None:
    disks = procfs.parse_diskstats((BASIC / "proc/diskstats").read_text())
    assert disks["vda"] == procfs.DiskCounters(reads=69283, read_sectors=3488794, read_ticks=13571,
                                               writes=21863, write_sectors=1965856, write_ticks=6543,
                                               in_flight=0, io_ticks=7900, weighted_ticks=20679)
    assert set(disks) == {"vda", "zram0"} | {f"loop{i}" for i in range(8)}
    # kernel 4.x (11 fields, no discard/flush columns) parses the same; a 2.6.2x partition line (4 fields) is skipped
    old = procfs.parse_diskstats("   8       0 sda 10 1 80 5 20 2 160 7 1 9 12\n   8       1 sda1 5 40 3 24\n")
    assert list(old) == ["sda"] and old["sda"].in_flight == 1


@pytest.mark.parametrize("name, partition", [
    ("sda", False), ("sda1", True), ("vdb2", True), ("xvda1", True), ("nvme0n1", False), ("nvme0n1p2", True),
    ("mmcblk0", False), ("mmcblk0p1", True), ("md0", False), ("dm-0", False), ("sdaa", False), ("sdaa3", True),
])
def test_looks_like_partition(name: str, partition: bool) -> None:
    assert procfs.looks_like_partition(name) is partition


def test_parse_net_dev() -> None:
    nets = procfs.parse_net_dev((BASIC / "proc/net/dev").read_text())
    assert list(nets) == ["lo", "ifb0", "ifb1", "eth0"]
    assert nets["eth0"] == procfs.NetCounters(167410809, 4077, 0, 0, 239828, 2357, 0, 0)
    # a counter wider than the column touches the colon: "eth0:169410809"
    nets2 = procfs.parse_net_dev((SECOND / "proc/net/dev").read_text())
    assert nets2["eth0"].rx_bytes == 169410809 and nets2["eth0"].rx_errors == 2


def test_parse_mounts_unescapes_paths() -> None:
    mounts = procfs.parse_mounts("/dev/sdb1 /mnt/my\\040data ext4 rw 0 0\nshort line\n")
    assert mounts == [procfs.Mount("/dev/sdb1", "/mnt/my data", "ext4", "rw")]
    real = procfs.parse_mounts((BASIC / "proc/self/mounts").read_text())
    assert procfs.Mount("/dev/vda", "/", "ext4", "rw,relatime,discard,resv_strict,resuid=65534,resgid=65534") in real


def test_parse_pid_stat_real_and_hostile_comm() -> None:
    ps = procfs.parse_pid_stat((BASIC / "proc/19137/stat").read_text())
    assert ps == procfs.PidStat(pid=19137, comm="python3", state="S", ppid=1, pgrp=19137, utime=1, stime=1,
                                threads=1, starttime=57027, rss_pages=3391)
    # comm is attacker-chosen (prctl PR_SET_NAME): spaces and parentheses must not shift the fields
    line = "4242 (evil) S 1 (x) R 7 4243 4242 0 -1 0 0 0 0 0 11 22 0 0 20 0 3 0 999 0 55 rest\n"
    ps = procfs.parse_pid_stat(line)
    assert (ps.pid, ps.comm, ps.state, ps.ppid, ps.pgrp, ps.utime, ps.stime, ps.threads, ps.starttime,
            ps.rss_pages) == (4242, "evil) S 1 (x", "R", 7, 4243, 11, 22, 3, 999, 55)
    ps = procfs.parse_pid_stat("1234 (a) b (c)) S 1 77 77 0 -1 4194560 1 0 0 0 5 6 0 0 20 0 1 0 98765 1000 100 0")
    assert (ps.comm, ps.pgrp, ps.starttime) == ("a) b (c)", 77, 98765)


@pytest.mark.parametrize("line", [
    "", "garbage", "12 (x) S 1 2",  # too short
    "12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x 20 21",  # starttime not a number
    "12 x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21",  # no "(" before comm
])
def test_parse_pid_stat_refuses_what_is_not_a_stat_line_with_value_error(line: str) -> None:
    # the one error a caller has to catch: never IndexError
    with pytest.raises(ValueError):
        procfs.parse_pid_stat(line)


def test_parse_btime() -> None:
    assert procfs.parse_btime("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n") == 1700000000
    assert procfs.parse_btime("cpu 1 2 3\n") is None
    assert procfs.parse_btime("btime x\n") is None  # garbled: no boot time, not an exception


def test_read_pid_from_the_fixture_tree(tmp_path: Path) -> None:
    roots = Roots(proc=str(BASIC / "proc"))
    info = procfs.read_pid(roots, 19145, procfs.read_btime(roots))
    assert info is not None and info.uid == 65534 and info.argv == ["/tmp/ctfix/clustertop-fixture-sleeper", "900"]
    assert info.stat.pid == 19145 and info.cmdline == " ".join(info.argv)
    btime = procfs.parse_btime((BASIC / "proc/stat").read_text())
    assert btime is not None and info.start_ts == procfs.started_at(btime, info.stat.starttime)
    assert procfs.read_pid(roots, 19145, None).start_ts is None  # type: ignore[union-attr]
    # a vanished pid is None, from either reader; a corrupt stat line is ValueError
    assert procfs.read_pid_stat(roots, 999999) is None and procfs.read_pid(roots, 999999, btime) is None
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (x) S 1\n")
    with pytest.raises(ValueError):
        procfs.read_pid_stat(Roots(proc=str(tmp_path)), 7)
    assert procfs.read_btime(Roots(proc=str(tmp_path))) is None  # no /proc/stat there


def test_parse_pid_status_and_cmdline() -> None:
    st = procfs.parse_pid_status((BASIC / "proc/19145/status").read_text())
    assert (st.name, st.uid, st.rss_bytes, st.threads) == ("clustertop-fixt", 65534, 1796 * 1024, 1)
    kthread = procfs.parse_pid_status((BASIC / "proc/2/status").read_text())
    assert kthread.rss_bytes is None  # kernel threads have no VmRSS line
    assert procfs.parse_cmdline((BASIC / "proc/19145/cmdline").read_bytes()) == [
        "/tmp/ctfix/clustertop-fixture-sleeper", "900"]
    assert procfs.parse_cmdline(b"") == []


@pytest.mark.parametrize("text, mbps", [
    ("1000\n", 1000), ("25000\n", 25000), ("400000\n", 400000), ("-1\n", None), ("0\n", None),
    ("65535\n", None), ("4294967295\n", None), ("", None), ("garbage", None),
])
def test_parse_speed(text: str, mbps: int | None) -> None:
    assert procfs.parse_speed(text) == mbps


@pytest.mark.parametrize("oper, carrier, up", [
    ("up\n", None, True), ("down\n", "0\n", False), ("lowerlayerdown\n", None, False),
    ("unknown\n", "1\n", True), ("unknown\n", "0\n", False), ("unknown\n", None, None), (None, None, None),
])
def test_parse_operstate(oper: str | None, carrier: str | None, up: bool | None) -> None:
    assert procfs.parse_operstate(oper, carrier) is up


def test_parse_os_release_and_passwd() -> None:
    rel = procfs.parse_os_release((BASIC / "etc/os-release").read_text())
    assert rel["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert procfs.parse_passwd((BASIC / "etc/passwd").read_text()) == {0: "root", 1: "daemon", 65534: "nobody"}


# ---------------------------------------------------------------------------------------------
# Choices: filesystems, disks, NIC kinds
# ---------------------------------------------------------------------------------------------

# The mount table of a Kubernetes GPU node (shape of a real one: snaps, kubelet bind mounts, NFS, Ceph).
GPU_NODE_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=65876012k,nr_inodes=16469003,mode=755 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=13181164k,mode=755 0 0
/dev/nvme0n1p2 / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
systemd-1 /proc/sys/fs/binfmt_misc autofs rw,relatime,fd=29,pgrp=1,timeout=0 0 0
/dev/loop3 /snap/core20/2318 squashfs ro,nodev,relatime 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime,fmask=0077,dmask=0077 0 0
/dev/md0 /data xfs rw,relatime,attr2,inode64 0 0
nas:/export/datasets /mnt/datasets nfs4 rw,relatime,vers=4.2,hard,proto=tcp 0 0
10.0.0.5:6789,10.0.0.6:6789:/ /mnt/cephfs ceph rw,relatime,name=admin 0 0
user@host:/home /mnt/remote fuse.sshfs rw,nosuid,nodev,relatime,user_id=0 0 0
overlay /var/lib/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs overlay rw,relatime 0 0
/dev/nvme0n1p2 /var/lib/kubelet/pods/0b2b2c4e/volume-subpaths/x ext4 rw,relatime 0 0
tmpfs /var/lib/kubelet/pods/0b2b2c4e/volumes/kubernetes.io~projected/kube-api-access tmpfs rw,relatime 0 0
tank/scratch /scratch zfs rw,xattr,noacl 0 0
tank/home /home zfs rw,xattr,noacl 0 0
/dev/sdb1 /mnt/usb fuseblk rw,relatime,user_id=0,group_id=0 0 0
"""


def test_select_filesystems_on_a_gpu_node() -> None:
    picked = select_filesystems(procfs.parse_mounts(GPU_NODE_MOUNTS))
    assert [(m.mountpoint, m.fstype) for m in picked] == [
        ("/", "ext4"), ("/boot/efi", "vfat"), ("/data", "xfs"), ("/dev/shm", "tmpfs"), ("/home", "zfs"),
        ("/mnt/usb", "fuseblk"), ("/scratch", "zfs"),
    ]


def test_select_filesystems_keeps_a_containers_overlay_root_and_the_last_mount_on_a_path() -> None:
    text = ("overlay / overlay rw,lowerdir=/a,upperdir=/b 0 0\n"
            "/dev/sda1 /srv ext4 rw 0 0\n/dev/sdc1 /srv xfs rw 0 0\n")
    picked = select_filesystems(procfs.parse_mounts(text))
    assert [(m.mountpoint, m.device) for m in picked] == [("/", "overlay"), ("/srv", "/dev/sdc1")]


def counters(reads: int = 0, writes: int = 0, in_flight: int = 0) -> procfs.DiskCounters:
    return procfs.DiskCounters(reads, reads * 8, 0, writes, writes * 8, 0, in_flight, 0, 0)


def test_keep_disk() -> None:
    whole = {"sda", "nvme0n1", "dm-0", "md0", "loop0", "zram0", "sr0"}
    stacked = {"dm-0", "md0"}
    busy, idle = counters(reads=10), counters()
    assert keep_disk("sda", idle, None, whole, stacked)  # an idle real disk is still shown
    assert not keep_disk("sda1", busy, None, whole, stacked)  # partition: not in /sys/block
    assert not keep_disk("dm-0", busy, None, whole, stacked)  # built on other disks: not counted twice
    assert not keep_disk("md0", busy, None, whole, stacked)
    assert keep_disk("zram0", busy, None, whole, stacked) and not keep_disk("zram0", idle, None, whole, stacked)
    assert not keep_disk("loop0", busy, None, whole, stacked)  # first sample: cannot tell it is active
    assert not keep_disk("loop0", busy, busy, whole, stacked)  # did nothing this interval
    assert keep_disk("loop0", counters(reads=11), busy, whole, stacked)
    assert keep_disk("loop0", counters(in_flight=2), None, whole, stacked)
    assert not keep_disk("sr0", idle, None, whole, stacked)
    # sysfs unreadable: fall back to the name
    assert keep_disk("nvme0n1", busy, None, None, set()) and not keep_disk("nvme0n1p1", busy, None, None, set())


def test_nic_kind() -> None:
    bonds = {"bond0"}
    assert nic_kind("lo", iftype="772\n", bonds=bonds, master=None, device_path="../../devices/virtual/net/lo") == "loopback"
    assert nic_kind("bond0", iftype="1", bonds=bonds, master=None,
                    device_path="../../devices/virtual/net/bond0") == "bond"
    assert nic_kind("eno1", iftype="1", bonds=bonds, master="bond0",
                    device_path="../../devices/pci0000:00/0000:00:1f.6/net/eno1") == "bond-slave"
    assert nic_kind("veth1a2b", iftype="1", bonds=bonds, master="cni0",
                    device_path="../../devices/virtual/net/veth1a2b") == "virtual"
    assert nic_kind("eno2", iftype="1", bonds=bonds, master="br0",
                    device_path="../../devices/pci0000:00/0000:00:1f.7/net/eno2") == "physical"


# ---------------------------------------------------------------------------------------------
# The collector on the fixture trees
# ---------------------------------------------------------------------------------------------


def test_first_collect_on_the_basic_tree() -> None:
    s = collector(BASIC).collect()
    assert (s.hostname, s.os, s.kernel, s.arch) == ("vm", "Debian GNU/Linux 12 (bookworm)", "6.18.44-fc-v657", "x86_64")
    assert (s.cpu_model, s.cpu_count, s.cpu_physical, s.cpu_mhz) == ("AMD EPYC", 2, 2, 2596.12)
    assert (s.boot_ts, s.uptime_s) == (1795355132.0, 575.45)
    assert (s.load1, s.load5, s.load15) == (0.63, 0.40, 0.20)
    assert s.cpu == CpuTimes()  # first sample: every rate unknown, none 0
    assert s.mem is not None and s.mem.used_bytes == (24684092 - 24268148) * 1024
    assert s.disks == [DiskIO(name="vda", in_flight=0)]  # loops and the unused zram0 are left out
    # mountpoints of another machine: listed, usage unknown (no statvfs of the running machine's "/")
    assert s.filesystems == [Filesystem(mountpoint="/", device="/dev/vda", fstype="ext4"),
                             Filesystem(mountpoint="/dev/shm", device="tmpfs", fstype="tmpfs")]
    zero = dict(rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0)
    assert s.nics == [
        Nic(name="eth0", up=True, mtu=1400, kind="physical", speed_mbps=None, **zero),  # virtio says -1
        Nic(name="ifb0", up=False, mtu=1500, kind="virtual", **zero),
        Nic(name="ifb1", up=False, mtu=1500, kind="virtual", **zero),
        Nic(name="lo", up=True, mtu=65536, kind="loopback", **zero),
    ]
    # top by RSS only (no CPU rates yet); kthreadd has no RSS
    assert s.procs == [
        Proc(pid=19137, user="root", name="python3",
             cmdline="/root/.pyenv/versions/3.11.7/bin/python3 /tmp/ctfix/celery -A proj worker --loglevel=INFO "
                     "-n w1@vm --concurrency=2",
             start_ts=1795355702.27, start_ticks=57027, uid=0, rss_bytes=13704 * 1024, state="S", threads=1,
             owner=Owner(kind="celery", name="w1@vm")),
        Proc(pid=19145, user="nobody", name="clustertop-fixture-sleeper",  # comm is "clustertop-fixt"
             cmdline="/tmp/ctfix/clustertop-fixture-sleeper 900", start_ts=1795355702.28, start_ticks=57028,
             uid=65534, rss_bytes=1796 * 1024, state="S", threads=1, owner=Owner(kind="user")),
    ]
    assert s.procs_total == 3


def test_collect_is_deterministic_on_a_tree() -> None:
    # The golden end-to-end test of `clustertop agent --once --dry-run` relies on this.
    a = msgspec.json.encode(collector(BASIC).collect())
    b = msgspec.json.encode(collector(BASIC).collect())
    assert a == b


def test_rates_over_two_samples(tree: Path) -> None:
    c = collector(tree, procs_interval=2)  # the samples are 2.00 s apart: the walk is due again
    first = c.collect()
    assert first.cpu == CpuTimes()
    second_sample(tree)
    s = c.collect()
    assert s.uptime_s == 577.45
    assert s.cpu == CpuTimes(util_pct=75.0, per_cpu_pct=[95.0, 55.0], user_pct=50.0, system_pct=23.0,
                             iowait_pct=5.0, steal_pct=2.0)
    assert s.disks == [
        # loop0 did I/O during the interval: 80 sectors in 2 s
        DiskIO(name="loop0", read_bytes_s=20480.0, write_bytes_s=0.0, read_iops=5.0, write_iops=0.0,
               util_pct=0.5, await_ms=0.5, queue_depth=0.0, in_flight=0),
        DiskIO(name="vda", read_bytes_s=1048576.0, write_bytes_s=524288.0, read_iops=100.0, write_iops=50.0,
               util_pct=25.0, await_ms=3.0, queue_depth=0.9, in_flight=3),
    ]
    assert s.nics is not None
    eth0 = s.nics[0]
    assert (eth0.name, eth0.rx_bytes_s, eth0.tx_bytes_s, eth0.rx_packets_s, eth0.tx_packets_s, eth0.rx_errors) == (
        "eth0", 1_000_000.0, 200_000.0, 750.0, 400.0, 2)
    assert all(n.rx_bytes_s == 0.0 for n in s.nics[1:])  # measured idle: 0, not unknown
    assert s.procs is not None
    cpu = {p.pid: p.cpu_pct for p in s.procs}
    assert cpu == {19137: 100.0, 2: 1.0, 19145: 0.0}  # kthreadd now in, by CPU
    assert s.procs[0].pid == 19137


def test_idle_disk_has_no_await(tree: Path) -> None:
    c = collector(tree)
    c.collect()
    (tree / "proc/uptime").write_text("576.45 992.00\n")  # one second, no counter moved
    s = c.collect()
    assert s.disks is not None
    vda = s.disks[0]
    assert (vda.read_bytes_s, vda.util_pct, vda.queue_depth) == (0.0, 0.0, 0.0)
    assert vda.await_ms is None  # no request completed: there is no average time per request


def test_counter_going_backwards_gives_unknown_not_negative(tree: Path) -> None:
    c = collector(tree)
    c.collect()
    second_sample(tree)
    net = (tree / "proc/net/dev").read_text().replace("eth0:169410809", "eth0:     100")
    (tree / "proc/net/dev").write_text(net)  # a 32-bit counter wrapped, or the NIC was re-created
    s = c.collect()
    assert s.nics is not None and s.nics[0].name == "eth0"
    assert s.nics[0].rx_bytes_s is None
    assert s.nics[0].tx_bytes_s == 200_000.0


def test_reused_pid_and_vanished_pid(tree: Path) -> None:
    c = collector(tree, procs_interval=0)
    c.collect()
    assert set(c._pid_ticks) == {2, 19137, 19145}
    second_sample(tree)
    # pid 19137 now belongs to a new process (other start time): no delta against the old one
    stat = (tree / "proc/19137/stat").read_text().replace(" 57027 ", " 57100 ")
    (tree / "proc/19137/stat").write_text(stat)
    shutil.rmtree(tree / "proc/19145")  # exited
    s = c.collect()
    assert s.procs is not None
    by_pid = {p.pid: p for p in s.procs}
    assert by_pid[19137].cpu_pct is None
    assert by_pid[19137].start_ts == 1795355703.0
    assert 19145 not in by_pid
    assert s.procs_total == 2
    assert set(c._pid_ticks) == {2, 19137}  # forgotten: no growth over hours of pid churn


def test_arm_boards_and_nothing_read_from_the_running_machine() -> None:
    rpi = collector(HOST / "arm-rpi4").collect()
    assert rpi.cpu_model == "Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)"
    assert (rpi.cpu_count, rpi.cpu_physical) == (4, None)
    rk = collector(HOST / "arm-rk3588").collect()
    assert rk.cpu_model == "Cortex-A55 + Cortex-A76 (Orange Pi 5)"  # board from the device tree
    assert (rk.cpu_count, rk.cpu_physical) == (8, 8)  # physical cores from sysfs topology
    # These trees hold only cpuinfo: everything else must be unknown, not this machine's values
    # (os.getloadavg, platform.uname, /etc/os-release, the live process list).
    for s in (rpi, rk):
        assert (s.hostname, s.os, s.kernel, s.arch, s.load1, s.uptime_s, s.boot_ts) == (None,) * 7
        assert (s.mem, s.cpu, s.disks, s.filesystems, s.nics) == (None,) * 5
        assert s.procs == [] and s.procs_total == 0


def test_missing_everything_gives_none_not_a_crash(tmp_path: Path) -> None:
    c = HostCollector(Context(node="t", roots=Roots(proc=str(tmp_path / "nope"), sys=str(tmp_path / "nosys"))))
    for _ in range(2):
        s = c.collect()
        assert s == System()


def test_bond_tree(tmp_path: Path) -> None:
    # A sysfs layout as the bonding driver makes it: bond0 virtual, its slaves physical with a master link.
    sys_net = tmp_path / "sys/class/net"
    virt = tmp_path / "sys/devices/virtual/net"
    pci = tmp_path / "sys/devices/pci0000:00/0000:00:1c.0/0000:03:00.0/net"
    sys_net.mkdir(parents=True)
    (sys_net / "bonding_masters").write_text("bond0\n")
    for name, base in (("bond0", virt), ("enp3s0f0", pci), ("enp3s0f1", pci), ("docker0", virt)):
        d = base / name
        d.mkdir(parents=True)
        (d / "operstate").write_text("up\n" if name != "enp3s0f1" else "down\n")
        (d / "mtu").write_text("9000\n")
        (d / "type").write_text("1\n")
        if name.startswith("enp3s0") and name.endswith("0"):
            (d / "speed").write_text("1000\n")
        (sys_net / name).symlink_to(os.path.relpath(d, sys_net))
    for slave in ("enp3s0f0", "enp3s0f1"):
        (pci / slave / "master").symlink_to("../../../../../virtual/net/bond0")
    (tmp_path / "proc/net").mkdir(parents=True)
    zeros = " ".join(["0"] * 16)
    (tmp_path / "proc/net/dev").write_text("h1\nh2\n" + "".join(f"{n}: {zeros}\n" for n in (
        "bond0", "enp3s0f0", "enp3s0f1", "docker0")))
    s = collector(tmp_path).collect()
    assert s.nics is not None
    got = {n.name: (n.kind, n.speed_mbps, n.up, n.mtu) for n in s.nics}
    assert got == {"enp3s0f0": ("bond-slave", 1000, True, 9000), "enp3s0f1": ("bond-slave", None, False, 9000),
                   "bond0": ("bond", None, True, 9000), "docker0": ("virtual", None, True, 9000)}
    assert [n.name for n in s.nics] == ["bond0", "enp3s0f0", "enp3s0f1", "docker0"]


def test_nic_facts_are_reread_when_a_link_changes_and_every_few_seconds(tmp_path: Path) -> None:
    """Kind, speed and MTU are read once per STATIC_EVERY_S (they seldom change), link state every
    tick; a link that goes up or down has its speed read again at once."""
    from clustertop.collectors.host import STATIC_EVERY_S

    d = tmp_path / "sys/devices/pci0000:00/0000:00:1c.0/0000:03:00.0/net/eth0"
    d.mkdir(parents=True)
    (tmp_path / "sys/class/net").mkdir(parents=True)
    (tmp_path / "sys/class/net/eth0").symlink_to(os.path.relpath(d, tmp_path / "sys/class/net"))
    for f, v in (("operstate", "up"), ("mtu", "1500"), ("type", "1"), ("speed", "1000")):
        (d / f).write_text(v + "\n")
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/net/dev").write_text("h1\nh2\neth0: " + " ".join(["0"] * 16) + "\n")

    def tick(uptime: float) -> tuple[object, ...]:
        (tmp_path / "proc/uptime").write_text(f"{uptime:.2f} 0.00\n")
        nics = c.collect().nics
        assert nics is not None
        return (nics[0].kind, nics[0].speed_mbps, nics[0].up, nics[0].mtu)

    c = collector(tmp_path)
    assert tick(100) == ("physical", 1000, True, 1500)
    (d / "mtu").write_text("9000\n")
    assert tick(101) == ("physical", 1000, True, 1500)  # not re-read within the period ...
    assert tick(100 + STATIC_EVERY_S) == ("physical", 1000, True, 9000)  # ... but after it
    (d / "operstate").write_text("down\n")
    (d / "speed").unlink()  # what the kernel does: EINVAL for the speed of a down link
    assert tick(100 + STATIC_EVERY_S + 1) == ("physical", None, False, 9000)  # at once


def test_rootfs_option_measures_the_tree(tmp_path: Path) -> None:
    # An agent in a container reads the host's /proc and finds the host's "/" at `rootfs`.
    (tmp_path / "dev/shm").mkdir(parents=True)
    s = collector(BASIC, rootfs=str(tmp_path)).collect()
    assert s.filesystems is not None
    root = s.filesystems[0]
    st = os.statvfs(tmp_path)
    assert root.mountpoint == "/" and root.total_bytes == st.f_blocks * st.f_frsize
    assert root.used_bytes is not None and 0 < root.used_bytes <= root.total_bytes


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"\[collectors.host\] rootfss"):
        collector(BASIC, rootfss="/host")
    with pytest.raises(ConfigError, match="expected str"):
        collector(BASIC, rootfs=1)


# ---------------------------------------------------------------------------------------------
# The live machine
# ---------------------------------------------------------------------------------------------


def test_live_machine_sanity() -> None:
    c = HostCollector(Context(node="t"))
    first = c.collect()
    assert first.cpu_count == os.cpu_count()
    assert first.cpu_physical == psutil.cpu_count(logical=False)
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    assert first.mem is not None and first.mem.total_bytes == total_kb * 1024
    assert first.boot_ts == psutil.boot_time()
    assert first.hostname == os.uname().nodename
    assert first.cpu == CpuTimes()
    assert first.procs_total is not None and first.procs_total > 1
    assert first.filesystems and any(fs.mountpoint == "/" and (fs.total_bytes or 0) > 0 for fs in first.filesystems)
    lo = next(n for n in first.nics or () if n.name == "lo")
    assert lo.kind == "loopback" and lo.speed_mbps is None  # reading lo/speed raises EINVAL
    sum(i * i for i in range(300_000))  # let some CPU time pass between the samples
    second = c.collect()
    if second.cpu and second.cpu.util_pct is not None:  # None only if no tick elapsed in between
        assert 0.0 <= second.cpu.util_pct <= 100.0
        assert second.cpu.per_cpu_pct is not None and len(second.cpu.per_cpu_pct) == os.cpu_count()
    assert second.procs is not None and 0 < len(second.procs) <= 20
    assert all(p.start_ts is not None and p.start_ts >= psutil.boot_time() for p in second.procs)
    # The exact identity a kill is bound to, as an independent reader sees it (processes still alive).
    checked = 0
    for p in second.procs:
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                ticks = int(f.read().rpartition(")")[2].split()[19])
            uid = psutil.Process(p.pid).uids().real
        except (OSError, psutil.NoSuchProcess):
            continue
        assert (p.start_ticks, p.uid) == (ticks, uid), p
        checked += 1
    assert checked > 0
    # the wire round trip of a real snapshot
    assert msgspec.json.decode(msgspec.json.encode(second), type=System) == second


def test_process_walk_runs_every_procs_interval(tree: Path) -> None:
    c = collector(tree)  # default: every 5 s; the fixture's second sample is 2.00 s later
    first = c.collect()
    second_sample(tree)
    shutil.rmtree(tree / "proc/19145")  # exited, but the walk is not due: the last list stands
    s = c.collect()
    assert s.procs == first.procs and s.procs_total == first.procs_total
    assert s.cpu is not None and s.cpu.util_pct == 75.0  # everything else is fresh every call
    with pytest.raises(ConfigError, match=r"procs_interval.*>= 0"):
        collector(tree, procs_interval=-1)
