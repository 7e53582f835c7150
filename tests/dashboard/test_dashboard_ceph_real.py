"""The dashboard's Ceph keys against a REAL Ceph 16 cluster (tests/support/ceph_cluster.py, the session's):
`r` on the storage screen snapshots a golden image, protects the snapshot, clones it (the clone reads the
golden bytes, `rbd export`), flattens the clone, unprotects and deletes the snapshot; `o` on the node's screen
sets and unsets noout. Every step through the real dialogs, the operator's own mgr credentials ([ceph] as
the config gives it), the real mgr, and signed entries in the operator's audit stream on a real redis-server.
What the screen draws comes from the real collector, published to Redis each second as an agent holding the
Ceph lease does. One test on purpose: the steps follow each other on one cluster."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clustertop import wire
from clustertop.collectors.base import Context
from clustertop.collectors.ceph import CephCollector
from clustertop.control import signing, trust
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.storage import StorageScreen
from clustertop.dashboard.settings import CephAccess, Settings
from clustertop.wire import schema
from tests.dashboard.test_dashboard_ceph_ops import SEP, TIMINGS, confirm, pick, type_in
from tests.support import builders as b
from tests.support.ceph_cluster import CephMini, ceph_cluster  # noqa: F401 - the session fixture

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
GOLDEN, SNAP, CLONE = "rbd/dgold", "d1", "rbd/dclone"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Lease:
    """The agent holding the Ceph lease, in a thread: the real collector's answer, published each second."""

    def __init__(self, cl: CephMini, client: Any, tmp: Path) -> None:
        self.col = CephCollector(Context(node="t", config={"urls": [cl.url], "username": cl.username,
                                                           "password_file": str(cl.password_file),
                                                           "detail_interval": 0, "request_timeout": 10},
                                         config_file=str(tmp / "agent.toml"), interval_s=1.0))
        self.client = client
        self.last: schema.Ceph | None = None
        self.host = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def publish_once(self) -> None:
        c = self.col.collect()
        self.last = c
        self.host = self.host or next((o.host for o in c.osds or () if o.host), "ceph-host")
        now = time.time()
        payload = schema.ClusterPayload(name="ceph", source_host=self.host, ts=now, seq=int(now * 10), interval_s=1.0,
                                        ok=True, last_ok_ts=now, ceph=c)
        b.publish(self.client, [b.node(self.host, ts=now)], cluster=[payload])

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.publish_once()
            except Exception:  # noqa: BLE001 - a slow mgr answer: the next second tries again
                pass

    def __enter__(self) -> Lease:
        self.publish_once()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def golden(ceph_cluster: CephMini, tmp_path: Path) -> Iterator[bytes]:  # noqa: F811
    cl = ceph_cluster
    cl.wait_for("dashboard HTTP", lambda: cl._dashboard_up())
    data = os.urandom(2 * 1024 * 1024 + 33)
    (tmp_path / "golden.img").write_bytes(data)
    cl.run("rbd", "import", str(tmp_path / "golden.img"), GOLDEN, timeout=60)
    try:
        yield data
    finally:  # whatever a failed step left: the clone, the snapshot, the image, the flag
        for argv in (("rbd", "rm", CLONE), ("rbd", "snap", "unprotect", f"{GOLDEN}@{SNAP}"),
                     ("rbd", "snap", "rm", f"{GOLDEN}@{SNAP}"), ("rbd", "rm", GOLDEN), ("ceph", "osd", "unset", "noout")):
            try:
                cl.run(*argv, timeout=60)
            except Exception:  # noqa: BLE001 - not there (the test removed it): fine
                pass


