"""Pilot tests of the Network screen (5) and the overview's bonds badge, on bonds parsed from the
real /proc/net/bonding files and sysfs trees in tests/fixtures/bonds (through ``clustertop.collectors.bonds_parse``
and ``clustertop.collectors.bonds.read_bonds``), published through the real Publisher into a real
redis-server or the embedded store. Plus the simulated demo cluster stepped until a bond slave
has lost its link, and SVG snapshots at 80x24 and 200x60.
"""

from __future__ import annotations

from typing import Any

import pytest

from clustertop.collectors import bonds_parse as bonding
from clustertop.collectors.base import Roots
from clustertop.collectors.bonds import read_bonds
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.network import NetworkScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.header import ClusterHeader
from clustertop.dashboard.widgets.ordered import OrderedTable
from clustertop.store import embedded
from clustertop.wire import schema
from tests.conftest import FIXTURES
from tests.support import builders as b

pytestmark = pytest.mark.anyio

PROCFS = FIXTURES / "bonds" / "procfs"
SYSFS = FIXTURES / "bonds" / "sysfs"
SEP = "\x1f"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def procfs_bond(scenario: str, name: str = "bond0") -> schema.Bond:
    """A real /proc/net/bonding file, parsed and judged exactly as the collector does."""
    return bonding.judge(bonding.parse_procfs(name, (PROCFS / scenario).read_text()))


def bond_node(host: str, bonds: list[schema.Bond], **kw: Any) -> schema.NodeSnapshot:
    """A tower whose NICs agree with its bonds (as the host collector would see the same ports):
    working slaves carry 4 MB/s rx / 1 MB/s tx each, the bond the sum; plus lo and a veth."""
    snap = b.tower(host, **kw)
    assert snap.system is not None
    nics = []
    for bd in bonds:
        working = [s for s in bd.slaves or () if s.ok]
        for s in bd.slaves or ():
            up = s.mii_status == "up"
            nics.append(schema.Nic(name=s.name, kind="bond-slave", up=up, speed_mbps=s.speed_mbps if up else None,
                                   rx_bytes_s=4e6 if s.ok else 0.0, tx_bytes_s=1e6 if s.ok else 0.0,
                                   rx_errors=0, tx_errors=0, rx_dropped=3, tx_dropped=0))
        nics.append(schema.Nic(name=bd.name, kind="bond", up=bd.mii_status == "up", speed_mbps=bd.speed_mbps or None,
                               rx_bytes_s=4e6 * len(working), tx_bytes_s=1e6 * len(working),
                               rx_errors=0, tx_errors=0, rx_dropped=3 * len(working), tx_dropped=0))
    nics.append(schema.Nic(name="lo", kind="loopback", rx_bytes_s=1e3, tx_bytes_s=1e3, up=True))
    nics.append(schema.Nic(name="veth1a2b", kind="virtual", rx_bytes_s=5e3, tx_bytes_s=5e3, up=True))
    snap.system.nics = nics
    snap.bonds = bonds
    return snap


def cluster_snaps() -> list[schema.NodeSnapshot]:
    return [
        bond_node("gpu-01", [procfs_bond("alb-2x1g-healthy")]),
        bond_node("gpu-02", [procfs_bond("lacp-2x1g-one-port-not-in-sync")]),
        bond_node("gpu-03", [procfs_bond("active-backup-one-slave-down")]),
        bond_node("gpu-04", [procfs_bond("alb-no-slaves-down")]),
        bond_node("gpu-05", [procfs_bond("lacp-2x25g-healthy")]),
    ]


def app_for(factory: Any, refresh_s: float = 3600) -> Any:
    return make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=refresh_s, source_label="test"), factory)


async def open_network(pilot: Any) -> NetworkScreen:
    await b.wait_reads(pilot)
    await pilot.press("5")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, NetworkScreen)
    return screen


def bond_keys(screen: NetworkScreen) -> list[str]:
    """The bond rows (not slaves), top to bottom, as "host/bond"."""
    keys = screen.query_one("#bonds", OrderedTable).shown_keys
    return [k.replace(SEP, "/") for k in keys if k.count(SEP) == 1]


def row(screen: NetworkScreen, table: str, *key: str) -> dict[str, str]:
    t = screen.query_one(f"#{table}", OrderedTable)
    cells = t.get_row(SEP.join(key))
    return {col: c.plain for (col, _), c in zip(t.column_defs, cells, strict=True)}


