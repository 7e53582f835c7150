"""The host collector's incremental process walk (issue 18, the agent's CPU per tick).

Every walk reads each pid's stat line (CPU ticks and RSS rank it) and each shown process's status (exact RSS,
real uid); name, command line and owner are read once per process (pid, start ticks, comm) and again after
``IDENTITY_REFRESH_S``. On the live procfs the walk's files stay open between walks, at most ``MAX_KEPT_PIDS``.
On the captured fixture tree (tests/fixtures/host/README.md) and on the real /proc, with real child processes;
the pid-reuse case on the real kernel runs in a new pid namespace (``unshare``, root), where the next pid can be
chosen (``ns_last_pid``), as CRIU does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clustertop.collectors import host as host_mod
from clustertop.collectors.base import Context, Roots
from clustertop.collectors.host import HostCollector
from clustertop.wire.schema import Proc, System
from tests.conftest import FIXTURES

BASIC = FIXTURES / "host" / "basic"
SECOND = FIXTURES / "host" / "basic-second"
UPTIME = 575.45  # basic/proc/uptime


def collector(tree: Path | None = None, **config: object) -> HostCollector:
    roots = Roots() if tree is None else Roots(proc=str(tree / "proc"), sys=str(tree / "sys"))
    return HostCollector(Context(node="t", roots=roots, config={"procs_interval": 0, **config}))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "tree"
    shutil.copytree(BASIC, dst, symlinks=True)
    return dst


def set_uptime(tree: Path, s: float) -> None:
    (tree / "proc/uptime").write_text(f"{s:.2f} 992.00\n")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def by_pid(s: System) -> dict[int, Proc]:
    assert s.procs is not None
    return {p.pid: p for p in s.procs}


def test_known_process_reads_only_what_changes(tree: Path) -> None:
    c = collector(tree)
    first = by_pid(c.collect())[19137]
    assert first.cmdline is not None and "/tmp/ctfix/celery -A proj worker" in first.cmdline
    assert first.owner is not None and first.owner.kind == "celery"
    assert first.rss_bytes == 13704 * 1024
    # The same process (pid, start ticks, comm) 2 s later: its argv and cgroup files now say something else,
    # its status a bigger RSS. Only what changes is read: CPU (stat) and RSS (status) move, the rest is kept.
    shutil.copytree(SECOND, tree, dirs_exist_ok=True)
    (tree / "proc/19137/cmdline").write_bytes(b"python3\0/srv/other.py\0")
    (tree / "proc/19137/cgroup").write_text("0::/system.slice/other.service\n")
    edit(tree / "proc/19137/status", "VmRSS:\t   13704 kB", "VmRSS:\t   20000 kB")
    second = by_pid(c.collect())[19137]
    assert (second.cpu_pct, second.rss_bytes) == (100.0, 20000 * 1024)
    assert (second.cmdline, second.owner, second.name, second.start_ticks) == (
        first.cmdline, first.owner, first.name, first.start_ticks)
    # After IDENTITY_REFRESH_S the same process is read again (a title rewritten in place is seen that late)
    set_uptime(tree, UPTIME + 2 + host_mod.IDENTITY_REFRESH_S)
    third = by_pid(c.collect())[19137]
    assert third.cmdline == "python3 /srv/other.py"
    assert third.owner != first.owner


def test_reused_pid_and_exec_are_read_in_full(tree: Path) -> None:
    c = collector(tree)
    c.collect()
    set_uptime(tree, UPTIME + 2)
    # pid 19137 now belongs to another process (another start time), same comm
    edit(tree / "proc/19137/stat", " 57027 ", " 57100 ")
    (tree / "proc/19137/cmdline").write_bytes(b"python3\0/srv/new.py\0")
    s = by_pid(c.collect())
    assert s[19137].cmdline == "python3 /srv/new.py"
    assert s[19137].start_ticks == 57100
    assert s[19137].cpu_pct is None  # no delta against the old process's ticks
    # exec keeps pid and start time but changes comm: read in full too
    set_uptime(tree, UPTIME + 4)
    edit(tree / "proc/19137/stat", "(python3)", "(celery)")
    (tree / "proc/19137/cmdline").write_bytes(b"celery\0-A\0proj\0worker\0")
    p = by_pid(c.collect())[19137]
    assert (p.name, p.cmdline) == ("celery", "celery -A proj worker")


def test_gone_pid_disappears_and_is_forgotten(tree: Path) -> None:
    c = collector(tree)
    first = c.collect()
    assert set(by_pid(first)) == {19137, 19145} and first.procs_total == 3  # kthreadd: no RSS, no CPU yet
    assert {k[0] for k in c._idents} == {19137, 19145}
    shutil.copytree(SECOND, tree, dirs_exist_ok=True)
    shutil.rmtree(tree / "proc/19145")
    s = c.collect()
    assert set(by_pid(s)) == {2, 19137} and s.procs_total == 2  # kthreadd in by CPU now
    assert {k[0] for k in c._idents} == {19137}  # kthreadd has no argv: nothing remembered of it
    assert len(c._pid_files) == 0  # a fixture tree is read by open, never kept open


# ---------------------------------------------------------------------------------------------
# The real /proc
# ---------------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""\
    # ct-walk-child
    import sys
    held = []
    for line in sys.stdin:  # each line: 64 MiB more, touched (bytes filled with "x")
        held.append(b"x" * (64 << 20))
        print(len(held), flush=True)
""")


