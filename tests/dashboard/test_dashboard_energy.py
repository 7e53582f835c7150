"""The energy screen (e), the GPU health facts on the node screen and in the GPU table, the CPU/SoC
sensors section and CUDA cores in the header, driven with Pilot against a real redis-server. Ledgers are
written by the agent's own Ledger (agents/energy.py) through the agent's RESP client; hostile ledgers
and figures are written raw."""

from __future__ import annotations

from typing import Any

import pytest

from clustertop import wire
from clustertop.agents.energy import EnergySection, Ledger
from clustertop.collectors.base import Context, Roots
from clustertop.collectors.sensors import SensorsCollector
from clustertop.dashboard.app import make_app
from clustertop.dashboard.health import gpu_health, pcie, sensors_section
from clustertop.dashboard.screens.energy import EnergyScreen
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.header import ClusterHeader, cuda_cores
from clustertop.store.resp import Client
from clustertop.wire import schema
from tests.conftest import FIXTURES
from tests.support import builders as b
from tests.support.hostile import NASTY as STRINGS

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text_of(app: Any, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def write_ledger(client: Client, host: str, t0: float, procs: list[schema.GpuProc], price: float | None = 0.30) -> None:
    led = Ledger(host, EnergySection(price_per_kwh=price, currency="EUR"))
    for i in range(0, 601, 10):  # 10 minutes at 360 W: 0.06 kWh per GPU
        g0 = b.gpu(0, 90, power_w=360.0, procs=procs)
        g1 = b.gpu(1, 0, power_w=360.0, procs=[])
        led.observe(schema.NodeSnapshot(host=host, ts=t0 + i, gpus=[g0, g1],
                                        collectors={"gpu": schema.CollectorStatus(ok=True, last_ok_ts=t0 + i)}))
    led.save(client, t0 + 600, force=True)


async def test_energy_screen_shows_kwh_cost_and_gpu_hours(redis_server: Any) -> None:
    client = Client.from_url(redis_server.url)
    snaps = [b.node("gpu-01", gpus=[b.gpu(0, 90), b.gpu(1, 0)]), b.node("gpu-02", gpus=[b.gpu(0, 50)])]
    b.publish(redis_server.client(), snaps)
    t0 = b.NOW - 600
    write_ledger(client, "gpu-01", t0, [b.gpu_proc(4242, user="alice", mem_gib=6.0, pod="train-7f9c"),
                                        b.gpu_proc(4243, user="bob", mem_gib=2.0)])
    client.set(wire.energy_key("gpu-02"), b"\xc1 not a ledger")  # one bad node: named, not zero
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test"), redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("e")
        await b.wait_until(pilot, lambda: isinstance(app.screen, EnergyScreen) and app.screen.windows is not None,
                           "the ledgers read")
        await pilot.pause()
        summary = text_of(app, "#energy-summary")
        assert "0.120 kWh" in summary  # two GPUs, 10 minutes at 360 W each
        assert "price 0.3 EUR/kWh" in summary and "0.04 EUR" in summary  # 0.12 kWh x 0.30
        assert "gpu-02: bad energy data" in summary
        assert "share of the GPU memory" in summary
        users = text_of(app, "#energy-user")
        alice = next(line for line in users.splitlines() if line.startswith("alice"))
        bob = next(line for line in users.splitlines() if line.startswith("bob"))
        # 3:1 by GPU memory of GPU 0's 0.06 kWh and 10 GPU-minutes: kWh 1 h / 24 h, cost 1 h / 24 h, GPU-h 1 h / 24 h
        assert alice.split()[1:] == ["0.045", "0.045", "0.01", "0.01", "0.12", "0.12"]
        assert bob.split()[1:] == ["0.015", "0.015", "0.00", "0.00", "0.04", "0.04"]
        gpus = text_of(app, "#energy-gpu")
        assert "power" in gpus and "gpu-01" in gpus
        assert "ml/train-7f9c" in text_of(app, "#energy-pod")
        assert "0.060" in text_of(app, "#energy-idle")


async def test_energy_screen_survives_hostile_ledgers(redis_server: Any) -> None:
    client = Client.from_url(redis_server.url)
    hosts = [f"n{i}" for i in range(len(STRINGS[:6]))]
    b.publish(redis_server.client(), [b.node(h, gpus=[b.gpu(0, 10)]) for h in hosts])
    for h, s in zip(hosts, STRINGS[:6], strict=True):
        led = schema.EnergyLedger(host=h, ts=b.NOW, since_ts=float("nan"), price_per_kwh=float("nan"), currency=s[:8],
                                  recent={int(b.NOW // 300 * 300): [
                                      schema.EnergyUse(kind="user", name=s, joules=1e300, gpu_s=float("inf")),
                                      schema.EnergyUse(kind="gpu", name=s, joules=3.6e6, gpu_s=3600, method=s)]},
                                  hours={int(b.NOW // 3600 * 3600): [
                                      schema.EnergyUse(kind="user", name=s, joules=3.6e6, gpu_s=3600)]})
        client.set(wire.energy_key(h), wire.encode(led))
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test"), redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("e")
        await b.wait_until(pilot, lambda: isinstance(app.screen, EnergyScreen) and app.screen.windows is not None,
                           "the ledgers read")
        await pilot.pause()
        shot = app.export_screenshot()
        assert "\x1b" not in text_of(app, "#energy-user") and "\u202e" not in text_of(app, "#energy-user")
        assert "figures that are no energy left out" in text_of(app, "#energy-summary")
        assert "1e+300" not in shot and "inf" not in text_of(app, "#energy-user")


async def test_energy_screen_without_ledgers_says_so(redis_server: Any) -> None:
    b.publish(redis_server.client(), [b.node("cpu-01", gpus=[])])
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test"), redis_server.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("e")
        await b.wait_until(pilot, lambda: isinstance(app.screen, EnergyScreen) and app.screen.windows is not None,
                           "the ledgers read")
        await pilot.pause()
        assert "0 node ledgers" in text_of(app, "#energy-summary")
        assert "none in the last 24 h" in text_of(app, "#energy-user")


async def test_node_screen_shows_gpu_health_and_sensors(redis_server: Any) -> None:
    g = b.gpu(0, 90, cuda_version="12.4", pcie_gen=1, pcie_width=16, pcie_gen_max=3, pcie_width_max=16,
              xid_errors=2, xid_last=79, xid_last_ts=b.NOW - 5, remapped_rows=3, remap_pending=True)
    sensors = SensorsCollector(Context(node="n", roots=Roots(sys=str(FIXTURES / "sensors" / "arm-board" / "sys")))).collect()
    snap = b.node("gpu-01", gpus=[g, b.gpu(1, 0)])
    snap.sensors = sensors
    b.publish(redis_server.client(), [snap])
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test"), redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        app.open_node("gpu-01")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        await b.wait_until(pilot, lambda: "CUDA 12.4" in text_of(app, "#gpus"), "the node drawn")
        gpus = text_of(app, "#gpus")
        assert "PCIe Gen1 x16 of Gen3 x16" in gpus and "XID 2, last 79" in gpus
        assert "remapped rows 3 reset pending" in gpus and "driver 550.54.14" in gpus
        assert "XID N/A" in gpus  # GPU 1 does not say: unknown, not "none"
        s = text_of(app, "#sensors")
        assert "87 °C" in s and "slows at 75 °C" in s and "THROTTLED (2 cooling devices)" in s
        assert "bigcore0-thermal" in s
        header = app.screen.query_one(ClusterHeader).text
        assert "7,168 CUDA cores" in header  # 2 x 3584


def test_health_facts_hostile_and_unknown() -> None:
    g = schema.Gpu(index=0)
    text = "\n".join(str(c) for c in gpu_health(g, 200))
    assert "driver N/A CUDA N/A" in text and "PCIe N/A" in text and "XID N/A" in text and "retired pages N/A" in text
    for s in STRINGS:
        bad = schema.Gpu(index=0, driver=s, cuda_version=s, throttle_reasons=[s], xid_errors=2**64 - 1, xid_last=2**63,
                         pcie_gen=2**64 - 1, remapped_rows=2**64 - 1)
        out = "\n".join(str(c) for c in gpu_health(bad, 80))
        assert "\x1b" not in out and "\u202e" not in out
        assert str(2**64 - 1) not in out
    assert pcie(schema.Gpu(index=0, pcie_gen=4, pcie_width=16, pcie_gen_max=4, pcie_width_max=16)) == "Gen4 x16"
    assert cuda_cores(20000) == "20,000" and cuda_cores(None) == "N/A" and cuda_cores(2**64 - 1) == "N/A"
    none = str(sensors_section(None, 80))
    assert "N/A" in none
    hostile = schema.Sensors(cpu_temp_c=float("nan"), temps=[schema.TempSensor(source="hwmon", chip=STRINGS[0], temp_c=1e308,
                                                                                 cpu=True)])
    out = str(sensors_section(hostile, 80))
    assert "N/A" in out and "1e+308" not in out
