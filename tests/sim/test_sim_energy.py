"""The simulated cluster publishes what the real agents do for issue 16: energy ledgers (power-integrated:
its GTX 1080 Ti cards have no energy counter, as NVML says of Pascal), GPU health fields and CPU/SoC
sensors; into a real redis-server, read back through the read side."""

from __future__ import annotations

from typing import Any

from clustertop import wire
from clustertop.read.energy import windows
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from clustertop.wire import schema
from clustertop.wire.digest import cpu_hot


def test_sim_publishes_ledgers_health_and_sensors(redis_server: Any) -> None:
    client = redis_server.client()
    sim = SimCluster(seed=1)
    pubs = make_publishers(sim, client, sim.interval_s)
    t0 = 1_800_000_000.0
    snaps: list[schema.NodeSnapshot] = []
    for i in range(40):
        publish(client, sim, t0 + i, pubs)
    for h in sim.hosts:
        raw = client.get(wire.node_key(h))
        snaps.append(wire.decode(raw, schema.NodeSnapshot))
    towers = [s for s in snaps if s.gpus]
    arms = [s for s in snaps if s.gpus == []]
    assert towers and arms
    for s in towers:
        assert all(g.energy_mj is None for g in s.gpus or ())  # Pascal: no counter
        assert all(g.cuda_version == "12.2" and g.pcie_gen in (1, 3) and g.xid_errors == 0 for g in s.gpus or ())
        assert all(g.retired_pages is None and g.remapped_rows is None for g in s.gpus or ())
        assert s.sensors is not None and s.sensors.cpu_temp_c is not None
    assert all(s.sensors is not None and s.sensors.throttled is not None for s in arms)
    ledgers = [wire.decode(client.get(wire.energy_key(s.host)), schema.EnergyLedger) for s in towers]
    w = windows(ledgers, t0 + 40)
    gpu_rows = w.rows("gpu")
    assert gpu_rows and all(day.method == "power" for day, _ in gpu_rows)
    node_j = sum(u.joules for (k, _), u in w.day.items() if k == "node")
    # power x time: every card draws between ~10 W and its 250 W cap over ~39 s
    n_gpus = sum(len(s.gpus or ()) for s in towers)
    assert 9 * 30 * n_gpus < node_j < 250 * 40 * n_gpus
    assert w.rows("user")  # jobs on the cards are attributed
    for s in arms:
        assert client.get(wire.energy_key(s.host)) is None  # no GPUs, no ledger
        assert cpu_hot(s.sensors) == (s.sensors is not None and (s.sensors.cpu_temp_c or 0) >= (s.sensors.cpu_high_c or 999))