def vmrss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_real_child_appears_changes_and_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_mod, "TOP_N", 100_000)  # every process shown: this test is not about ranking
    c = collector()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        first = by_pid(c.collect())[child.pid]
        assert first.cmdline is not None and "-c # ct-walk-child import sys" in first.cmdline
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        assert first.start_ticks == int(stat[stat.rfind(")") + 2:].split()[19])
        assert (first.uid, first.user) == (os.getuid(), c._user(os.getuid()))
        assert f"/proc/{child.pid}/stat" in c._pid_files._fds  # kept open for the next walk
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("grow\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "1"
        second = by_pid(c.collect())[child.pid]
        assert second.rss_bytes is not None and first.rss_bytes is not None
        assert second.rss_bytes >= first.rss_bytes + (60 << 20)
        assert abs(second.rss_bytes - vmrss(child.pid)) < (4 << 20)
        assert (second.cmdline, second.start_ticks) == (first.cmdline, first.start_ticks)
        child.stdin.close()
        child.wait(10)
        s = c.collect()
        assert child.pid not in by_pid(s)
        assert not any(p.startswith(f"/proc/{child.pid}/") for p in c._pid_files._fds)  # closed
        assert not any(k[0] == child.pid for k in c._idents)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        c.close()
    assert len(c._pid_files) == 0


def test_kept_descriptors_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_mod, "MAX_KEPT_PIDS", 5)
    c = collector()
    try:
        fds_before = len(os.listdir("/proc/self/fd"))
        s = c.collect()
        assert s.procs_total is not None and s.procs_total > 5
        assert len(c._pid_files) == 5
        # the rest was opened and closed per read (the host collector's own per-tick files are kept apart, and
        # the mount table's one descriptor: collectors/mounttable.py)
        assert len(os.listdir("/proc/self/fd")) - fds_before <= 5 + len(c._files) + 1
        again = c.collect()
        assert again.procs_total is not None and abs(again.procs_total - s.procs_total) < 20
    finally:
        c.close()


REUSE = textwrap.dedent("""
    import json, subprocess, sys, time
    from clustertop.collectors import host
    from clustertop.collectors.base import Context, Roots
    host.TOP_N = 100_000
    c = host.HostCollector(Context(node="t", roots=Roots(), config={"procs_interval": 0}))
    def seen(pid):
        p = {q.pid: q for q in c.collect().procs}.get(pid)
        return None if p is None else [p.cmdline, p.start_ticks, p.cpu_pct]
    a = subprocess.Popen(["sleep", "1001"])
    first = seen(a.pid)
    kept = f"/proc/{a.pid}/stat" in c._pid_files._fds
    a.kill(); a.wait()
    time.sleep(0.05)  # start ticks are 10 ms: the next process must start in a later one
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(a.pid - 1))
    b = subprocess.Popen(["sleep", "1002"])
    second = seen(b.pid)
    b.kill(); b.wait()
    print(json.dumps({"a": a.pid, "b": b.pid, "first": first, "second": second, "kept": kept}))
""")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a new pid namespace (unshare, root) is what makes a pid reuse certain")
def test_real_pid_reuse_reads_the_new_process() -> None:
    """A kept stat descriptor of a process that exited answers ESRCH even once its pid is reused: the walk
    opens the path afresh, and the new process (same pid and comm, other start ticks) is read in full."""
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", REUSE],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["a"] == out["b"]  # the same pid, reused
    assert out["kept"]
    assert out["first"][0] == "sleep 1001"
    assert out["second"][0] == "sleep 1002"
    assert out["second"][1] > out["first"][1]
    assert out["second"][2] is None  # no CPU % against the old process's ticks


