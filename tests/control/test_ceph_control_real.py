"""``clustertop ceph ...`` (clustertop.control.ceph over the ceph-mgr REST API) against a REAL Ceph 16 cluster
(tests/support/ceph_cluster.py), run as real subprocesses, audited into a real redis-server.

The golden-image workflow end to end: an image with known bytes, a snapshot, protect, clone, the clone
read back as its own image with its parent shown by the collector, unprotect refused while the clone
uses the snapshot (Ceph's own words), flatten (the parent goes, the bytes stay), unprotect and delete.
Then noout/norebalance set (health shows OSDMAP_FLAGS) and unset (cleared), and an OSD marked out and
in. One test on purpose: the steps follow each other on one cluster. Every step is checked through the
collector (what the dashboard will show) or the ``rbd`` CLI, never through the client under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clustertop import wire
from clustertop.collectors.base import Context
from clustertop.collectors.ceph import CephCollector
from clustertop.control import signing, trust
from clustertop.wire import schema
from tests.conftest import ROOT
from tests.support.ceph_cluster import CephMini, ceph_cluster  # noqa: F401 - the session fixture

pytestmark = pytest.mark.slow

GOLDEN, SNAP, CLONE = "rbd/jgold", "v1", "rbd/jclone"


def ct(cl: CephMini, *argv: str, extra: list[str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    env = {**base, "CLUSTERTOP_CEPH_URL": cl.url, "CLUSTERTOP_CEPH_USER": cl.username,
           "CLUSTERTOP_CEPH_PASSWORD_FILE": str(cl.password_file)}
    return subprocess.run([sys.executable, "-m", "clustertop", "ceph", *argv, *extra], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


def until(col: CephCollector, ok: Callable[[schema.Ceph], bool], what: str, limit_s: float = 60) -> schema.Ceph:
    """collect() until ``ok`` holds: the mgr's health and image lists follow a change within a few s."""
    end = time.monotonic() + limit_s
    while True:
        c = col.collect()
        if ok(c):
            return c
        if time.monotonic() >= end:
            raise AssertionError(f"{what}: not seen in {limit_s} s; checks={[k.code for k in c.checks or ()]} "
                                 f"images={[(i.name, i.parent) for i in c.images or ()]}")
        time.sleep(1.0)


def image(c: schema.Ceph, spec: str) -> schema.RbdImage | None:
    return next((i for i in c.images or () if f"{i.pool}/{i.name}" == spec), None)


def flagged(c: schema.Ceph) -> str:
    """The OSDMAP_FLAGS check's text ("noout flag(s) set"), or "" when the check is absent."""
    return next((str(k.message) for k in c.checks or () if k.code == "OSDMAP_FLAGS"), "")


