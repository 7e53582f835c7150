"""The agent's energy ledger (agents/energy.py) and the read side's windows (clustertop/read/energy.py).

Readings are replayed from tests/support/power_trace.py (a synthetic training trace with an exact
integral: no GPU here); Redis is a real redis-server, written through the agent's own RESP client.
"""

from __future__ import annotations

import pytest

from clustertop import wire
from clustertop.agents.energy import HOUR_S, RECENT_S, EnergySection, Ledger
from clustertop.config import ConfigError
from clustertop.read.energy import J_PER_KWH, windows
from clustertop.store.resp import Client
from clustertop.wire import schema
from tests.support import power_trace
from tests.support.builders import GIB

T0 = 1_800_000_000.0  # a bucket boundary for both widths (divisible by 3600)


def gpu(index: int = 0, *, power_w: float | None = 300.0, energy_mj: int | None = None,
        procs: list[schema.GpuProc] | None = None, uuid: str | None = None, **kw: object) -> schema.Gpu:
    return schema.Gpu(index=index, uuid=uuid or f"GPU-{index}", power_mw=None if power_w is None else int(power_w * 1000),
                      power_limit_mw=700_000, energy_mj=energy_mj, procs=procs, **kw)  # type: ignore[arg-type]


def proc(pid: int, user: str, mem_gib: float | None, pod: str | None = None, ns: str = "ml") -> schema.GpuProc:
    owner = schema.Owner(kind="pod", name=pod, namespace=ns) if pod else schema.Owner(kind="user", name=user)
    return schema.GpuProc(pid=pid, user=user, used_mem_bytes=None if mem_gib is None else int(mem_gib * GIB),
                          owner=owner)


def snap(ts: float, gpus: list[schema.Gpu], tasks: list[schema.Task] | None = None,
         gpu_ok_ts: float | None = None) -> schema.NodeSnapshot:
    st = schema.CollectorStatus(ok=True, last_ok_ts=ts if gpu_ok_ts is None else gpu_ok_ts)
    return schema.NodeSnapshot(host="n1", ts=ts, gpus=gpus, tasks=tasks, collectors={"gpu": st})


def use(led: Ledger, kind: str, name: str) -> schema.EnergyUse | None:
    got: schema.EnergyUse | None = None
    for b in led.hours.values():
        u = b.get((kind, name))
        if u is not None:
            got = u if got is None else schema.EnergyUse(kind=kind, name=name, joules=got.joules + u.joules,
                                                         gpu_s=got.gpu_s + u.gpu_s, method="mixed")
    return got


def test_counter_gpu_counts_the_counter_difference() -> None:
    led = Ledger("n1")
    for i, mj in enumerate((1_000_000, 1_650_000, 2_300_500)):
        led.observe(snap(T0 + i, [gpu(energy_mj=mj, power_w=9999)]))  # power is ignored where a counter exists
    u = use(led, "gpu", "GPU-0")
    assert u is not None and u.joules == pytest.approx(1300.5) and u.method == "counter"
    assert u.gpu_s == pytest.approx(2.0)
    node = use(led, "node", "n1")
    assert node is not None and node.joules == pytest.approx(1300.5)


def test_pascal_integrates_power_by_trapezoid() -> None:
    led = Ledger("n1")
    for i, w in enumerate((100.0, 200.0, 200.0, 50.0)):
        led.observe(snap(T0 + 2 * i, [gpu(power_w=w)]))
    u = use(led, "gpu", "GPU-0")
    # (100+200)/2*2 + 200*2 + (200+50)/2*2
    assert u is not None and u.joules == pytest.approx(300 + 400 + 250) and u.method == "power"


def test_counter_reset_and_garbage_are_not_energy() -> None:
    led = Ledger("n1")
    seq = [5_000_000, 5_300_000, 1_000,  # driver reloaded: the counter restarted
           301_000, 2**64 - 1, 601_000,  # a broken reading (NVML's unsigned -1), then back to sense
           901_000, 901_000 + 5_000_000]  # more than 2 kW for a second: not believed
    for i, mj in enumerate(seq):
        led.observe(snap(T0 + i, [gpu(energy_mj=mj, power_w=None)]))
    u = use(led, "gpu", "GPU-0")
    # counted: 300 J (first pair), 300 J (1_000 -> 301_000), 300 J (601_000 -> 901_000); the reset, the
    # broken reading, the first reading after it and the 5 kJ jump are not.
    assert u is not None and u.joules == pytest.approx(900.0) and u.method == "counter"


