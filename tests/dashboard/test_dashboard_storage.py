"""Pilot tests of the Storage screen (4): Ceph from the real captured ceph-mgr answers, local disks,
filesystems and network mounts, through the real Publisher into a real redis-server (or the
embedded store), read by the real app.

Ceph data is what ``clustertop.collectors.ceph_parse`` makes of tests/fixtures/ceph/*.json (a Ceph 16.2.15
cluster: healthy, osd.2 stopped, full ratios lowered), assembled the way ``CephCollector.collect``
assembles it. Plus SVG snapshots at 80x24 and 200x60 and the simulated demo cluster stepped to the
moment its OSD is down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop import wire
from clustertop.collectors import ceph_parse
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.storage import StorageScreen, ceph_reason
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.cephio import CephIoRing
from clustertop.dashboard.widgets.rbdtree import rbd_tree
from clustertop.store import embedded
from clustertop.wire import schema
from tests.conftest import FIXTURES
from tests.support import builders as b

pytestmark = pytest.mark.anyio

FIX = FIXTURES / "ceph"
GIB = 1024**3
UNREACHABLE = ("CephUnreachable: Ceph unreachable: all mgr URLs failed: https://mgr-a:8443: ConnectError: "
               "[Errno 111] Connection refused")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clock times on screen ("hung since 14:02:11") in UTC, as in the snapshots."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _load(stem: str, scenario: str) -> Any:
    for name in (f"{stem}{scenario}.json", f"{stem}.json"):
        if (FIX / name).exists():
            return json.loads((FIX / name).read_text())
    raise FileNotFoundError(stem)


def fixture_ceph(scenario: str = "") -> schema.Ceph:
    """``scenario``: "" (HEALTH_OK), "-degraded" (osd.2 down), "-err" (OSD_FULL). Assembled like
    CephCollector.collect: health, then the detail endpoints."""
    c = ceph_parse.parse_health(_load("api_health_minimal", scenario))
    c.fsid = ceph_parse.parse_fsid(_load("api_monitor", scenario))
    c.osds = ceph_parse.parse_osds(_load("api_osd", scenario))
    c.pools = ceph_parse.parse_pools(_load("api_pool__stats-true", scenario))
    c.images = ceph_parse.parse_images(ceph_parse.image_entries(_load("api_block_image", scenario)))
    c.detail_ts = b.NOW
    c.url = "https://vm:8443/"
    return c


def ceph_payload(c: schema.Ceph | None, *, ok: bool = True, ts: float = b.NOW, error: str | None = None,
                 last_ok_ts: float | None = b.NOW) -> schema.ClusterPayload:
    return schema.ClusterPayload(name="ceph", source_host="node-01", ts=ts, seq=1, interval_s=10.0, ok=ok,
                                 error=error, last_ok_ts=last_ok_ts, ceph=c)


def storage_node(host: str, mounts: list[schema.NetMount] | None = None, **kw: Any) -> schema.NodeSnapshot:
    snap = b.tower(host, **kw)
    assert snap.system is not None
    snap.system.disks = [
        schema.DiskIO(name="nvme0n1", read_bytes_s=2e6, write_bytes_s=1e6, read_iops=30, write_iops=15,
                      util_pct=3.0, await_ms=0.4, queue_depth=0.02),
        schema.DiskIO(name="sdb", read_bytes_s=40e6, write_bytes_s=120e6, read_iops=600, write_iops=1800,
                      util_pct=97.0, await_ms=14.2, queue_depth=6.5),
    ]
    snap.system.filesystems = [
        schema.Filesystem(mountpoint="/", device="/dev/nvme0n1p2", fstype="ext4", total_bytes=900 * GIB,
                          used_bytes=300 * GIB, avail_bytes=600 * GIB, inodes_total=1_000_000, inodes_used=20_000),
        schema.Filesystem(mountpoint="/scratch", device="/dev/sdb1", fstype="xfs", total_bytes=1000 * GIB,
                          used_bytes=970 * GIB, avail_bytes=30 * GIB, inodes_total=None, inodes_used=None),
    ]
    snap.netmounts = mounts
    return snap


HUNG = schema.NetMount(mountpoint="/mnt/datasets", fstype="nfs4", source="nas01:/export/datasets", state="hung",
                       latency_ms=None, hung_since_ts=b.NOW - 300)
SLOW = schema.NetMount(mountpoint="/home", fstype="nfs4", source="nas01:/export/home", state="slow",
                       latency_ms=850.0)
OK_MOUNT = schema.NetMount(mountpoint="/home", fstype="nfs4", source="nas01:/export/home", state="ok",
                           latency_ms=0.6)
STALE_HANDLE = schema.NetMount(mountpoint="/mnt/old", fstype="nfs", source="old-nas:/vol", state="ok",
                               latency_ms=1.0, error="Stale file handle")


def publish_all(client: Any, cluster: list[schema.ClusterPayload] | None = None) -> None:
    snaps = [storage_node("gpu-01", [OK_MOUNT]), storage_node("gpu-02", [HUNG, OK_MOUNT]),
             storage_node("gpu-03", [SLOW, STALE_HANDLE])]
    b.publish(client, snaps, cluster=cluster)


def app_for(factory: Any, refresh_s: float = 3600) -> Any:
    return make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=refresh_s, source_label="test"), factory)


async def open_storage(pilot: Any) -> StorageScreen:
    await b.wait_reads(pilot)
    await pilot.press("4")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, StorageScreen)
    return screen


def lines(screen: StorageScreen, section: str) -> list[str]:
    return screen.section_text(section).splitlines()


# ---------------------------------------------------------------------------------------------
# Ceph scenarios from the real captured answers
# ---------------------------------------------------------------------------------------------


async def test_healthy_ceph(redis_server: Any) -> None:
    publish_all(redis_server.client(), cluster=[ceph_payload(fixture_ceph(""))])
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        banner = screen.section_text("ceph-banner")
        assert banner.startswith("Ceph HEALTH_OK  data 0s old  polled by node-01")
        health = lines(screen, "health")
        assert health[1].startswith("HEALTH_OK  mons 1/1 in quorum  mgr ")
        assert "OSDs 3 up / 3 in / 3" in health[1]
        assert health[2] == "no health checks raised"
        osds = lines(screen, "osds")
        assert osds[0].startswith("OSDs  3")
        assert [ln.split()[0] for ln in osds[2:]] == ["osd.0", "osd.1", "osd.2"]
        assert all(" up   in " in ln for ln in osds[2:])
        pools = [ln.split()[0] for ln in lines(screen, "pools")[2:]]
        assert "demo" in pools and "rbd" in pools
        # The captured cluster: rbd/db-golden, protected snapshot @base, and its clone db-clone1.
        rbd = lines(screen, "rbd")
        golden = next(i for i, ln in enumerate(rbd) if ln.startswith("rbd/db-golden"))
        assert rbd[golden + 1].startswith("└─ @base  protected")
        assert rbd[golden + 2].strip().startswith("└─ rbd/db-clone1")
        assert not screen.query_one("#ceph").has_class("-stale")


async def test_degraded_ceph_osd_down_and_pg_degraded(redis_server: Any) -> None:
    publish_all(redis_server.client(), cluster=[ceph_payload(fixture_ceph("-degraded"))])
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        assert screen.section_text("ceph-banner").startswith("Ceph HEALTH_WARN")
        health = lines(screen, "health")
        # Every check in words with its count and the detail that names the OSD.
        down = next(i for i, ln in enumerate(health) if ln.startswith("WARN OSD_DOWN"))
        assert health[down].endswith("1 osds down  (1)")
        assert health[down + 1].strip() == "osd.2 (root=default,host=vm) is down"
        pg = next(i for i, ln in enumerate(health) if ln.startswith("WARN PG_DEGRADED"))
        assert "13/39 objects degraded (33.333%), 9 pgs degraded  (9)" in health[pg]
        assert health[pg + 1].strip() == "pg 2.0 is active+undersized+degraded, acting [1,0]"
        assert health[pg + 4].strip() == "… 6 more"  # 9 detail lines, the first 3 shown
        assert "OSDs 2 up / 3 in / 3" in health[1]
        # The down OSD comes first, said in words.
        osds = lines(screen, "osds")
        assert "1 down" in osds[0]
        assert osds[2].split()[:4] == ["osd.2", "vm", "DOWN", "in"]
        pgs = lines(screen, "pgs")
        assert pgs[1:] == ["9 active+undersized+degraded", "8 active+undersized"]  # most first
        cap = lines(screen, "capacity")
        assert "degraded 13" in cap[2]


async def test_err_ceph_osd_full_is_critical_and_first(redis_server: Any) -> None:
    publish_all(redis_server.client(), cluster=[ceph_payload(fixture_ceph("-err"))])
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        assert screen.section_text("ceph-banner").startswith("Ceph HEALTH_ERR")
        health = lines(screen, "health")
        codes = [ln.split()[:2] for ln in health if ln[:4] in ("ERR ", "WARN")]
        assert codes == [["ERR", "OSD_FULL"], ["WARN", "POOL_FULL"]]  # errors before warnings
        full = next(i for i, ln in enumerate(health) if ln.startswith("ERR  OSD_FULL"))
        assert health[full].endswith("3 full osd(s)  (3)")
        assert [ln.strip() for ln in health[full + 1: full + 4]] == ["osd.0 is full", "osd.1 is full",
                                                                     "osd.2 is full"]
        assert all(ln.rstrip().endswith("full") for ln in lines(screen, "osds")[2:])  # the OSD state flag


async def test_unreachable_shows_banner_and_last_good_data_dimmed(redis_server: Any) -> None:
    last_good = fixture_ceph("-degraded")
    payload = ceph_payload(last_good, ok=False, ts=b.NOW, error=UNREACHABLE, last_ok_ts=b.NOW - 125)
    publish_all(redis_server.client(), cluster=[payload])
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        banner = lines(screen, "ceph-banner")
        assert banner[0] == ("Ceph unreachable: all mgr URLs failed: https://mgr-a:8443: ConnectError: "
                             "[Errno 111] Connection refused - last good data 2m ago (shown dimmed)")
        box = screen.query_one("#ceph")
        assert box.has_class("-stale") and not box.has_class("-hidden")
        assert screen.query_one("#health").styles.text_opacity < 1.0
        assert screen.query_one("#ceph-banner").styles.text_opacity == 1.0  # the banner itself is not dimmed
        # The last good data is still there to read.
        assert any(ln.startswith("WARN OSD_DOWN") for ln in lines(screen, "health"))
        # The header does not claim a status it cannot know; the alert says what happened.
        assert "HEALTH_WARN" not in app.screen.query_one("#header").text
        assert any(a.source == "ceph" and "last good data 2m ago" in a.message for a in app.view.alerts)


async def test_unreachable_without_any_good_data(redis_server: Any) -> None:
    publish_all(redis_server.client(), cluster=[ceph_payload(None, ok=False, error=UNREACHABLE, last_ok_ts=None)])
    app = app_for(redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_storage(pilot)
        assert lines(screen, "ceph-banner")[0].endswith(" - no good data yet")
        assert screen.query_one("#ceph").has_class("-hidden")


async def test_not_configured_says_so_never_zeros() -> None:
    _server, factory = embedded()
    publish_all(factory())
    app = app_for(factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_storage(pilot)
        assert screen.section_text("ceph-banner") == "Ceph not configured (no agent polls it)"
        assert screen.query_one("#ceph").has_class("-hidden")
        assert screen.query_one("#ceph").display is False
        assert screen.section_text("health") == "" and screen.section_text("osds") == ""


async def test_unreadable_payload_is_named() -> None:
    _server, factory = embedded()
    client = factory()
    publish_all(client)
    client.set(wire.cluster_key("ceph"), b"\x93garbage")
    app = app_for(factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_storage(pilot)
        assert screen.section_text("ceph-banner").startswith("Ceph payload unreadable: ")


def test_ceph_reason_drops_the_runner_prefix_once() -> None:
    assert ceph_reason(UNREACHABLE).startswith("all mgr URLs failed: ")
    assert ceph_reason("TimeoutError: exceeded 2.0 s") == "exceeded 2.0 s"
    assert ceph_reason("CephLoginRefused: Ceph login refused for user admin") == \
        "Ceph login refused for user admin"
    assert ceph_reason(None) == "no answer"


# ---------------------------------------------------------------------------------------------
# Local disks, filesystems, network mounts
# ---------------------------------------------------------------------------------------------


async def test_hung_nfs_first_with_since_then_slow_then_errors_then_ok(redis_server: Any) -> None:
    publish_all(redis_server.client(), cluster=[ceph_payload(fixture_ceph(""))])
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        mounts = lines(screen, "mounts")[2:]
        assert [ln.split()[:2] for ln in mounts] == [
            ["gpu-02", "/mnt/datasets"], ["gpu-03", "/home"], ["gpu-03", "/mnt/old"], ["gpu-01", "/home"],
            ["gpu-02", "/home"]]
        # hung_since = NOW - 300 = 2025-06-15 15:01:40 UTC; the frozen clock is NOW + 0.5.
        assert mounts[0].rstrip().endswith("N/A  HUNG since 15:01:40 (5m)")
        assert mounts[1].rstrip().endswith("850.0 ms  SLOW")
        assert mounts[2].rstrip().endswith("1.0 ms  ok  Stale file handle")
        disks = lines(screen, "disks")
        assert disks[2].split()[:2] == ["gpu-01", "nvme0n1"] and disks[3].split()[0] == "sdb"  # grouped by node
        assert "97 %" in disks[3] and "14.2 ms" in disks[3] and "6.50" in disks[3]
        fs = lines(screen, "filesystems")
        scratch = next(ln for ln in fs if "/scratch" in ln)
        assert "97 %" in scratch and scratch.split()[-2] == "N/A"  # inodes unknown (xfs here): N/A, not 0 %


async def test_io_plot_fills_from_new_payloads_only(redis_server: Any) -> None:
    client = redis_server.client()
    c = fixture_ceph("")
    c.read_bytes_s, c.write_bytes_s, c.recovering_bytes_s = 80e6, 20e6, 0.0
    publish_all(client, cluster=[ceph_payload(c)])
    app = app_for(redis_server.client, refresh_s=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        await b.wait_fresh(pilot, 2)  # same payload read again: no new sample
        assert len(app.view.ceph_io) == 1
        c.read_bytes_s = 160e6
        client.set(wire.cluster_key("ceph"), wire.encode(ceph_payload(c, ts=b.NOW + 10)))
        await b.wait_until(pilot, lambda: len(app.view.ceph_io) == 2, "second sample")
        await b.wait_fresh(pilot)
        io = lines(screen, "io")
        read = next(ln for ln in io if ln.startswith("client read"))
        assert "152.6 MiB/s" in read and read.rstrip().endswith("peak  152.6 MiB/s")
        assert "▅█" in read  # 80 then 160 MB/s on one scale: half height, then full


def test_io_ring_gap_on_unreachable_and_bounded() -> None:
    ring = CephIoRing(maxlen=4)
    c = schema.Ceph(read_bytes_s=1.0)
    assert ring.add(ceph_payload(c, ts=1))
    assert not ring.add(ceph_payload(c, ts=1))  # the same payload again
    assert ring.add(ceph_payload(c, ok=False, ts=2, error="x"))
    assert ring.series("read_bytes_s") == [1.0, None]  # a gap, not 0 (and not the stale last good data)
    for t in range(3, 10):
        ring.add(ceph_payload(c, ts=t))
    assert len(ring) == 4
    assert not ring.add(None)


# ---------------------------------------------------------------------------------------------
# RBD tree and node text
# ---------------------------------------------------------------------------------------------


def test_rbd_tree_clone_of_clone_and_missing_parents() -> None:
    im = schema.RbdImage
    images = [
        im(pool="rbd", name="golden", size_bytes=10 * GIB, used_bytes=6 * GIB,
           snapshots=[schema.RbdSnap(name="base", protected=True, ts="2025-11-22T09:05:11Z",
                                     children=["rbd/clone1", "rbd/gone"])]),
        im(pool="rbd", name="clone1", size_bytes=10 * GIB, parent="rbd/golden@base",
           snapshots=[schema.RbdSnap(name="v2", children=[])]),
        im(pool="rbd", name="clone2", size_bytes=10 * GIB, parent="rbd/golden@base"),  # only in its own parent
        im(pool="vms", name="grandchild", parent="rbd/clone1@v2"),
        im(pool="rbd", name="orphan", parent="other/img@s1", used_bytes=None),
    ]
    got = [c.plain for c in rbd_tree(images)]
    assert got == [
        "rbd/golden  10.0 GiB, 6.0 GiB used",
        "└─ @base  protected  2025-11-22  3 clones",
        "   ├─ rbd/clone1  10.0 GiB, N/A used",
        "   │  └─ @v2  1 clone",
        "   │     └─ vms/grandchild  N/A, N/A used",
        "   ├─ rbd/gone  (not listed)",
        "   └─ rbd/clone2  10.0 GiB, N/A used",
        "rbd/orphan  clone of other/img@s1  N/A, N/A used",
    ]
    assert [c.plain for c in rbd_tree(None)] == ["N/A (not polled)"]
    assert [c.plain for c in rbd_tree([])] == ["no RBD images"]


async def test_node_and_ceph_text_is_shown_literally() -> None:
    """Pool, image and check text is data: Textual's [$var] tags and Rich markup stay literal."""
    _server, factory = embedded()
    c = fixture_ceph("-degraded")
    assert c.checks and c.pools and c.images
    c.checks[0].message = "[$ct-crit]osd[/] [bold]down"
    c.pools[0].name = "[red]pool"
    c.images[0].name = "[$primary]img"
    publish_all(factory(), cluster=[ceph_payload(c)])
    app = app_for(factory)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        await pilot.pause()
        assert "[$ct-crit]osd[/] [bold]down" in screen.section_text("health")
        assert "[red]pool" in screen.section_text("pools")
        assert "[$primary]img" in screen.section_text("rbd")


