"""MountTable: the mount table read again only when the kernel says it changed (real procfs, real mounts).

The mounts are made in a private mount namespace (``unshare -m``, a child process), so the test machine's own
table is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clustertop.collectors.kept import pseudo_roots
from clustertop.collectors.mounttable import MountTable

IN_NAMESPACE = textwrap.dedent("""
    import json, os, subprocess, sys
    from clustertop.collectors.mounttable import MountTable
    where = sys.argv[1]
    t = MountTable("/proc/self/mounts", True)
    out = {}
    first = t.text()
    t.text(); t.text()
    out["unchanged"] = [t.reads, where in first]
    subprocess.run(["mount", "-t", "tmpfs", "ct-test", where], check=True)
    seen = t.text()
    again = t.text()
    out["mounted"] = [t.reads, where in seen, again is seen]
    subprocess.run(["umount", where], check=True)
    gone = t.text()
    out["unmounted"] = [t.reads, where in gone]
    t.close()
    out["closed"] = t.text() is not None and t.reads
    print(json.dumps(out))
""")


def test_live_table_is_read_again_only_after_a_mount_or_unmount(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    where = tmp_path / "mnt"
    where.mkdir()
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", IN_NAMESPACE, str(where)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["unchanged"] == [1, False]  # three asks, one read
    assert out["mounted"] == [2, True, True]  # the mount is seen at the next ask; the ask after it reads nothing
    assert out["unmounted"] == [3, False]
    assert out["closed"] == 4  # closed: the next ask opens and reads afresh


def test_table_outside_procfs_is_read_every_time(tmp_path: Path) -> None:
    # A fixture tree's file is a regular file: it never reports POLLPRI, so nothing is kept.
    f = tmp_path / "mounts"
    f.write_text("proc /proc proc rw 0 0\n")
    assert pseudo_roots(str(tmp_path), str(tmp_path), str(f)) == (False, False)
    t = MountTable(str(f), False)
    assert t.text() == "proc /proc proc rw 0 0\n"
    f.write_text("proc /proc proc rw 0 0\nserver:/x /data nfs4 rw 0 0\n")
    assert "/data" in (t.text() or "")
    assert t.reads == 2


def test_unreadable_table_is_none(tmp_path: Path) -> None:
    assert MountTable(str(tmp_path / "absent"), True).text() is None
    assert MountTable(str(tmp_path / "absent"), False).text() is None
