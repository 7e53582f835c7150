"""The exporter's GPU health and CPU/SoC sensor series (issue 16), from snapshots published into a real
redis-server, read strictly, by prometheus_client and linted by promtool (``test_exporter.check``)."""

from __future__ import annotations

import time
from typing import Any

from clustertop.collectors.base import Context, Roots
from clustertop.collectors.sensors import SensorsCollector
from clustertop.export.exporter import Exporter
from tests.conftest import FIXTURES
from tests.export.test_exporter import check, scrape
from tests.support import builders as b


def sensors(board: str) -> Any:
    return SensorsCollector(Context(node="n", roots=Roots(sys=str(FIXTURES / "sensors" / board / "sys")))).collect()


def test_gpu_health_and_sensor_series(redis_server: Any) -> None:
    client = redis_server.client()
    now = time.time()
    g = b.gpu(0, 90, xid_errors=3, xid_last=79, xid_last_ts=now - 5, pcie_gen=4, pcie_width=16, remapped_rows=2,
              remap_pending=True, remap_failed=False)
    x86 = b.node("x86-01", ts=now, gpus=[g, b.gpu(1, 0)])
    x86.sensors = sensors("x86-server")
    arm = b.node("arm-01", ts=now, gpus=[])
    arm.sensors = sensors("arm-board")
    b.publish(client, [x86, arm])
    fams = check(scrape(Exporter(client)))
    one = {"node": "x86-01", "gpu": "0"}
    assert fams["DCGM_FI_DEV_XID_ERRORS"].get(**one) == 79
    assert fams["clustertop_gpu_xid_errors_total"].get(**one) == 3
    assert fams["DCGM_FI_DEV_PCIE_LINK_GEN"].get(**one) == 4
    assert fams["DCGM_FI_DEV_PCIE_LINK_WIDTH"].get(**one) == 16
    assert fams["clustertop_gpu_remapped_rows"].get(**one) == 2
    assert fams["DCGM_FI_DEV_ROW_REMAP_PENDING"].get(**one) == 1
    # GPU 1 says nothing of XIDs or its link: no series, never a 0.
    assert not fams["DCGM_FI_DEV_XID_ERRORS"].where(node="x86-01", gpu="1")
    assert not fams["DCGM_FI_DEV_PCIE_LINK_GEN"].where(node="x86-01", gpu="1")
    # Two packages' "Core 0" are two series (the hwmon entry keeps them apart).
    cores = fams["node_hwmon_temp_celsius"].where(node="x86-01", sensor="Core 0")
    assert len(cores) == 2 and sorted(cores.values()) == [45.0, 58.0]
    assert fams["node_thermal_zone_temp"].get(node="arm-01", type="bigcore0-thermal", zone="1") == 86.538
    assert fams["clustertop_node_cpu_temperature_celsius"].get(node="x86-01") == 61.0
    assert fams["clustertop_node_cpu_thermal_throttled"].get(node="arm-01") == 1
    assert fams["clustertop_node_cpu_thermal_throttles_total"].get(node="x86-01") == 16
    assert not fams["clustertop_node_cpu_thermal_throttles_total"].where(node="arm-01")  # ARM has no counters


def test_energy_windows_from_the_agents_ledgers(redis_server: Any) -> None:
    from clustertop import wire
    from clustertop.agents.energy import Ledger
    from clustertop.wire import schema

    client = redis_server.client()
    now = time.time()
    b.publish(client, [b.node("gpu-01", ts=now, gpus=[b.gpu(0, 90)]), b.node("gpu-02", ts=now, gpus=[b.gpu(0, 10)])])
    led = Ledger("gpu-01")
    procs = [b.gpu_proc(7, user="alice", mem_gib=3.0, pod="train-0")]
    for i in range(0, 61, 10):
        led.observe(schema.NodeSnapshot(host="gpu-01", ts=now - 60 + i, gpus=[b.gpu(0, 90, power_w=360.0, procs=procs)],
                                        collectors={"gpu": schema.CollectorStatus(ok=True, last_ok_ts=now - 60 + i)}))
    client.set(wire.energy_key("gpu-01"), wire.encode(led.payload(now)))
    client.set(wire.energy_key("gpu-02"), b"\xc1 garbage")  # left out, the page goes on
    fams = check(scrape(Exporter(client)))
    e = fams["clustertop_energy_joules"]
    assert e.get(kind="node", name="gpu-01", window="1h") == 360.0 * 60
    assert e.get(kind="user", name="alice", window="24h") == 360.0 * 60
    assert e.get(kind="pod", name="ml/train-0", window="1h") == 360.0 * 60
    assert fams["clustertop_energy_gpu_seconds"].get(kind="user", name="alice", window="1h") == 60.0
    assert not e.where(name="gpu-02")