# ---------------------------------------------------------------------------------------------
# The simulated demo cluster, stepped to the moment its OSD is down
# ---------------------------------------------------------------------------------------------


def sim_degraded_client() -> tuple[Any, float]:
    """SimCluster(seed=1) stepped in 5 s ticks until an OSD is down and a bond degraded (found by
    stepping, not hard-coded), then published at that moment."""
    from clustertop.sim.simulate import SimCluster, make_publishers, publish

    _server, factory = embedded()
    client = factory()
    sim = SimCluster(seed=1)
    pubs = make_publishers(sim, client, 600.0)
    t = b.NOW
    for _ in range(2000):
        ticks, cluster = sim.step(t)
        ceph = next(p.ceph for p in cluster if p.name == "ceph")
        bonds = [bd for snap, _ in ticks for bd in snap.bonds or ()]
        if ceph is not None and (ceph.osds_up or 0) < (ceph.osds_total or 0) and any(bd.degraded for bd in bonds):
            break
        t += 5
    else:
        raise AssertionError("the simulation never had an OSD down and a bond degraded at once")
    publish(client, sim, t, pubs)  # the same moment again (dt = 0): the state shown is the one found
    return factory, t


async def test_demo_cluster_flapping_osd_shows() -> None:
    factory, t = sim_degraded_client()
    app = make_app(Settings(frozen_time=t + 0.5, refresh_s=3600, source_label="demo"), factory)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_storage(pilot)
        state = app.view.state
        assert state is not None
        ceph = state.cluster["ceph"].ceph
        assert ceph is not None and ceph.osds is not None
        down = [o for o in ceph.osds if o.up is False]
        assert down
        osds = lines(screen, "osds")
        assert osds[2].split()[:3] == [f"osd.{down[0].id}", down[0].host, "DOWN"]
        health = screen.section_text("health")
        assert "WARN OSD_DOWN" in health and f"osd.{down[0].id} (root=default,host={down[0].host}) is down" in health
        assert "active+undersized+degraded" in screen.section_text("pgs")
        assert "rbd/db-golden" in screen.section_text("rbd")


