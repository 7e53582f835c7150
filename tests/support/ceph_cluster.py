"""Provides a real, throw-away Ceph 16 cluster on loopback for tests: the session fixture ``ceph_cluster``.

1 mon, 1 mgr (dashboard only, unneeded mgr modules disabled), N memstore OSDs (data in memory), an
``rbd`` pool with image db-golden, protected snapshot @base and clone db-clone1, the dashboard on
plain HTTP with user ``admin``. Everything lives in a pytest tmp dir and binds 127.0.0.1 on a free
port range, so two runs (or two engineers) do not collide. Daemons run in the foreground in their
own session; the fixture holds their ``Popen`` objects, so it stops exactly what it started (no
pid files to go stale, no pid reuse) - always, even when a test fails. About 12 s to start.

Needs the Debian packages (the README's test command installs them):
    apt-get install -y ceph-mon ceph-mgr ceph-osd ceph-mgr-dashboard ceph-common
Without the binaries the fixture skips, saying so. Steps follow a recipe that worked on Ceph
16.2.15: set the dashboard options with ``--force`` before the mgr first runs (its module options
are unknown to the mon until then); HEALTH_OK can come before the mgr's PG statistics settle, so
callers wait for all PGs active+clean too.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL = "apt-get install -y ceph-mon ceph-mgr ceph-osd ceph-mgr-dashboard ceph-common"
BINARIES = ("ceph-mon", "ceph-mgr", "ceph-osd", "ceph", "ceph-authtool", "monmaptool", "rbd")
#: mgr modules the dashboard does not need: fewer threads, less memory, a faster start.
LEAN_DISABLED = ("diskprediction_local alerts influx insights iostat localpool mirroring nfs osd_support selftest "
                 "snap_schedule stats telegraf test_orchestrator zabbix prometheus restful")
PASSWORD = "Adm1n-p4ss!"  # must pass the dashboard's password policy (length, mixed classes)


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port_base(rng: random.Random | None = None) -> int:
    """A base with mon (+0, +1), dashboard (+80) and the daemons' range (+100..+199) all free."""
    rng = rng or random.Random()
    bases = list(range(20000, 60000, 200))
    rng.shuffle(bases)
    for b in bases[:50]:
        if all(_port_free(p) for p in (b, b + 1, b + 80, *range(b + 100, b + 200))):
            return b
    raise RuntimeError("no free port range for a test Ceph cluster")