def test_a_broken_counter_reading_falls_back_to_power_for_that_interval() -> None:
    led = Ledger("n1")
    for i, mj in enumerate((0, 300_000, 2**64 - 1, 900_000)):
        led.observe(snap(T0 + i, [gpu(energy_mj=mj, power_w=300.0)]))
    u = use(led, "gpu", "GPU-0")
    assert u is not None and u.joules == pytest.approx(600.0) and u.method == "mixed"


def test_gaps_are_not_integrated_but_the_counter_covers_them() -> None:
    cfg = EnergySection(max_gap=10.0, counter_gap=3600.0)
    led = Ledger("n1", cfg)
    led.observe(snap(T0, [gpu(0, power_w=300), gpu(1, energy_mj=0)]))
    led.observe(snap(T0 + 1, [gpu(0, power_w=300), gpu(1, energy_mj=300_000)]))
    led.observe(snap(T0 + 61, [gpu(0, power_w=300), gpu(1, energy_mj=18_300_000)]))  # a minute unseen
    led.observe(snap(T0 + 62, [gpu(0, power_w=300), gpu(1, energy_mj=18_600_000)]))
    p, c = use(led, "gpu", "GPU-0"), use(led, "gpu", "GPU-1")
    assert p is not None and p.joules == pytest.approx(600.0)  # the 60 s gap is unknown, not 300 W x 60 s
    assert c is not None and c.joules == pytest.approx(18_600.0)  # the counter saw it all


def test_a_kept_reading_is_not_counted_twice() -> None:
    led = Ledger("n1")
    led.observe(snap(T0, [gpu(power_w=200)]))
    led.observe(snap(T0 + 1, [gpu(power_w=200)]))
    # the gpu collector failed: the runner keeps its last value with its old last_ok_ts
    led.observe(snap(T0 + 2, [gpu(power_w=200)], gpu_ok_ts=T0 + 1))
    led.observe(snap(T0 + 3, [gpu(power_w=200)], gpu_ok_ts=T0 + 1))
    u = use(led, "gpu", "GPU-0")
    assert u is not None and u.joules == pytest.approx(200.0)


def test_lost_and_hostile_readings() -> None:
    led = Ledger("n1")
    led.observe(snap(T0, [gpu(power_w=100), gpu(1, power_w=100)]))
    bad = gpu(1)
    bad.power_mw = 2**64 - 1  # a broken reading on the wire
    led.observe(snap(T0 + 1, [schema.Gpu(index=0, uuid="GPU-0", lost=True), bad]))
    led.observe(snap(T0 + 2, [gpu(power_w=100), gpu(1, power_w=100)]))
    # GPU 0: no reading at T0+1 (lost); T0 -> T0+2 is within max_gap: 100 W x 2 s.
    u0 = use(led, "gpu", "GPU-0")
    assert u0 is not None and u0.joules == pytest.approx(200.0)
    # GPU 1: the broken reading is no reading: neither interval next to it is counted.
    assert use(led, "gpu", "GPU-1") is None


def test_split_by_memory_share_to_users_pods_namespaces_jobs() -> None:
    led = Ledger("n1")
    procs = [proc(10, "alice", 30.0, pod="train-0"), proc(11, "bob", 10.0)]
    tasks = [schema.Task(id="t-1", template="train", pid=11, job="job-42")]
    led.observe(snap(T0, [gpu(energy_mj=0, procs=procs), gpu(1, energy_mj=0)], tasks))
    led.observe(snap(T0 + 10, [gpu(energy_mj=4_000_000, procs=procs), gpu(1, energy_mj=500_000)], tasks))
    alice, bob = use(led, "user", "alice"), use(led, "user", "bob")
    assert alice is not None and bob is not None
    assert (alice.joules, bob.joules) == (pytest.approx(3000.0), pytest.approx(1000.0))
    assert (alice.gpu_s, bob.gpu_s) == (pytest.approx(7.5), pytest.approx(2.5))  # GPU time split the same way
    pod, ns, job = use(led, "pod", "ml/train-0"), use(led, "namespace", "ml"), use(led, "job", "job-42")
    assert pod is not None and pod.joules == pytest.approx(3000.0)
    assert ns is not None and ns.joules == pytest.approx(3000.0)
    assert job is not None and job.joules == pytest.approx(1000.0)
    idle = use(led, "idle", "n1")
    assert idle is not None and idle.joules == pytest.approx(500.0)  # GPU 1 had no processes
    node = use(led, "node", "n1")
    assert node is not None and node.joules == pytest.approx(4500.0) and node.gpu_s == pytest.approx(20.0)