async def test_degraded_bonds_first_with_their_reason(redis_server: Any) -> None:
    b.publish(redis_server.client(), cluster_snaps())
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_network(pilot)
        # Outage (no slave works) first, then degraded, then healthy; by host within each.
        assert bond_keys(screen) == ["gpu-04/bond0", "gpu-02/bond0", "gpu-03/bond0", "gpu-01/bond0", "gpu-05/bond0"]
        summary = screen.summary_text.splitlines()
        assert summary[0] == "bonds 2 ok / 3 degraded · slaves 6 carrying traffic / 2 not"
        assert summary[1:] == [
            "DOWN     gpu-04 bond0 (balance-alb, 0/0 slaves working): no slaves",
            "DEGRADED gpu-02 bond0 (802.3ad, 1/2 slaves working): eth1: LACP not distributing (actor state 15)",
            "DEGRADED gpu-03 bond0 (active-backup, 1/2 slaves working): eth3: MII down",
        ]
        ab = row(screen, "bonds", "gpu-03", "bond0")
        assert (ab["state"], ab["speed"], ab["why"], ab["fail"]) == ("DEGRADED 1/2", "100 Mb/s", "eth3: MII down", "2")
        assert ab["rx"] == "3.8 MiB/s"  # the bond interface's own rate: one working slave
        eth3 = row(screen, "bonds", "gpu-03", "bond0", "eth3")
        assert (eth3["name"], eth3["state"], eth3["fail"], eth3["why"]) == ("├─ eth3", "down", "2", "MII down")
        eth2 = row(screen, "bonds", "gpu-03", "bond0", "eth2")
        assert eth2["state"] == "up (active)" and eth2["speed"] == "100 Mb/s" and eth2["duplex"] == "full"
        healthy = row(screen, "bonds", "gpu-01", "bond0")
        assert (healthy["state"], healthy["speed"], healthy["why"]) == ("ok 2/2", "2 Gb/s", "")
        assert row(screen, "bonds", "gpu-05", "bond0")["speed"] == "50 Gb/s"


async def test_lacp_port_states_in_words(redis_server: Any) -> None:
    b.publish(redis_server.client(), cluster_snaps())
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_network(pilot)
        eth1 = row(screen, "bonds", "gpu-02", "bond0", "eth1")
        # actor 15 = activity, timeout, aggregation, sync; partner 55 = all but sync.
        assert eth1["actor"] == "sync NOT collecting NOT distributing"
        assert eth1["partner"] == "NOT sync collecting distributing"
        assert eth1["state"] == "up, not carrying"
        assert eth1["why"] == "LACP not distributing (actor state 15)"
        assert eth1["mode"] == "agg 1 (active)"
        eth2 = row(screen, "bonds", "gpu-02", "bond0", "eth2")
        assert eth2["actor"] == eth2["partner"] == "sync collecting distributing"
        bond = row(screen, "bonds", "gpu-02", "bond0")
        assert bond["actor"] == "rate fast" and bond["mode"] == "802.3ad"
        # Not 802.3ad: no LACP columns at all (blank, not N/A).
        assert row(screen, "bonds", "gpu-01", "bond0", "eno1")["actor"] == ""


async def test_sysfs_degraded_tree_mii_down_and_not_distributing() -> None:
    """The bonds collector's own reader on the hand-built sysfs tree (kernel layout)."""
    _server, factory = embedded()
    top = SYSFS / "degraded"
    bonds = read_bonds(Roots(proc=str(top / "proc"), sys=str(top / "sys")))
    assert any(bd.degraded for bd in bonds)
    b.publish(factory(), [bond_node("gpu-01", bonds)])
    app = app_for(factory)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_network(pilot)
        shown = bond_keys(screen)
        assert sorted(shown) == sorted(f"gpu-01/{bd.name}" for bd in bonds)
        for bd in bonds:
            r = row(screen, "bonds", "gpu-01", bd.name)
            assert r["why"] == "; ".join(bd.problems or [])
            assert r["state"].startswith("DEGRADED" if bd.degraded else "ok")
            for s in bd.slaves or ():
                assert row(screen, "bonds", "gpu-01", bd.name, s.name)["why"] == (s.problem or "")


async def test_a_bond_that_degrades_moves_to_the_top() -> None:
    _server, factory = embedded()
    client = factory()
    healthy = [bond_node("gpu-01", [procfs_bond("alb-2x1g-healthy")]),
               bond_node("gpu-09", [procfs_bond("alb-2x1g-healthy")])]
    b.publish(client, healthy)
    app = app_for(factory, refresh_s=0.05)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_network(pilot)
        assert bond_keys(screen) == ["gpu-01/bond0", "gpu-09/bond0"]
        assert screen.summary_text == "bonds 2 ok · slaves 4 carrying traffic"
        b.publish(client, [bond_node("gpu-09", [procfs_bond("active-backup-one-slave-down")], seq=2)])
        await b.wait_until(pilot, lambda: bond_keys(screen)[0] == "gpu-09/bond0", "gpu-09 first")
        assert "DEGRADED gpu-09 bond0" in screen.summary_text
        header = app.screen.query_one(ClusterHeader).text
        assert "bonds 1 ok / 1 degraded" in header