class CephMini:
    def __init__(self, root: Path, osds: int = 2, port_base: int | None = None, timeout_s: float = 90.0) -> None:
        self.dir = root
        self.osds = osds
        self.pb = port_base if port_base is not None else pick_port_base()
        self.timeout_s = timeout_s
        self.conf = root / "ceph.conf"
        self.fsid = str(uuid.uuid4())
        self.url = f"http://127.0.0.1:{self.pb + 80}"
        self.username = "admin"
        self.password_file = root / "dashboard.pass"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cmds: dict[str, list[str]] = {}
        self.env = {**os.environ, "CEPH_CONF": str(self.conf)}

    # -- plumbing -------------------------------------------------------------------------------

    def run(self, *argv: str, stdin: str | None = None, timeout: float = 30.0) -> str:
        r = subprocess.run(list(argv), input=stdin.encode() if stdin is not None else None, env=self.env,
                           capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} -> {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
        return r.stdout.decode()

    def ceph(self, *args: str, stdin: str | None = None) -> str:
        return self.run("ceph", "--connect-timeout", "10", *args, stdin=stdin)

    def ceph_json(self, *args: str) -> Any:
        return json.loads(self.ceph(*args, "-f", "json"))

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float | None = None) -> None:
        end = time.monotonic() + (timeout or self.timeout_s)
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                if check():
                    return
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                last = e
            time.sleep(0.3)
        raise RuntimeError(f"timeout waiting for {what} (logs in {self.dir / 'log'}); last error: {last}")

    def spawn(self, name: str, argv: list[str]) -> None:
        """Start a daemon in the foreground (-f), in its own session, output to its log."""
        self.cmds[name] = argv
        with open(self.dir / "log" / f"{name}.stdout", "ab") as log:
            self.procs[name] = subprocess.Popen([*argv, "-f"], stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def start_daemon(self, name: str) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            return
        self.spawn(name, self.cmds[name])

    def stop_daemon(self, name: str, grace: float = 15.0) -> None:
        """SIGTERM (an OSD then tells the mon it is going down), SIGKILL after ``grace``."""
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def stop(self) -> None:
        # OSDs first (they tell the mon they are going down), then the mgr, then the mon.
        for kind in ("osd.", "mgr.", "mon."):
            for name in [n for n in self.procs if n.startswith(kind)]:
                self.stop_daemon(name, grace=5.0)

    # -- bootstrap ------------------------------------------------------------------------------

    def _write_conf(self) -> None:
        d, pb = self.dir, self.pb
        class_dirs = glob.glob("/usr/lib/*/rados-classes")  # cls_rbd & co: needed for RBD images
        class_dir = f"osd class dir = {class_dirs[0]}\n" if class_dirs else ""
        self.conf.write_text(f"""[global]
fsid = {self.fsid}
mon host = [v2:127.0.0.1:{pb},v1:127.0.0.1:{pb + 1}]
public addr = 127.0.0.1
public network = 127.0.0.1/32
cluster network = 127.0.0.1/32
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = {pb + 100}
ms bind port max = {pb + 199}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = {d}/keyring
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
crash dir = {d}/crash
exec dir = {d}/run
log to stderr = false
err to stderr = true
osd pool default size = {min(3, self.osds)}
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
mgr initial modules = dashboard

[mon]
mon data = {d}/$name
mon cluster log file = {d}/log/cluster.log

[mgr]
mgr data = {d}/$name
mgr disabled modules = {LEAN_DISABLED}
keyring = {d}/$name/keyring

[osd]
osd data = {d}/$name
keyring = {d}/$name/keyring
osd objectstore = memstore
memstore device bytes = 1073741824
osd memory target = 939524096
{class_dir}""")

    def start(self) -> None:
        d = self.dir
        for sub in ("log", "run", "crash", "mon.a", "mgr.x"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        conf, pb = str(self.conf), self.pb
        keyring = str(d / "keyring")
        self.run("ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *")
        self.run("ceph-authtool", keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *",
                 "--cap", "osd", "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *")
        self.run("monmaptool", "--create", "--fsid", self.fsid, "--addv", "a",
                 f"[v2:127.0.0.1:{pb},v1:127.0.0.1:{pb + 1}]", str(d / "monmap"))
        self.run("ceph-mon", "-c", conf, "--mkfs", "-i", "a", "--monmap", str(d / "monmap"), "--keyring", keyring)
        self.spawn("mon.a", ["ceph-mon", "-c", conf, "-i", "a"])
        self.wait_for("mon quorum", lambda: bool(self.ceph("-s")))

        for key, value in (("ssl", "false"), ("server_addr", "127.0.0.1"), ("server_port", str(pb + 80))):
            self.ceph("config", "set", "mgr", f"mgr/dashboard/{key}", value, "--force")
        self.ceph("auth", "get-or-create", "mgr.x", "mon", "allow profile mgr", "osd", "allow *", "mds", "allow *",
                  "-o", str(d / "mgr.x" / "keyring"))
        self.spawn("mgr.x", ["ceph-mgr", "-c", conf, "-i", "x"])

        for _ in range(self.osds):
            osd_uuid = str(uuid.uuid4())
            secret = self.run("ceph-authtool", "--gen-print-key").strip()
            osd_id = self.ceph("osd", "new", osd_uuid, "-i", "-", stdin=json.dumps({"cephx_secret": secret})).strip()
            (d / f"osd.{osd_id}").mkdir()
            self.run("ceph-authtool", "--create-keyring", str(d / f"osd.{osd_id}" / "keyring"), "--name",
                     f"osd.{osd_id}", "--add-key", secret)
            self.run("ceph-osd", "-c", conf, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, timeout=60)
            self.spawn(f"osd.{osd_id}", ["ceph-osd", "-c", conf, "-i", osd_id])
        self.wait_for("OSDs up", lambda: self.ceph_json("osd", "stat")["num_up_osds"] == self.osds)
        self.wait_for("mgr available", lambda: self.ceph_json("mgr", "stat")["available"] is True)

        self.password_file.write_text(PASSWORD)
        self.password_file.chmod(0o600)
        # The dashboard's CLI commands exist only once the module is loaded and serving.
        def create_user() -> bool:
            self.ceph("dashboard", "ac-user-create", self.username, "-i", str(self.password_file), "administrator")
            return True

        self.wait_for("dashboard user", create_user)

        # The "instant database clone" the team uses: golden image, protected snapshot, clone.
        self.ceph("osd", "pool", "create", "rbd", "8", "8")
        self.run("rbd", "pool", "init", "rbd")
        self.run("rbd", "create", "--size", "64M", "rbd/db-golden")
        self.run("rbd", "snap", "create", "rbd/db-golden@base")
        self.run("rbd", "snap", "protect", "rbd/db-golden@base")
        self.run("rbd", "clone", "rbd/db-golden@base", "rbd/db-clone1")
        self.wait_for("dashboard HTTP", lambda: self._dashboard_up())

    def start_standby_mgr(self, name: str = "y") -> str:
        """A second mgr; the active one stays active, so this one's dashboard is a standby (it
        answers 303 to the active one). Returns its URL. Its dashboard port is base+90."""
        port = self.pb + 90
        if not (self.dir / f"mgr.{name}").exists():
            (self.dir / f"mgr.{name}").mkdir()
            # Per-daemon module options (mgr/dashboard/<name>/...): two dashboards on one host.
            for key, value in (("server_addr", "127.0.0.1"), ("server_port", str(port))):
                self.ceph("config", "set", "mgr", f"mgr/dashboard/{name}/{key}", value, "--force")
            self.ceph("auth", "get-or-create", f"mgr.{name}", "mon", "allow profile mgr", "osd", "allow *", "mds",
                      "allow *", "-o", str(self.dir / f"mgr.{name}" / "keyring"))
            self.spawn(f"mgr.{name}", ["ceph-mgr", "-c", str(self.conf), "-i", name])
        else:
            self.start_daemon(f"mgr.{name}")
        url = f"http://127.0.0.1:{port}"
        self.wait_for(f"standby mgr.{name} dashboard", lambda: self._dashboard_up(url, (303,)))
        return url

    def _dashboard_up(self, url: str | None = None, codes: tuple[int, ...] = (200, 401)) -> bool:
        import httpx

        try:
            return httpx.get(f"{url or self.url}/api/health/minimal", timeout=2).status_code in codes
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="session")
def ceph_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephMini]:
    missing = missing_binaries()
    if missing:
        reason = f"Ceph binaries missing ({', '.join(missing)}): {INSTALL}"
        print(f"\nSKIP real-Ceph tests: {reason}")
        pytest.skip(reason)
    osds = int(os.environ.get("CEPH_MINI_OSDS", "2"))
    cluster = CephMini(tmp_path_factory.mktemp("ceph-mini"), osds=osds)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()  # always, even when start() or a test failed