def test_unknown_memory_or_equal_split() -> None:
    for cfg, procs in ((EnergySection(), [proc(1, "a", None), proc(2, "b", 9.0)]),
                       (EnergySection(split="equal"), [proc(1, "a", 1.0), proc(2, "b", 9.0)])):
        led = Ledger("n1", cfg)
        led.observe(snap(T0, [gpu(energy_mj=0, procs=procs)]))
        led.observe(snap(T0 + 1, [gpu(energy_mj=1_000_000, procs=procs)]))
        a, b = use(led, "user", "a"), use(led, "user", "b")
        assert a is not None and b is not None and a.joules == b.joules == pytest.approx(500.0)


def test_windows_hour_and_day_and_trim() -> None:
    led = Ledger("n1", EnergySection(price_per_kwh=0.3, currency="EUR"))
    t = T0
    # 2 h of a constant 360 W (1 kWh per 10,000 s), read every 10 s
    while t <= T0 + 2 * 3600:
        led.observe(snap(t, [gpu(power_w=360.0)]))
        t += 10
    now = T0 + 2 * 3600
    w = windows([led.payload(now)], now)
    day, hour = w.rows("gpu")[0]
    assert day.joules == pytest.approx(360 * 7200)
    assert hour is not None and 3600 * 360 <= hour.joules <= (3600 + RECENT_S) * 360
    assert w.cost(day) == pytest.approx(360 * 7200 / J_PER_KWH * 0.3) and w.currency == "EUR"
    assert day.method == "power"
    # a day later the old buckets are gone from the agent's memory and payload
    led.observe(snap(now + 24 * 3600 + HOUR_S, [gpu(power_w=360.0)]))
    assert not led.hours and not led.recent  # that reading came after a gap: nothing new, nothing old kept
    assert all(s + RECENT_S > now + 24 * 3600 for s in led.recent)


def test_windows_leave_garbage_out_and_name_the_node() -> None:
    led = schema.EnergyLedger(host="evil", ts=T0, recent={int(T0): [
        schema.EnergyUse(kind="user", name="x", joules=float("nan")),
        schema.EnergyUse(kind="user", name="y", joules=1e300),
        schema.EnergyUse(kind="user", name="ok", joules=3.6e6, gpu_s=3600)]},
        price_per_kwh=float("inf"))
    w = windows([led], T0 + 10)
    assert [u.name for u, _ in w.rows("user")] == [] and [h.name for h in w.hour.values()] == ["ok"]
    assert w.bad == ["evil"] and w.price_per_kwh is None


def test_mixed_prices_show_no_cost() -> None:
    a = schema.EnergyLedger(host="a", price_per_kwh=0.2, currency="EUR")
    b = schema.EnergyLedger(host="b", price_per_kwh=0.3, currency="EUR")
    w = windows([a, b], T0)
    assert w.mixed_prices and w.cost(None) is None


def test_restart_continuity_through_real_redis(redis_server) -> None:
    """Stop the ledger halfway through a replayed trace, start a new one: the totals are the same as one run's,
    less (for the power-integrated card only) the restart gap."""
    trace = power_trace.training_trace(600, t0=T0)
    reads = power_trace.readings(trace)
    client = Client.from_url(redis_server.url)

    def s(r: tuple[float, int, int]) -> schema.NodeSnapshot:
        ts, p, e = r
        return snap(ts, [gpu(0, power_w=p / 1000, energy_mj=e), gpu(1, power_w=p / 1000, uuid="GPU-pascal")])

    one = Ledger("n1")
    for r in reads:
        one.observe(s(r))
    first = Ledger("n1", EnergySection(save_every=60.0))
    cut, resume = 300, 320  # 20 s down
    for r in reads[:cut]:
        first.step(s(r), client, r[0])
    first.save(client, reads[cut - 1][0], force=True)  # what Agent.close does
    second = Ledger("n1")
    for r in reads[resume:]:
        second.step(s(r), client, r[0])
    assert second.loaded
    c_one, c_two = use(one, "gpu", "GPU-0"), use(second, "gpu", "GPU-0")
    assert c_one is not None and c_two is not None
    assert c_two.joules == pytest.approx(c_one.joules, abs=0.01)  # the counter covered the 20 s
    p_one, p_two = use(one, "gpu", "GPU-pascal"), use(second, "gpu", "GPU-pascal")
    assert p_one is not None and p_two is not None
    gap = trace.truth_j(reads[cut - 1][0], reads[resume][0])
    assert p_two.joules == pytest.approx(p_one.joules - gap, rel=0.02)  # not integrated across the restart
    assert p_two.joules < p_one.joules
    # what the dashboard reads back
    led = wire.decode(client.get(wire.energy_key("n1")), schema.EnergyLedger)
    assert led.host == "n1" and led.last and led.since_ts == reads[0][0]
    ttl = client._call(["PTTL", wire.energy_key("n1")])
    assert 0 < ttl <= 25 * 3600 * 1000