# ---------------------------------------------------------------------------------------------
# SVG snapshots
# ---------------------------------------------------------------------------------------------

SIZES = [(80, 24), (200, 60)]


def snapshot_client(unreachable: bool = False) -> Any:
    _server, factory = embedded()
    c = fixture_ceph("-degraded")
    c.read_bytes_s, c.write_bytes_s, c.recovering_bytes_s = 60e6, 25e6, 40e6
    payload = ceph_payload(c, ok=not unreachable, error=UNREACHABLE if unreachable else None,
                           last_ok_ts=b.NOW - 125 if unreachable else b.NOW)
    publish_all(factory(), cluster=[payload])
    return factory


def fill_ring(app: Any) -> None:
    """A deterministic I/O history (the ring is fed on reads; a snapshot reads once)."""
    for i in range(60):
        c = schema.Ceph(read_bytes_s=40e6 + 30e6 * ((i * 7) % 10) / 10, write_bytes_s=20e6 + 1e6 * (i % 5),
                        recovering_bytes_s=None if 20 <= i < 24 else (80e6 if 30 <= i < 45 else 0.0))
        app.view.ceph_io.add(ceph_payload(c, ok=not (20 <= i < 24), ts=b.NOW - 600 + 10 * i))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_storage(snap_compare: Any, size: tuple[int, int]) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        fill_ring(pilot.app)
        await pilot.press("4")
        await pilot.pause()

    assert snap_compare(app_for(snapshot_client()), terminal_size=size, run_before=go)


def test_snapshot_storage_unreachable(snap_compare: Any) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("4")
        await pilot.pause()

    assert snap_compare(app_for(snapshot_client(unreachable=True)), terminal_size=(120, 40), run_before=go)