async def test_the_golden_image_workflow_and_noout_from_the_keys(ceph_cluster: CephMini, golden: bytes,  # noqa: F811
                                                                 redis_server: Any, tmp_path: Path) -> None:
    cl = ceph_cluster
    key_path, _pub, _ = signing.generate(str(tmp_path), "alice")
    access = CephAccess(urls=[cl.url], username=cl.username, password_file=str(cl.password_file), timeout=120)
    settings = Settings(refresh_s=0.5, source_label="test", operator_key=key_path, ceph=access,
                        config_file=str(tmp_path / "config.toml"))
    app = make_app(settings, redis_server.client)

    def image(spec: str) -> schema.RbdImage | None:
        """The image in the collector's last answer, None while that answer lacks it: the mgr's image list
        can skip an image it fails to open in the middle of an operation (a flatten), and a failed detail
        poll keeps no list at all. So a wait below treats None as "not yet", never as an error."""
        c = lease.last
        return next((i for i in (c.images if c else None) or () if f"{i.pool}/{i.name}" == spec), None)

    def snap_children(spec: str, name: str) -> list[str] | None:
        """The snapshot's clones as last listed; None when the image or the snapshot is not in the list."""
        i = image(spec)
        s = next((s for s in (i.snapshots if i else None) or () if s.name == name), None)
        return None if s is None else (s.children or [])

    TIMINGS.clear()
    with Lease(cl, redis_server.client(), tmp_path) as lease:
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("4")
            screen = app.screen
            assert isinstance(screen, StorageScreen)
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: "dgold" in screen.section_text("rbd"), "the golden image", tries=3000)

            await pilot.press("r")
            await pick(pilot, app, f"image{SEP}{GOLDEN}")
            await pick(pilot, app, "snap create")
            await type_in(pilot, app, SNAP)
            out = await confirm(pilot, app, acts, f"{GOLDEN}@{SNAP}", cl.url, cl.username)
            assert out.ok and out.text == f"created snapshot {GOLDEN}@{SNAP}", out.text
            await b.wait_until(pilot, lambda: f"@{SNAP}" in screen.section_text("rbd"), "the snapshot", tries=3000)

            await pilot.press("r")
            await pick(pilot, app, f"snap{SEP}{GOLDEN}{SEP}{SNAP}")
            await pick(pilot, app, "snap protect")
            assert (await confirm(pilot, app, acts)).ok
            await b.wait_until(pilot, lambda: f"@{SNAP}  protected" in screen.section_text("rbd"), "protected",
                               tries=3000)

            await pilot.press("r")
            await pick(pilot, app, f"snap{SEP}{GOLDEN}{SEP}{SNAP}")
            await pick(pilot, app, "clone")
            await type_in(pilot, app, CLONE)
            out = await confirm(pilot, app, acts, f"{GOLDEN}@{SNAP}", CLONE)
            assert out.ok and out.text == f"cloned {GOLDEN}@{SNAP} into {CLONE}", out.text
            await b.wait_until(pilot, lambda: (i := image(CLONE)) is not None and i.parent == f"{GOLDEN}@{SNAP}",
                               "the clone with its parent", tries=3000)
            cl.run("rbd", "export", CLONE, str(tmp_path / "clone.img"), timeout=60)
            assert (tmp_path / "clone.img").read_bytes() == golden  # its own image, reading the golden bytes

            # Ceph's refusal, in its words: the snapshot a clone uses cannot be unprotected.
            await pilot.press("r")
            await pick(pilot, app, f"snap{SEP}{GOLDEN}{SEP}{SNAP}")
            await pick(pilot, app, "snap unprotect")
            out = await confirm(pilot, app, acts)
            assert not out.ok and "refused by Ceph (HTTP 400)" in out.text and "busy" in out.text, out.text

            await b.wait_until(pilot, lambda: "dclone" in screen.section_text("rbd"), "the clone drawn", tries=3000)
            await pilot.press("r")
            await pick(pilot, app, f"image{SEP}{CLONE}")
            await pick(pilot, app, "flatten")
            out = await confirm(pilot, app, acts, f"{GOLDEN}@{SNAP}")
            assert out.ok, out.text
            await b.wait_until(pilot, lambda: (i := image(CLONE)) is not None and i.parent is None, "flattened",
                               tries=3000)
            cl.run("rbd", "export", CLONE, str(tmp_path / "flat.img"), timeout=60)
            assert (tmp_path / "flat.img").read_bytes() == golden

            await b.wait_until(pilot, lambda: snap_children(GOLDEN, SNAP) == [], "the snapshot without children",
                               tries=3000)
            await b.wait_until(pilot, lambda: "clone" not in screen.section_text("rbd").split(f"@{SNAP}")[1]
                               .split("\n")[0], "drawn without clones", tries=3000)
            await pilot.press("r")
            await pick(pilot, app, f"snap{SEP}{GOLDEN}{SEP}{SNAP}")
            await pick(pilot, app, "snap unprotect")
            assert (await confirm(pilot, app, acts)).ok
            await b.wait_until(pilot, lambda: f"@{SNAP}  protected" not in screen.section_text("rbd"), "unprotected",
                               tries=3000)
            await pilot.press("r")
            await pick(pilot, app, f"snap{SEP}{GOLDEN}{SEP}{SNAP}")
            await pick(pilot, app, "snap rm")
            assert (await confirm(pilot, app, acts)).ok
            await b.wait_until(pilot, lambda: (i := image(GOLDEN)) is not None and not i.snapshots, "deleted",
                               tries=3000)

            # The node's screen: noout set (health shows it, the section says so), then unset.
            app.open_node(lease.host)
            await pilot.pause()
            node = app.screen
            assert isinstance(node, NodeScreen)

            def section() -> str:
                return str(node.query_one("#ceph").render())

            await b.wait_until(pilot, lambda: "noout is not set" in section(), "the maintenance section", tries=3000)
            await pilot.press("o")
            await pick(pilot, app, f"flag{SEP}noout{SEP}set")
            out = await confirm(pilot, app, acts, "ceph.flag_set_noout noout")
            assert out.ok and "cluster flags now" in out.text and "noout" in out.text, out.text
            await b.wait_until(pilot, lambda: "noout is set" in section(), "noout shown set", tries=3000)
            await pilot.press("o")
            await pick(pilot, app, f"flag{SEP}noout{SEP}unset")
            assert (await confirm(pilot, app, acts)).ok
            await b.wait_until(pilot, lambda: "noout is not set" in section(), "noout shown unset", tries=3000)
            assert acts._ceph is not None  # one client for the session: one login
    entries = redis_server.client().xrange(wire.operator_audit_key("alice"))
    mine = [e for _i, f in entries if (e := trust._decode_entry(f)) is not None]
    assert [(e.action, e.result == "ok") for e in mine] == [
        ("ceph.snap_create", True), ("ceph.snap_protect", True), ("ceph.clone", True), ("ceph.snap_unprotect", False),
        ("ceph.flatten", True), ("ceph.snap_unprotect", True), ("ceph.snap_rm", True),
        ("ceph.flag_set_noout", True), ("ceph.flag_unset_noout", True)]
    assert all(e.where == "dashboard" and e.actor == "alice" for e in mine)
    pub = signing.load_public(_pub)
    rep = trust.verify_stream(wire.operator_audit_key("alice"), entries,
                              lambda e: pub if e.key_id == pub.key_id else None)
    assert rep.entries == len(mine) and rep.problems == [], rep
    # The figures (-s shows them): from the operator's yes to the outcome on screen, each action on the real mgr.
    print("\nceph actions from the dashboard's keys (yes -> outcome shown):")
    for action, secs in TIMINGS:
        print(f"  {action:<22} {secs:6.2f} s")