def test_garbage_in_the_redis_key_starts_a_new_ledger(redis_server) -> None:
    client = Client.from_url(redis_server.url)
    client.set(wire.energy_key("n1"), b"\xc1garbage")
    led = Ledger("n1")
    led.step(snap(T0, [gpu()]), client, T0)
    led.step(snap(T0 + 1, [gpu()]), client, T0 + 1)
    assert led.loaded
    saved = wire.decode(client.get(wire.energy_key("n1")), schema.EnergyLedger)
    assert saved.host == "n1"


def test_another_hosts_ledger_is_not_merged(redis_server) -> None:
    client = Client.from_url(redis_server.url)
    other = schema.EnergyLedger(host="n2", hours={int(T0): [schema.EnergyUse(kind="node", name="n2", joules=5.0)]})
    client.set(wire.energy_key("n1"), wire.encode(other))
    led = Ledger("n1")
    led.load(client)
    assert not led.hours


def test_config_errors_name_the_key(tmp_path) -> None:
    from clustertop.agents.config import load_config

    p = tmp_path / "agent.toml"
    p.write_text("[energy]\nprice_per_kwh = -1.0\n")
    with pytest.raises(ConfigError, match=r"energy.*price_per_kwh"):
        load_config(str(p), env={})
    p.write_text("[energy]\nsplit = \"by_vibes\"\n")
    with pytest.raises(ConfigError, match=r"energy.*split"):
        load_config(str(p), env={})
    p.write_text("[energy]\nprice_per_kwh = 0.25\ncurrency = \"EUR\"\n")
    cfg = load_config(str(p), env={})
    assert cfg.energy.price_per_kwh == 0.25 and cfg.energy.currency == "EUR"


def test_the_agent_counts_its_gpus_and_keeps_the_ledger_across_a_restart(redis_server, monkeypatch, tmp_path) -> None:
    """The real Agent: the gpu collector on the fake NVML (tests/support/nvml.py: no GPU here; H100s with an
    energy counter), its tick, publish and account_energy into a real redis-server; closed and started again."""
    import time

    from clustertop.agents.agent import Agent
    from clustertop.agents.config import AgentConfig, CollectorConfig
    from clustertop.collectors import base
    from tests.support import nvml as fake

    lib = fake.install(monkeypatch, "h100_sxm", 2)
    url = redis_server.url

    def agent() -> Agent:
        cols = {n: CollectorConfig(name=n, enabled=n == "gpu") for n in base.DEFAULT_NODE_COLLECTORS}
        cfg = AgentConfig(node="dgx-01", interval_s=0.05, collectors=cols, state_dir=str(tmp_path),
                          energy=EnergySection(save_every=3600.0))
        return Agent(cfg, client_factory=lambda: Client.from_url(url))

    counted_mj = 0
    a = agent()
    for i in range(4):
        if i:
            for d in lib.devices:
                d.reading["energy_mj"] += 50_000  # 50 J per card between two readings
            counted_mj += 2 * 50_000
        time.sleep(0.06)  # the gpu collector's next reading has a later last_ok_ts
        snap, cluster = a.tick(complete=True)
        assert a.publish(snap, cluster)
        a.account_energy(snap)
    assert a.energy is not None
    a.close()  # saves the ledger although save_every has not passed
    led = wire.decode(Client.from_url(url).get(wire.energy_key("dgx-01")), schema.EnergyLedger)
    node = [u for b in led.hours.values() for u in b if u.kind == "node"]
    assert sum(u.joules for u in node) == pytest.approx(counted_mj / 1000)
    assert {u.method for b in led.hours.values() for u in b if u.kind == "gpu"} == {"counter"}
    # Started again after a pause: the counter moved meanwhile, and that energy is counted too.
    for d in lib.devices:
        d.reading["energy_mj"] += 70_000
    counted_mj += 2 * 70_000
    b2 = agent()
    time.sleep(0.06)
    snap, cluster = b2.tick(complete=True)
    b2.publish(snap, cluster)
    b2.account_energy(snap)
    b2.close()
    led = wire.decode(Client.from_url(url).get(wire.energy_key("dgx-01")), schema.EnergyLedger)
    node = [u for b in led.hours.values() for u in b if u.kind == "node"]
    assert sum(u.joules for u in node) == pytest.approx(counted_mj / 1000)


def test_a_node_without_gpus_writes_no_ledger(redis_server) -> None:
    client = Client.from_url(redis_server.url)
    led = Ledger("arm-01")
    for i in range(3):
        led.step(schema.NodeSnapshot(host="arm-01", ts=T0 + i, gpus=[]), client, T0 + i)
    assert led.loaded and client.get(wire.energy_key("arm-01")) is None