async def test_virtual_nics_hidden_until_v() -> None:
    _server, factory = embedded()
    b.publish(factory(), [bond_node("gpu-01", [procfs_bond("alb-2x1g-healthy")])])
    app = app_for(factory)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_network(pilot)
        nics = screen.query_one("#nics", OrderedTable)
        # The bond first, then its ports (alb-2x1g-healthy: enp5s0 and eno1, 1 Gb/s each).
        assert nics.shown_keys == [f"gpu-01{SEP}{n}" for n in ("bond0", "eno1", "enp5s0")]
        assert "2 virtual/loopback hidden" in str(screen.query_one("#nics-title").render())
        bond0 = row(screen, "nics", "gpu-01", "bond0")
        assert (bond0["kind"], bond0["state"], bond0["speed"], bond0["rx"]) == ("bond", "up", "2 Gb/s", "7.6 MiB/s")
        await pilot.press("v")
        await pilot.pause()
        assert nics.shown_keys == [f"gpu-01{SEP}{n}" for n in ("bond0", "eno1", "enp5s0", "veth1a2b", "lo")]
        assert row(screen, "nics", "gpu-01", "lo")["kind"] == "loopback"
        await pilot.press("v")
        await pilot.pause()
        assert len(nics.shown_keys) == 3


async def test_stale_node_greyed_and_down_node_left_out() -> None:
    _server, factory = embedded()
    client = factory()
    b.publish(client, [bond_node("gpu-01", [procfs_bond("alb-2x1g-healthy")]),
                       bond_node("gpu-02", [procfs_bond("alb-2x1g-healthy")])])
    app = app_for(factory, refresh_s=0.05)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_network(pilot)
        b.silence(client, "gpu-02")  # stopped reporting: stale, its last bonds greyed
        await b.wait_until(pilot, lambda: app.view.state.node("gpu-02").state == "stale", "stale")
        await b.wait_fresh(pilot)
        assert row(screen, "bonds", "gpu-02", "bond0")["state"] == "ok 2/2 (stale)"
        app.settings.frozen_time = b.NOW + 3600  # an hour later: long gone, down, left out
        b.publish(client, [bond_node("gpu-01", [procfs_bond("alb-2x1g-healthy")], ts=b.NOW + 3600, seq=2)])
        await b.wait_until(pilot, lambda: app.view.state.node("gpu-02").state == "down", "down")
        await b.wait_fresh(pilot)
        assert bond_keys(screen) == ["gpu-01/bond0"]


async def test_no_bonds_reported_is_na_not_zero() -> None:
    _server, factory = embedded()
    b.publish(factory(), [b.tower("gpu-01")])  # bonds=None: the collector did not report
    app = app_for(factory)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_network(pilot)
        assert screen.summary_text == "bonds: N/A (no node reports its bonds)"
        assert "bonds" not in app.screen.query_one(ClusterHeader).text


async def test_bond_and_slave_names_shown_literally() -> None:
    _server, factory = embedded()
    bond = procfs_bond("active-backup-one-slave-down", name="[$ct-crit]bond[/]")
    assert bond.slaves
    bond.slaves[0].name = "[bold]eth3"
    bond.problems = ["[bold]eth3: MII down"]
    b.publish(factory(), [bond_node("[red]gpu", [bond])])
    app = app_for(factory)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_network(pilot)
        assert "DEGRADED [red]gpu [$ct-crit]bond[/] (active-backup" in screen.summary_text
        assert row(screen, "bonds", "[red]gpu", "[$ct-crit]bond[/]", "[bold]eth3")["name"].endswith("[bold]eth3")


# ---------------------------------------------------------------------------------------------
# The simulated demo cluster, stepped until a bond slave has lost its link
# ---------------------------------------------------------------------------------------------


async def test_demo_cluster_bond_slave_down_shows_everywhere() -> None:
    from tests.dashboard.test_dashboard_storage import sim_degraded_client

    factory, t = sim_degraded_client()
    app = make_app(Settings(frozen_time=t + 0.5, refresh_s=3600, source_label="demo"), factory)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        state = app.view.state
        assert state is not None
        snaps = [v.snap for v in state.nodes if v.snap is not None]
        degraded = [(s.host, bd) for s in snaps for bd in s.bonds or () if bd.degraded]
        assert len(degraded) == 1
        host, bond = degraded[0]
        total = sum(len(s.bonds or ()) for s in snaps)
        # Overview: the header badge and an alert naming node, bond and cause.
        assert f"bonds {total - 1} ok / 1 degraded" in app.screen.query_one(ClusterHeader).text
        [alert] = [a for a in app.view.alerts if a.source == "bond"]
        assert (alert.node, alert.subject) == (host, bond.name)
        assert alert.message == f"bond {bond.name} degraded: {'; '.join(bond.problems or [])}"
        assert "MII down" in alert.message
        screen = await open_network(pilot)
        assert bond_keys(screen)[0] == f"{host}/{bond.name}"
        lost = next(s for s in bond.slaves or () if not s.ok)
        r = row(screen, "bonds", host, bond.name, lost.name)
        assert (r["state"], r["speed"], r["why"]) == ("down", "N/A", "MII down")
        assert f"DEGRADED {host} {bond.name} (balance-alb, 2/3 slaves working): {lost.name}: MII down" \
            in screen.summary_text


# ---------------------------------------------------------------------------------------------
# SVG snapshots
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_network(snap_compare: Any, size: tuple[int, int]) -> None:
    _server, factory = embedded()
    b.publish(factory(), cluster_snaps())

    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("5")
        await pilot.pause()

    assert snap_compare(app_for(factory), terminal_size=size, run_before=go)