def test_golden_image_clone_flatten_noout_and_osd_out_in(ceph_cluster: CephMini, redis_server: Any,  # noqa: F811
                                                          tmp_path: Path) -> None:
    cl = ceph_cluster
    # The session's cluster may come from a test that stopped and restarted the mgr: wait for its dashboard.
    cl.wait_for("dashboard HTTP", lambda: cl._dashboard_up())
    key_path, pub_path, _ = signing.generate(str(tmp_path), "alice")
    audited = ["--yes", "--redis", redis_server.url, "--key", key_path]
    col = CephCollector(Context(node="t", config={"urls": [cl.url], "username": cl.username,
                                                  "password_file": str(cl.password_file), "detail_interval": 0,
                                                  "request_timeout": 10}, config_file=str(tmp_path / "agent.toml"),
                                interval_s=1.0))
    golden_bytes = os.urandom(3 * 1024 * 1024 + 17)  # not a multiple of the object size: the tail matters too
    (tmp_path / "golden.img").write_bytes(golden_bytes)
    cl.run("rbd", "import", str(tmp_path / "golden.img"), GOLDEN, timeout=60)
    try:
        def ok(*argv: str) -> str:
            r = ct(cl, *argv, extra=audited)
            assert r.returncode == 0, (argv, r.stdout, r.stderr)
            return r.stdout

        assert f"created snapshot {GOLDEN}@{SNAP}" in ok("snap", "create", f"{GOLDEN}@{SNAP}")
        assert f"protected snapshot {GOLDEN}@{SNAP}" in ok("snap", "protect", f"{GOLDEN}@{SNAP}")
        assert f"cloned {GOLDEN}@{SNAP} into {CLONE}" in ok("clone", f"{GOLDEN}@{SNAP}", CLONE)

        # The clone is its own image, with the golden snapshot as its parent, and reads the golden bytes.
        c = until(col, lambda c: image(c, CLONE) is not None, "the clone in the image list")
        clone, gold = image(c, CLONE), image(c, GOLDEN)
        assert clone is not None and gold is not None
        assert clone.parent == f"{GOLDEN}@{SNAP}"
        [snap] = gold.snapshots or []
        assert (snap.name, snap.protected, snap.children) == (SNAP, True, [CLONE])
        cl.run("rbd", "export", CLONE, str(tmp_path / "clone.img"), timeout=60)
        assert (tmp_path / "clone.img").read_bytes() == golden_bytes

        # Refusal: Ceph will not unprotect a snapshot a clone still depends on; its words reach the operator.
        r = ct(cl, "snap", "unprotect", f"{GOLDEN}@{SNAP}", extra=audited)
        assert r.returncode == 1 and "refused by Ceph (HTTP 400)" in r.stderr and "busy" in r.stderr, r.stderr
        assert image(col.collect(), GOLDEN).snapshots[0].protected is True  # type: ignore[union-attr,index]

        # Flatten: the clone stands alone (no parent) and keeps its bytes; then the snapshot can go.
        assert f"flattened {CLONE}" in ok("flatten", CLONE)
        c = until(col, lambda c: (i := image(c, CLONE)) is not None and i.parent is None, "the clone without parent")
        assert (image(c, GOLDEN).snapshots or [])[0].children in (None, [])  # type: ignore[union-attr]
        cl.run("rbd", "export", CLONE, str(tmp_path / "flat.img"), timeout=60)
        assert (tmp_path / "flat.img").read_bytes() == golden_bytes
        ok("snap", "unprotect", f"{GOLDEN}@{SNAP}")
        ok("snap", "rm", f"{GOLDEN}@{SNAP}")
        until(col, lambda c: not (image(c, GOLDEN) or schema.RbdImage(pool="", name="")).snapshots,
              "the golden image without snapshots")

        # Maintenance flags: set shows in health (OSDMAP_FLAGS), unset clears it.
        assert "cluster flags now" in ok("flag", "set", "noout") and "noout" in ok("flag", "set", "noout")
        c = until(col, lambda c: "noout" in flagged(c), "noout in OSDMAP_FLAGS")
        # A node's maintenance view: its OSDs (as the collector sees them) and the data they hold.
        host = (c.osds or [])[0].host
        assert host and all(o.host == host for o in c.osds or ())  # the test cluster is one machine
        r = ct(cl, "host", host, extra=["--read-only"])  # a read: allowed in read-only mode, not audited
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith(f"{host}: {cl.osds} OSDs, ") and "N/A" not in lines[0], r.stdout
        assert [ln.split()[0] for ln in lines[1:1 + cl.osds]] == [f"osd.{i}" for i in range(cl.osds)], r.stdout
        assert all("up/in" in ln and "of 1.0 GiB" in ln for ln in lines[1:1 + cl.osds]), r.stdout
        assert lines[-1].startswith("noout is set"), r.stdout
        r = ct(cl, "host", "no-such-node", extra=[])
        assert (r.returncode, r.stdout.strip()) == (0, "no-such-node: no OSDs (Ceph places none on a host of this "
                                                       "name)"), r.stdout
        ok("flag", "set", "norebalance")
        until(col, lambda c: "noout" in flagged(c) and "norebalance" in flagged(c), "both flags")
        ok("flag", "unset", "noout")
        ok("flag", "unset", "norebalance")
        until(col, lambda c: flagged(c) == "", "OSDMAP_FLAGS cleared")
        r = ct(cl, "host", host, extra=[])
        assert r.returncode == 0 and "before a drain or reboot: clustertop ceph flag set noout" in r.stdout, r.stdout

        # OSD out and back in (the collector's OSD list shows it); an OSD that does not exist is refused.
        victim = cl.osds - 1
        assert f"marked osd.{victim} out" in ok("osd", "out", f"osd.{victim}")
        until(col, lambda c: any(o.id == victim and o.in_ is False for o in c.osds or ()), "the OSD out")
        ok("osd", "in", str(victim))
        until(col, lambda c: any(o.id == victim and o.in_ is True for o in c.osds or ()), "the OSD in")
        r = ct(cl, "osd", "out", "99", extra=audited)
        assert r.returncode == 1 and "no osd.99" in r.stderr, r.stderr

        # The audit trail: every action, refusals included, chained and signed by alice's key.
        stream = wire.operator_audit_key("alice")
        rows = redis_server.client().xrange(stream)
        got = [(e.action, e.target, e.result == "ok", e.where)
               for e in (wire.decode(f[b"a"], schema.AuditEntry) for _id, f in rows)]
        assert got == [
            ("ceph.snap_create", f"{GOLDEN}@{SNAP}", True, "cli"),
            ("ceph.snap_protect", f"{GOLDEN}@{SNAP}", True, "cli"),
            ("ceph.clone", f"{GOLDEN}@{SNAP} -> {CLONE}", True, "cli"),
            ("ceph.snap_unprotect", f"{GOLDEN}@{SNAP}", False, "cli"),
            ("ceph.flatten", CLONE, True, "cli"),
            ("ceph.snap_unprotect", f"{GOLDEN}@{SNAP}", True, "cli"),
            ("ceph.snap_rm", f"{GOLDEN}@{SNAP}", True, "cli"),
            ("ceph.flag_set_noout", "noout", True, "cli"),
            ("ceph.flag_set_noout", "noout", True, "cli"),  # the second: "already set, nothing changed"
            ("ceph.flag_set_norebalance", "norebalance", True, "cli"),
            ("ceph.flag_unset_noout", "noout", True, "cli"),
            ("ceph.flag_unset_norebalance", "norebalance", True, "cli"),
            ("ceph.osd_out", f"osd.{victim}", True, "cli"),
            ("ceph.osd_in", f"osd.{victim}", True, "cli"),
            ("ceph.osd_out", "osd.99", False, "cli"),
        ]
        refused = wire.decode(rows[3][1][b"a"], schema.AuditEntry)
        assert "busy" in refused.result and refused.result.startswith("failed: ")
        pub = signing.load_public(pub_path)
        rep = trust.verify_stream(stream, rows, lambda e: pub if e.key_id == pub.key_id else None)
        assert rep.entries == len(got) and rep.problems == [], rep
    finally:
        # Leave the shared session cluster as we found it (test_ceph_real expects a clean, flag-free one).
        undo = [("ceph", "--connect-timeout", "10", "osd", "unset", "noout"),
                ("ceph", "--connect-timeout", "10", "osd", "unset", "norebalance"),
                ("ceph", "--connect-timeout", "10", "osd", "in", str(cl.osds - 1)),
                ("rbd", "snap", "unprotect", f"{GOLDEN}@{SNAP}"), ("rbd", "rm", CLONE),
                ("rbd", "snap", "purge", GOLDEN), ("rbd", "rm", GOLDEN)]
        for argv in undo:
            try:
                cl.run(*argv, timeout=60)
            except RuntimeError:  # already undone or gone: the test got that far
                pass
        col.close()
