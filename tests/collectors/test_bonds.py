"""Tests the bonds collector on real /proc/net/bonding files and hand-built sysfs trees (fixtures/bonds)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clustertop.collectors import base
from clustertop.collectors import bonds_parse as bonding
from clustertop.collectors.base import Context, Roots
from clustertop.collectors.bonds import BondsCollector, read_bonds
from clustertop.read import cluster
from clustertop.read.reader import NodeView
from clustertop.wire import schema
from tests.conftest import FIXTURES

PROCFS = FIXTURES / "bonds" / "procfs"
SYSFS = FIXTURES / "bonds" / "sysfs"


def slave(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, **kw}


UP_1G = {"mii_status": "up", "speed_mbps": 1000, "duplex": "full", "link_failures": 0}


def lacp_ok(agg: int, actor: int, partner: int) -> dict[str, Any]:
    return {"aggregator_id": agg, "actor_port_state": actor, "partner_port_state": partner,
            "actor_churn": "none", "partner_churn": "none", "actor_churned": 0, "partner_churned": 0}


# Every real procfs file, parsed and judged, as the exact wire dict (omit_defaults: absent = None).
PROCFS_EXPECTED: dict[str, dict[str, Any]] = {
    "active-backup-one-slave-down": {
        "name": "bond0", "mode": "active-backup", "mii_status": "up", "active_slave": "eth2",
        "primary_slave": "eth2", "speed_mbps": 100,  # active-backup: only the active slave carries traffic
        "slaves": [
            # Down link still prints its last speed; "Permanent HW addr:" is empty on this old driver.
            slave("eth3", mii_status="down", speed_mbps=1000, duplex="full", link_failures=2, ok=False,
                  problem="MII down"),
            slave("eth2", mii_status="up", speed_mbps=100, duplex="full", link_failures=0, ok=True),
        ],
        "degraded": True, "problems": ["eth3: MII down"], "source": "procfs",
    },
    "alb-2x1g-healthy": {
        "name": "bond0", "mode": "balance-alb", "mii_status": "up", "active_slave": "eno1", "speed_mbps": 2000,
        "slaves": [
            slave("enp5s0", **UP_1G, perm_hwaddr="00:30:64:5c:e2:4b", ok=True),
            slave("eno1", **UP_1G, perm_hwaddr="00:30:64:5c:e2:4a", ok=True),
        ],
        "degraded": False, "source": "procfs",
    },
    "alb-2x1g-healthy-old-kernel": {
        "name": "bond0", "mode": "balance-alb", "mii_status": "up", "active_slave": "ens36", "speed_mbps": 2000,
        "slaves": [
            slave("ens35", **UP_1G, perm_hwaddr="00:0c:29:2f:f9:7d", ok=True),
            slave("ens36", **UP_1G, perm_hwaddr="00:0c:29:2f:f9:87", ok=True),
        ],
        "degraded": False, "source": "procfs",
    },
    "alb-no-slaves-down": {
        "name": "bond0", "mode": "balance-alb", "mii_status": "down", "speed_mbps": 0, "slaves": [],
        "degraded": True, "problems": ["no slaves"], "source": "procfs",
    },
    "lacp-2x1g-one-port-not-in-sync": {
        "name": "bond0", "mode": "802.3ad", "mii_status": "up", "speed_mbps": 1000, "xmit_hash_policy": "layer2",
        "lacp_rate": "fast", "active_aggregator_id": 1, "partner_mac": "8a:a3:b3:dc:c5:fb",
        "slaves": [
            slave("eth1", **UP_1G, perm_hwaddr="08:00:27:63:6a:11",
                  **{**lacp_ok(1, 15, 55), "partner_churn": "churned", "partner_churned": 1},
                  ok=False, problem="LACP not distributing (actor state 15)"),
            slave("eth2", **UP_1G, perm_hwaddr="08:00:27:81:2d:34", **lacp_ok(1, 63, 63), ok=True),
        ],
        "degraded": True, "problems": ["eth1: LACP not distributing (actor state 15)"], "source": "procfs",
    },
    "lacp-2x25g-healthy": {
        "name": "bond0", "mode": "802.3ad", "mii_status": "up", "speed_mbps": 50000,
        "xmit_hash_policy": "layer3+4", "lacp_rate": "slow", "active_aggregator_id": 1,
        "partner_mac": "3c:c7:86:43:ac:f1",
        "slaves": [
            slave("lan03", mii_status="up", speed_mbps=25000, duplex="full", link_failures=0,
                  perm_hwaddr="5c:6f:69:c8:32:c0", **lacp_ok(1, 61, 61), ok=True),
            slave("lan04", mii_status="up", speed_mbps=25000, duplex="full", link_failures=0,
                  perm_hwaddr="5c:6f:69:c8:32:c1", **lacp_ok(1, 61, 61), ok=True),
        ],
        "degraded": False, "source": "procfs",
    },
    "lacp-2x40g-no-partner-churned": {
        "name": "bond0", "mode": "802.3ad", "mii_status": "up", "speed_mbps": 0, "xmit_hash_policy": "layer2",
        "lacp_rate": "slow", "active_aggregator_id": 2, "partner_mac": "00:00:00:00:00:00",
        "slaves": [
            slave("enp145s0f0", mii_status="up", speed_mbps=40000, duplex="full", link_failures=1,
                  perm_hwaddr="f4:1d:6b:6f:3b:97", aggregator_id=1, actor_port_state=69, partner_port_state=1,
                  actor_churn="churned", partner_churn="churned", actor_churned=1, partner_churned=2,
                  ok=False, problem="not in active aggregator 2"),
            slave("enp145s0f1", mii_status="up", speed_mbps=40000, duplex="full", link_failures=0,
                  perm_hwaddr="f4:1d:6b:6f:3b:98", aggregator_id=2, actor_port_state=77, partner_port_state=1,
                  actor_churn="none", partner_churn="churned", actor_churned=0, partner_churned=1,
                  ok=False, problem="no LACP partner"),
        ],
        "degraded": True, "problems": ["enp145s0f0: not in active aggregator 2", "enp145s0f1: no LACP partner"],
        "source": "procfs",
    },
    "lacp-no-active-aggregator-old-kernel": {
        # No Speed/Duplex lines on this driver: speeds unknown (None), never 0; "Aggregator ID: N/A".
        "name": "bond0", "mode": "802.3ad", "mii_status": "up", "speed_mbps": 0, "xmit_hash_policy": "layer2",
        "lacp_rate": "fast",
        "slaves": [
            slave("eth1", mii_status="up", link_failures=0, perm_hwaddr="00:0c:29:f5:b7:11", ok=False,
                  problem="no active aggregator"),
            slave("eth2", mii_status="up", link_failures=3, perm_hwaddr="00:0c:29:f5:b7:1b", ok=False,
                  problem="no active aggregator"),
        ],
        "degraded": True, "problems": ["eth1: no active aggregator", "eth2: no active aggregator"],
        "source": "procfs",
    },
}


def as_dict(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def roots(scenario: str | Path) -> Roots:
    top = scenario if isinstance(scenario, Path) else SYSFS / scenario
    return Roots(proc=str(top / "proc"), sys=str(top / "sys"))


def collect(scenario: str | Path) -> list[dict[str, Any]]:
    return as_dict(BondsCollector(Context(node="n1", roots=roots(scenario))).collect())


# ---------------------------------------------------------------------------------------------
# procfs: every real file
# ---------------------------------------------------------------------------------------------


def test_every_real_procfs_file_has_an_expectation() -> None:
    files = {p.name for p in PROCFS.iterdir() if p.name != "README.md"}
    assert files == set(PROCFS_EXPECTED)


@pytest.mark.parametrize("name", sorted(PROCFS_EXPECTED))
def test_parse_real_procfs_file(name: str) -> None:
    parsed = bonding.parse_procfs("bond0", (PROCFS / name).read_text())
    assert as_dict(bonding.judge(parsed)) == PROCFS_EXPECTED[name]


@pytest.mark.parametrize("name", sorted(PROCFS_EXPECTED))
def test_collector_reads_procfs_without_sysfs(tmp_path: Path, name: str) -> None:
    """A node where only /proc/net/bonding is visible (sysfs not mounted in the agent's container)."""
    (tmp_path / "proc" / "net" / "bonding").mkdir(parents=True)
    shutil.copy(PROCFS / name, tmp_path / "proc" / "net" / "bonding" / "bond0")
    (tmp_path / "sys").mkdir()
    assert collect(tmp_path) == [PROCFS_EXPECTED[name]]


def test_tabs_and_spaces_in_the_aggregator_block_parse_the_same() -> None:
    text = (PROCFS / "lacp-2x40g-no-partner-churned").read_text()
    assert "         Aggregator ID: 2" in text  # spaces in this file; the 25g one uses tabs
    tabbed = text.replace("         Aggregator ID", "\tAggregator ID").replace("     port state", "\tport state")
    assert as_dict(bonding.judge(bonding.parse_procfs("bond0", tabbed))) == \
        PROCFS_EXPECTED["lacp-2x40g-no-partner-churned"]


@given(name=st.sampled_from(sorted(PROCFS_EXPECTED)), cut=st.integers(min_value=0, max_value=2000),
       noise=st.text(max_size=40))
def test_truncated_or_garbled_procfs_never_raises(name: str, cut: int, noise: str) -> None:
    """A read that races the driver can end mid-line; the parser must degrade to fewer facts, not fail."""
    text = (PROCFS / name).read_text()
    bond = bonding.judge(bonding.parse_procfs("bond0", text[:cut] + noise))
    real = {s["name"] for s in PROCFS_EXPECTED[name]["slaves"]}
    names = [s.name for s in bond.slaves or ()]
    assert all(n in real for n in names[:-1])  # only the slave the cut or noise landed in may be mangled
    assert bond.degraded is not None and (bond.degraded or bool(names))


# ---------------------------------------------------------------------------------------------
# sysfs trees
# ---------------------------------------------------------------------------------------------

ALB_SLAVE = {**UP_1G, "state": "active", "ok": True}


def test_sysfs_healthy_3x1g_balance_alb() -> None:
    assert collect("healthy") == [{
        "name": "bond0", "mode": "balance-alb", "mii_status": "up", "active_slave": "eno1", "speed_mbps": 3000,
        "slaves": [
            slave("eno1", **ALB_SLAVE, perm_hwaddr="a8:a1:59:3c:10:01"),
            slave("enp5s0", **ALB_SLAVE, perm_hwaddr="00:1b:21:bc:4e:20"),
            slave("enp6s0", **ALB_SLAVE, perm_hwaddr="00:1b:21:bc:4e:21"),
        ],
        "degraded": False, "source": "sysfs",
    }]


def test_sysfs_degraded_mii_down_and_lacp_not_distributing() -> None:
    bond0, bond1 = collect("degraded")
    assert bond0 == {
        "name": "bond0", "mode": "balance-alb", "mii_status": "up", "active_slave": "eno1", "speed_mbps": 2000,
        "slaves": [
            slave("eno1", **ALB_SLAVE, perm_hwaddr="a8:a1:59:3c:10:01"),
            slave("enp5s0", **ALB_SLAVE, perm_hwaddr="00:1b:21:bc:4e:20"),
            # sysfs speed -1 and duplex "unknown" on a down link: None, not 0.
            # alb keeps every slave "active" in sysfs (bond_set_slave_inactive_flags skips lb modes).
            slave("enp6s0", mii_status="down", link_failures=3, perm_hwaddr="00:1b:21:bc:4e:21",
                  state="active", ok=False, problem="MII down"),
        ],
        "degraded": True, "problems": ["enp6s0: MII down"], "source": "sysfs",
    }
    assert bond1 == {
        "name": "bond1", "mode": "802.3ad", "mii_status": "up", "speed_mbps": 10000,
        "xmit_hash_policy": "layer3+4", "lacp_rate": "fast", "active_aggregator_id": 1,
        "partner_mac": "3c:c7:86:43:ac:f1",
        "slaves": [
            # churn from procfs, state (active/backup) from sysfs: the two views merged
            slave("ens2f0", mii_status="up", speed_mbps=10000, duplex="full", link_failures=0,
                  perm_hwaddr="b4:96:91:0a:22:40", state="active", **lacp_ok(1, 63, 63), ok=True),
            # 802.3ad marks a port that is not collecting/distributing inactive: "backup".
            slave("ens2f1", mii_status="up", speed_mbps=10000, duplex="full", link_failures=0,
                  perm_hwaddr="b4:96:91:0a:22:41", state="backup",
                  **{**lacp_ok(1, 15, 63), "partner_churn": "churned", "partner_churned": 1},
                  ok=False, problem="LACP not distributing (actor state 15)"),
        ],
        "degraded": True, "problems": ["ens2f1: LACP not distributing (actor state 15)"],
        "source": "procfs+sysfs",
    }


def test_sysfs_only_802_3ad_judges_lacp_from_sysfs(tmp_path: Path) -> None:
    """Same degraded tree without the procfs file: sysfs alone still finds the LACP fault."""
    shutil.copytree(SYSFS / "degraded" / "sys", tmp_path / "sys", symlinks=True)
    bond1 = collect(tmp_path)[1]
    assert bond1["source"] == "sysfs"
    assert bond1["problems"] == ["ens2f1: LACP not distributing (actor state 15)"]
    assert "actor_churn" not in bond1["slaves"][1]  # churn is procfs-only: unknown, not "none"


def test_procfs_file_unreadable_falls_back_to_sysfs(tmp_path: Path) -> None:
    """An unreadable /proc/net/bonding/bond0 (here a directory, so open() fails with an OSError as a
    permission error would; tests run as root, which chmod cannot stop) leaves the sysfs view."""
    shutil.copytree(SYSFS / "degraded" / "sys", tmp_path / "sys", symlinks=True)
    (tmp_path / "proc" / "net" / "bonding" / "bond0").mkdir(parents=True)
    bond0 = collect(tmp_path)[0]
    assert bond0["source"] == "sysfs"
    assert [(s["name"], s["mii_status"]) for s in bond0["slaves"]] == [
        ("eno1", "up"), ("enp5s0", "up"), ("enp6s0", "down")]
    assert bond0["degraded"] is True


def test_sysfs_bond_with_no_slaves() -> None:
    assert collect("empty") == [{
        "name": "bond0", "mode": "balance-alb", "mii_status": "down", "speed_mbps": 0, "slaves": [],
        "degraded": True, "problems": ["no slaves"], "source": "sysfs",
    }]


def test_sysfs_old_layout_slave_links_active_backup() -> None:
    assert os.path.islink(SYSFS / "old-layout" / "sys" / "class" / "net" / "bond0" / "slave_eth0")
    assert collect("old-layout") == [{
        "name": "bond0", "mode": "active-backup", "mii_status": "up", "active_slave": "eth0",
        "primary_slave": "eth0", "speed_mbps": 1000,  # the backup does not add capacity
        "slaves": [
            slave("eth0", mii_status="up", speed_mbps=1000, duplex="full", link_failures=1,
                  perm_hwaddr="52:54:00:12:34:56", state="active", ok=True),
            slave("eth1", **UP_1G, perm_hwaddr="52:54:00:12:34:57", state="backup", ok=True),
        ],
        "degraded": False, "source": "sysfs",
    }]


def test_no_bonds_is_an_empty_list() -> None:
    assert collect("none") == []
    assert read_bonds(Roots(proc="/nonexistent/proc", sys="/nonexistent/sys")) == []


def test_no_active_aggregator_and_hidden_partner_mac_from_sysfs() -> None:
    """sysfs ad_aggregator reads 0 when there is no active aggregator; ad_partner_mac reads empty
    without CAP_NET_ADMIN, which must stay unknown and not become "no LACP partner"."""
    lacp = {"mii_status": "up", "ad_aggregator_id": "1", "ad_actor_oper_port_state": "61",
            "ad_partner_oper_port_state": "61", "speed": "10000"}
    master = {"mode": "802.3ad 4", "slaves": "p0", "mii_status": "up", "ad_aggregator": "0",
              "ad_partner_mac": ""}
    none = bonding.judge(bonding.from_sysfs("bond9", master, {"p0": lacp}))
    assert none.problems == ["p0: no active aggregator"]
    hidden = bonding.judge(bonding.from_sysfs("bond9", {**master, "ad_aggregator": "1"}, {"p0": lacp}))
    assert (hidden.partner_mac, hidden.degraded, hidden.speed_mbps) == (None, False, 10000)


@pytest.mark.parametrize(("text", "expected"), [
    ("1000 Mbps", 1000), ("25000", 25000), ("Unknown", None), ("-1", None), ("65535", None),
    ("4294967295", None), ("", None), (None, None),
])
def test_speed_unknown_is_none(text: str | None, expected: int | None) -> None:
    assert bonding.speed_mbps(text) == expected


def test_partner_not_in_sync_is_named() -> None:
    assert bonding.lacp_problem(55, "partner") == "LACP partner not in sync (partner state 55)"
    assert bonding.lacp_problem(69, "actor") == "LACP not in sync (actor state 69)"
    assert bonding.lacp_problem(61, "actor") is None


# ---------------------------------------------------------------------------------------------
# throughput: two samples, rates computed by hand (fixtures/bonds/README.md)
# ---------------------------------------------------------------------------------------------


def test_per_slave_throughput_between_two_samples(tmp_path: Path) -> None:
    # The root is a symlink the test re-points from t0 to t1: the collector reads real files each call.
    root = tmp_path / "root"
    root.symlink_to(SYSFS / "throughput" / "t0")
    now = [100.0]
    c = BondsCollector(Context(node="n1", roots=roots(root)), clock=lambda: now[0])  # fake clock: exact rates
    first = c.collect()[0]
    assert [(s.rx_bytes_s, s.tx_bytes_s) for s in first.slaves or ()] == [(None, None)] * 3  # no rate yet
    root.unlink()
    root.symlink_to(SYSFS / "throughput" / "t1")
    now[0] = 102.0
    second = c.collect()[0]
    assert {s.name: (s.rx_bytes_s, s.tx_bytes_s) for s in second.slaves or ()} == {
        "eno1": (125_000_000.0, 50_000.0),
        "enp5s0": (0.0, 2_000_000.0),
        "enp6s0": (None, 0.0),  # rx counter went backwards: reset, not negative traffic
    }


# ---------------------------------------------------------------------------------------------
# contract: registry, wire, alerts
# ---------------------------------------------------------------------------------------------


def test_registry_loads_the_collector_and_the_wire_round_trips() -> None:
    c = base.load("bonds", Context(node="n1", roots=roots("degraded")))
    assert (c.name, c.field, c.scope) == ("bonds", "bonds", "node")
    snap = schema.NodeSnapshot(host="n1", bonds=c.collect())
    back = msgspec.json.decode(msgspec.json.encode(snap), type=schema.NodeSnapshot)
    assert back.bonds == snap.bonds


def test_alerts_read_well() -> None:
    bonds = BondsCollector(Context(node="n1", roots=roots("degraded"))).collect()
    bonds += BondsCollector(Context(node="n1", roots=roots("empty"))).collect()
    node = NodeView(host="n1", state="up", snap=schema.NodeSnapshot(host="n1", bonds=bonds))
    got = sorted((a.severity, a.message) for a in cluster.alerts([node]) if a.source == "bond")
    assert got == [
        ("critical", "bond bond0 degraded: no slaves"),  # no slave works at all
        ("warning", "bond bond0 degraded: enp6s0: MII down"),
        ("warning", "bond bond1 degraded: ens2f1: LACP not distributing (actor state 15)"),
    ]


def test_node_without_bonding_driver_is_looked_at_again_every_ten_seconds(tmp_path: Path) -> None:
    """No bonding driver (neither bonding_masters nor /proc/net/bonding): nothing is looked up again for
    ABSENT_RECHECK_S, then a bond made meanwhile (``modprobe bonding``) is found. With the driver loaded
    and no bond (an empty bonding_masters) every tick looks."""
    from clustertop.collectors import bonds as bonds_mod

    (tmp_path / "proc").mkdir()
    (tmp_path / "sys" / "class" / "net").mkdir(parents=True)
    now = [100.0]
    c = BondsCollector(Context(node="n1", roots=roots(tmp_path)), clock=lambda: now[0])
    assert c.collect() == []
    (tmp_path / "proc" / "net" / "bonding").mkdir(parents=True)
    shutil.copy(PROCFS / sorted(PROCFS_EXPECTED)[0], tmp_path / "proc" / "net" / "bonding" / "bond0")
    now[0] += bonds_mod.ABSENT_RECHECK_S - 0.5
    assert c.collect() == []  # not looked for yet
    now[0] += 1.0
    assert [b.name for b in c.collect()] == ["bond0"]
    # the driver loaded, no bond: every tick looks again
    shutil.rmtree(tmp_path / "proc" / "net" / "bonding")
    (tmp_path / "sys" / "class" / "net" / "bonding_masters").write_text("\n")
    now[0] += 1.0
    assert c.collect() == []
    (tmp_path / "sys" / "class" / "net" / "bonding_masters").write_text("bond1\n")
    (tmp_path / "proc" / "net" / "bonding").mkdir(parents=True)
    shutil.copy(PROCFS / sorted(PROCFS_EXPECTED)[0], tmp_path / "proc" / "net" / "bonding" / "bond1")
    now[0] += 1.0
    assert [b.name for b in c.collect()] == ["bond1"]