def test_walk_output_same_as_a_fresh_collector_on_the_real_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the incremental walk shows of stable processes is what a collector that knows nothing reads."""
    c = collector()
    try:
        c.collect()
        time.sleep(0.05)
        warm = by_pid(c.collect())
        other = collector()
        fresh = by_pid(other.collect())
        other.close()
        stable = [pid for pid in warm if pid in fresh and warm[pid].start_ticks == fresh[pid].start_ticks]
        assert stable

        def shown(p: Proc) -> tuple[object, ...]:
            return (p.name, p.cmdline, p.owner, p.uid, p.user, p.start_ticks)

        differ = [pid for pid in stable if shown(warm[pid]) != shown(fresh[pid])]
        # (a process of this shared machine may exec or set its title between the two reads: one, not more)
        assert len(differ) <= 1, [(shown(warm[pid]), shown(fresh[pid])) for pid in differ]
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# The per-tick parsers trimmed with it
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [BASIC / "proc/meminfo", Path("/proc/meminfo")])
def test_memory_from_the_fields_it_reads_is_memory_from_all(path: Path) -> None:
    from clustertop.collectors import procfs

    text = path.read_text()
    only = procfs.parse_meminfo(text, host_mod.MEMINFO_FIELDS)
    assert set(only) == set(host_mod.MEMINFO_FIELDS)  # every one is in a 3.14+ kernel's meminfo
    assert host_mod.memory(only) == host_mod.memory(procfs.parse_meminfo(text))


def test_a_file_read_without_keeping_leaves_nothing_behind(tmp_path: Path) -> None:
    """KeptFiles past its limit (or on a fixture tree) opens per read: a big file is read whole, and nothing of it
    (descriptor, remembered size) stays, so per-pid paths read once cannot pile up."""
    from clustertop.collectors.kept import FIRST_SIZE, KeptFiles

    big = tmp_path / "big"
    big.write_bytes(b"x" * (3 * FIRST_SIZE + 5))
    kept = KeptFiles((), limit=0)
    assert kept.read_bytes(str(big)) == big.read_bytes()
    assert kept.read_bytes(str(tmp_path / "absent")) is None
    assert (len(kept), kept._size) == (0, {})


def test_kept_descriptors_closed_when_the_collector_is_dropped_unclosed() -> None:
    import gc

    def target(fd: int) -> str | None:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None

    c = collector()
    c.collect()
    kept = {fd: path for path, fd in c._pid_files._fds.items()}
    assert kept and all(target(fd) == os.path.realpath(path) for fd, path in kept.items())
    del c
    gc.collect()
    assert [fd for fd, path in kept.items() if target(fd) == os.path.realpath(path)] == []


def test_carrier_read_only_when_operstate_does_not_say(tree: Path) -> None:
    c = collector(tree)
    paths: list[str] = []
    read = c._files.read

    def spy(path: str) -> str | None:
        paths.append(path)
        return read(path)

    c._files.read = spy  # type: ignore[method-assign]
    s = c.collect()
    carriers = sorted(Path(p).parent.name for p in paths if p.endswith("/carrier"))
    assert carriers == ["lo"]  # lo says "unknown"; eth0 "up", ifb0/ifb1 "down" decide by themselves
    assert s.nics is not None and {n.name: n.up for n in s.nics} == {"eth0": True, "lo": True, "ifb0": False,
                                                                      "ifb1": False}
