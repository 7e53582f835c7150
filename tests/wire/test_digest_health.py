"""Digest alerts for issue 16 (XID errors, GPU memory repair, CPU/SoC hot and throttled), their rule names,
and that a brief keeps what they read (the digest of a brief equals the digest of the full snapshot)."""

from __future__ import annotations

from pathlib import Path

from clustertop.alerting.rules import RULES
from clustertop.collectors.base import Context, Roots
from clustertop.collectors.sensors import SensorsCollector
from clustertop.read.cluster import digest_rule
from clustertop.wire import digest as dg
from clustertop.wire import schema
from clustertop.wire.brief import brief
from tests.conftest import FIXTURES
from tests.support import builders as b


def sensors(board: str) -> schema.Sensors:
    return SensorsCollector(Context(node="n", roots=Roots(sys=str(FIXTURES / "sensors" / board / "sys")))).collect()


def alerts_of(snap: schema.NodeSnapshot) -> dict[str, tuple[str, str]]:
    return {a.message: (a.severity, digest_rule(a.source, a.message)) for a in dg.node_alerts(snap)}


def test_xid_alert_within_the_hour_critical_for_hardware_codes() -> None:
    g79 = b.gpu(0, 10, xid_errors=1, xid_last=79, xid_last_ts=b.NOW - 60)
    g31 = b.gpu(1, 10, xid_errors=4, xid_last=31, xid_last_ts=b.NOW - 60)
    old = b.gpu(2, 10, xid_errors=9, xid_last=48, xid_last_ts=b.NOW - 2 * 3600)
    none = b.gpu(3, 10, xid_errors=0)
    got = alerts_of(b.node("n1", gpus=[g79, g31, old, none]))
    assert got["GPU 0: XID 79 (1 since agent start)"] == ("critical", "GpuXid")
    assert got["GPU 1: XID 31 (4 since agent start)"] == ("warning", "GpuXid")
    assert not any("GPU 2" in m or "GPU 3" in m for m in got)  # an XID two hours ago is history, not an alert


def test_memory_repair_alerts() -> None:
    failed = b.gpu(0, 10, remapped_rows=5, remap_failed=True, remap_pending=True)
    pending = b.gpu(1, 10, remapped_rows=1, remap_pending=True, remap_failed=False)
    retire = b.gpu(2, 10, retired_pages=3, retired_pending=True)
    got = alerts_of(b.node("n1", gpus=[failed, pending, retire]))
    assert got["GPU 0: row remapping failed, the card needs service"] == ("critical", "GpuMemoryRepair")
    assert got["GPU 1: memory repair pending, reset the GPU"] == ("warning", "GpuMemoryRepair")
    assert got["GPU 2: memory repair pending, reset the GPU"] == ("warning", "GpuMemoryRepair")


def test_cpu_hot_and_throttled_on_the_arm_board_not_on_the_cool_server() -> None:
    arm = b.node("arm-01", gpus=[])
    arm.sensors = sensors("arm-board")
    got = alerts_of(arm)
    assert got["CPU hot: 87 °C"] == ("warning", "CpuHot")
    assert got["CPU thermally throttled (2 cooling devices active)"] == ("warning", "CpuThrottled")
    x86 = b.node("x86-01", gpus=[])
    x86.sensors = sensors("x86-server")
    assert not [m for m in alerts_of(x86) if m.startswith("CPU")]
    x86.sensors.throttle_new, x86.sensors.throttled = 3, True
    assert alerts_of(x86)["CPU thermally throttled (3 throttle events)"] == ("warning", "CpuThrottled")


def test_every_new_rule_is_known_to_the_rule_set() -> None:
    for rule in ("GpuXid", "GpuMemoryRepair", "CpuHot", "CpuThrottled"):
        assert rule in RULES


def test_a_brief_keeps_what_the_new_alerts_read(tmp_path: Path) -> None:
    g = b.gpu(0, 10, xid_errors=2, xid_last=48, xid_last_ts=b.NOW - 5, remap_pending=True, remapped_rows=2,
              cuda_version="12.4", pcie_gen=4, pcie_width=16)
    for board in ("arm-board", "x86-server"):
        snap = b.node("n1", gpus=[g, b.gpu(1, 5)])
        snap.sensors = sensors(board)
        full, cut = dg.digest(snap), dg.digest(brief(snap))
        assert full == cut
        assert full.rules == dg.RULES == 3
        bs = brief(snap).sensors
        assert bs is not None and len(bs.temps or ()) <= 1  # the brief carries one reading, not the list


def test_hostile_sensor_figures_make_no_alert_and_no_crash() -> None:
    snap = b.node("n1", gpus=[b.gpu(0, 10, xid_errors=2**64 - 1, xid_last=None, xid_last_ts=float("nan"))])
    snap.sensors = schema.Sensors(cpu_temp_c=float("nan"), throttled=True, throttle_new=2**64 - 1, temps=[
        schema.TempSensor(source="hwmon", temp_c=float("nan"), cpu=True),
        schema.TempSensor(source="hwmon", temp_c=float("inf"), high_c=float("nan"), cpu=True)])
    got = alerts_of(snap)
    assert "CPU thermally throttled (? throttle events)" in got
    assert not [m for m in got if m.startswith("CPU hot")]
    assert not [m for m in got if "XID" in m]  # a NaN time is not "within the hour"
