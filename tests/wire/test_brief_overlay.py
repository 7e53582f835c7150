"""The overlay (``wire.brief.fresh``): an older full snapshot brought up to date by its node's newer brief.

The field check is generated from the schema's structs, not from a hand list: a full snapshot with every
field of every struct set (to a value no default has), and a second one with every value different but the
same identities (GPU index and model, process pid and user, disk/NIC/filesystem/sensor names). Whatever
``brief()`` keeps must come out of ``fresh()`` as the brief has it, everything else as the full snapshot has
it: a field added to ``brief()`` but not to ``fresh()`` (or the reverse) fails here. Pure: no I/O.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from clustertop.wire import schema
from clustertop.wire.brief import brief, fresh
from clustertop.wire.digest import digest

#: Fields a record is matched by (the same in both snapshots of the generated pair).
IDENTITY = {
    schema.Gpu: ("index", "name"),
    schema.GpuProc: ("pid", "user"),
    schema.DiskIO: ("name",),
    schema.Nic: ("name", "kind"),
    schema.Filesystem: ("mountpoint",),
    schema.TempSensor: ("source", "chip", "label", "device", "cpu"),
    schema.NodeSnapshot: ("host",),
}


def _value(t: Any, n: itertools.count, owner: type | None = None, field: str = "") -> Any:
    """A value of type info ``t`` no default has, different on every call (``n``)."""
    ti = msgspec.inspect
    if isinstance(t, ti.UnionType):
        return _value(next(x for x in t.types if not isinstance(x, ti.NoneType)), n, owner, field)
    if isinstance(t, ti.BoolType):
        return True
    if isinstance(t, ti.IntType):
        return 1000 + next(n)
    if isinstance(t, ti.FloatType):
        return 1000.5 + next(n)
    if isinstance(t, ti.StrType):
        return f"{field}-{next(n)}"
    if isinstance(t, ti.ListType):
        return [_value(t.item_type, n, owner, field)]
    if isinstance(t, ti.DictType):
        return {f"{field}-{next(n)}": _value(t.value_type, n, owner, field)}
    if isinstance(t, ti.StructType):
        return _struct(t.cls, n)
    raise AssertionError(f"no generator for {t!r} ({owner}.{field}): extend _value")


def _struct(cls: type, n: itertools.count) -> Any:
    info = msgspec.inspect.type_info(cls)
    return cls(**{f.name: _value(f.type, n, cls, f.name) for f in info.fields})


def _full(seed: int) -> schema.NodeSnapshot:
    snap = _struct(schema.NodeSnapshot, itertools.count(seed * 100_000))
    for st in snap.collectors.values():
        st.ok = False  # the brief keeps the failing ones only: all of them, so each is compared
    return snap


def _same_identities(a: Any, b: Any) -> None:
    """Give ``b`` the identities of ``a``, recursively (lists position by position, dicts by order)."""
    if isinstance(a, msgspec.Struct):
        for f in IDENTITY.get(type(a), ()):
            setattr(b, f, getattr(a, f))
        for f in a.__struct_fields__:
            _same_identities(getattr(a, f), getattr(b, f))
    elif isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            _same_identities(x, y)
    elif isinstance(a, dict):
        for x, y in zip(a.values(), b.values(), strict=True):
            _same_identities(x, y)


def _pair() -> tuple[schema.NodeSnapshot, schema.NodeSnapshot]:
    a, b = _full(1), _full(2)
    _same_identities(a, b)
    for nic_a, nic_b in zip(a.system.nics, b.system.nics, strict=True):
        nic_a.kind = nic_b.kind = "physical"  # a NIC the totals count: the brief keeps it
    for t in a.sensors.temps + b.sensors.temps:
        t.cpu = True  # a CPU reading: the brief keeps it (the one nearest its slowdown point)
    b.collectors = dict(zip(a.collectors, b.collectors.values(), strict=True))  # same names, other figures
    return a, b


def _check(out: Any, kept: Any, br: Any, full: Any, path: str, seen: list[str]) -> None:
    """``out`` field by field: where ``kept`` (the brief of the fully set snapshot) has the field, ``br``'s
    value; where it has not, ``full``'s."""
    if isinstance(out, msgspec.Struct):
        assert type(out) is type(full), path
        for f in out.__struct_fields__:
            k = None if kept is None else getattr(kept, f)
            default = msgspec.inspect.type_info(type(out)).fields
            dflt = next(x for x in default if x.name == f).default
            if kept is not None and k != dflt and k != []:
                _check(getattr(out, f), k, getattr(br, f), getattr(full, f), f"{path}.{f}", seen)
            else:
                seen.append(f"{path}.{f} <- full")
                assert getattr(out, f) == getattr(full, f), f"{path}.{f}: only the full snapshot has it"
    elif isinstance(out, list) and out and isinstance(out[0], msgspec.Struct):
        assert len(out) == len(br) == len(full), path
        for i, (o, k, b, f) in enumerate(zip(out, kept, br, full, strict=True)):
            _check(o, k, b, f, f"{path}[{i}]", seen)
    elif isinstance(out, dict) and out and isinstance(next(iter(out.values())), msgspec.Struct):
        assert out.keys() == br.keys() == full.keys(), path
        for key in out:
            _check(out[key], kept[key], br[key], full[key], f"{path}[{key}]", seen)
    else:
        seen.append(f"{path} <- brief")
        assert out == br, f"{path}: the brief carries it, so it is the brief's"


def test_every_field_the_brief_keeps_comes_from_the_brief_the_rest_from_the_full() -> None:
    a, b = _pair()
    kept, br = brief(a), brief(b)
    out = fresh(a, br)
    seen: list[str] = []
    _check(out, kept, br, a, "snap", seen)
    # The check reached both sides of every section (not vacuous).
    for want in ("snap.ts <- brief", "snap.gpus[0].util_pct <- brief", "snap.gpus[0].uuid <- full",
                 "snap.gpus[0].procs[0].cmdline <- full", "snap.gpus[0].procs[0].owner.name <- brief",
                 "snap.system.cpu.per_cpu_pct <- full", "snap.system.procs <- full", "snap.system.kernel <- full",
                 "snap.system.disks[0].read_iops <- full", "snap.system.nics[0].rx_bytes_s <- brief",
                 "snap.containers.containers <- full", "snap.containers.templates[0].name <- brief",
                 "snap.sensors.freq_mhz <- full", "snap.sensors.temps[0].temp_c <- brief",
                 "snap.full_every_s <- full", "snap.agent.cpu_pct <- brief"):
        assert want in seen, want
    # What the brief-reading views fold: the same from the overlay as from the brief itself.
    assert brief(out) == br
    assert digest(out) == digest(b)
    # Neither input was changed.
    assert a == _pair()[0] and br == brief(_pair()[1])


def test_a_brief_of_the_same_tick_changes_nothing() -> None:
    a, _ = _pair()
    a.collectors["extra"] = schema.CollectorStatus(ok=True, duration_ms=3.0)
    assert fresh(a, brief(a)) == a


def _sim_pair() -> tuple[schema.NodeSnapshot, schema.NodeSnapshot]:
    from clustertop.sim.simulate import SimCluster

    sim = SimCluster(seed=3, nodes=3, gpus_per_node=4)
    host = sim.tower_hosts[0]
    # Copies: the simulator may hand out the same objects tick after tick.
    copy = msgspec.msgpack.Decoder(schema.NodeSnapshot).decode
    older = copy(msgspec.msgpack.encode(next(s for s, _ in sim.step(1_900_000_000.0)[0] if s.host == host)))
    for k in range(1, 10):
        newer = next(s for s, _ in sim.step(1_900_000_000.0 + k)[0] if s.host == host)
    newer = copy(msgspec.msgpack.encode(newer))
    assert newer.gpus and older.gpus and [g.util_pct for g in newer.gpus] != [g.util_pct for g in older.gpus]
    return older, newer


def test_none_in_the_brief_is_unknown_now_never_the_old_value() -> None:
    full, now = _sim_pair()
    assert full.gpus and full.gpus[0].util_pct is not None and full.system and full.system.mem
    now.gpus[0].util_pct = None
    now.gpus[0].temp_c = None
    now.system.mem = None
    now.sensors = None
    out = fresh(full, brief(now))
    assert out.gpus[0].util_pct is None and out.gpus[0].temp_c is None
    assert out.gpus[0].uuid == full.gpus[0].uuid  # detail kept
    assert out.system.mem is None and out.sensors is None
    assert out.system.hostname == full.system.hostname


def test_gpus_matched_by_index_gone_and_new() -> None:
    full, now = _sim_pair()
    assert len(full.gpus) >= 3
    gone = now.gpus.pop(1)  # fell off since the full snapshot
    new = msgspec.structs.replace(now.gpus[0], index=99, uuid="GPU-new")
    now.gpus.append(new)
    out = fresh(full, brief(now))
    assert [g.index for g in out.gpus] == [g.index for g in now.gpus]
    assert gone.index not in [g.index for g in out.gpus]
    g99 = out.gpus[-1]
    assert g99.uuid is None and g99.util_pct == new.util_pct  # as the brief has it: no detail invented
    assert out.gpus[0].uuid == full.gpus[0].uuid and out.gpus[0].util_pct == now.gpus[0].util_pct
    # Another model under the same index: nothing of the old card is kept.
    now.gpus[0].name = "Some Other Card"
    assert fresh(full, brief(now)).gpus[0].uuid is None


def test_gpu_process_detail_only_for_the_same_process() -> None:
    full, _ = _sim_pair()
    g = full.gpus[0]
    g.procs = [schema.GpuProc(pid=10, user="ann", used_mem_bytes=5 << 30, cmdline="python train.py"),
               schema.GpuProc(pid=11, user="bob", used_mem_bytes=1 << 30, cmdline="python eval.py"),
               schema.GpuProc(pid=12, user="cy", used_mem_bytes=2 << 30, cmdline="old")]
    now = msgspec.structs.replace(full, ts=full.ts + 10, gpus=[msgspec.structs.replace(g, procs=[
        schema.GpuProc(pid=10, user="ann"),  # the same process
        schema.GpuProc(pid=11, user="dan"),  # pid reused by another user: another process
        schema.GpuProc(pid=13, user="eve"),  # new since the full snapshot
    ])] + full.gpus[1:])
    procs = fresh(full, brief(now)).gpus[0].procs
    assert [(p.pid, p.user) for p in procs] == [(10, "ann"), (11, "dan"), (13, "eve")]
    assert (procs[0].used_mem_bytes, procs[0].cmdline) == (5 << 30, "python train.py")
    assert (procs[1].used_mem_bytes, procs[1].cmdline) == (None, None)
    assert (procs[2].used_mem_bytes, procs[2].cmdline) == (None, None)


def test_collectors_recovered_failing_and_new() -> None:
    full, now = _sim_pair()
    full.collectors = {"gpu": schema.CollectorStatus(ok=False, error="NVMLError", interval_s=1.0),
                       "host": schema.CollectorStatus(ok=True, duration_ms=2.0),
                       "bonds": schema.CollectorStatus(ok=True, duration_ms=1.0)}
    now.collectors = {"gpu": schema.CollectorStatus(ok=True, duration_ms=5.0),
                      "host": schema.CollectorStatus(ok=True, duration_ms=2.5),
                      "bonds": schema.CollectorStatus(ok=False, error="EACCES"),
                      "nfs": schema.CollectorStatus(ok=False, error="hung")}
    out = fresh(full, brief(now)).collectors
    assert out["gpu"].ok and out["gpu"].error is None and out["gpu"].duration_ms is None  # recovered
    assert out["host"] == full.collectors["host"]
    assert not out["bonds"].ok and out["bonds"].error == "EACCES"
    assert out["nfs"].error == "hung"


def test_nics_the_brief_leaves_out_are_kept_counted_ones_gone_are_dropped() -> None:
    full, now = _sim_pair()
    full.system.nics = [schema.Nic(name="eth0", kind="physical", rx_bytes_s=1.0, mtu=9000),
                        schema.Nic(name="docker0", kind="virtual", rx_bytes_s=2.0),
                        schema.Nic(name="eth1", kind="physical", rx_bytes_s=3.0)]
    now.system.nics = [schema.Nic(name="eth0", kind="physical", rx_bytes_s=10.0, mtu=1500),
                       schema.Nic(name="docker0", kind="virtual", rx_bytes_s=20.0),
                       schema.Nic(name="ib0", kind="physical", rx_bytes_s=30.0)]
    nics = fresh(full, brief(now)).system.nics
    assert [(n.name, n.rx_bytes_s, n.mtu) for n in nics] == [
        ("eth0", 10.0, 9000), ("docker0", 2.0, None), ("ib0", 30.0, None)]


@pytest.mark.parametrize("hostile", [float("nan"), 2.0 ** 64, "\u202e" * 1000])
def test_hostile_values_pass_through_untouched(hostile: Any) -> None:
    full, now = _sim_pair()
    now.gpus[0].util_pct = hostile  # type: ignore[assignment]  # as a decoded payload could carry (no validation)
    out = fresh(full, brief(now))
    assert out.gpus[0].util_pct is hostile


def test_the_briefs_sensor_reading_replaces_the_same_sensor_in_the_list() -> None:
    full, now = _sim_pair()
    temps = [schema.TempSensor(source="hwmon", chip="coretemp", label=f"Core {i}", temp_c=50.0 + i, high_c=90.0,
                               cpu=True, device="hwmon1") for i in range(3)]
    full.sensors = schema.Sensors(cpu_temp_c=52.0, temps=temps, freq_mhz=2400.0)
    hot = msgspec.structs.replace(temps[1], temp_c=88.0)
    now.sensors = schema.Sensors(cpu_temp_c=88.0, temps=[temps[0], hot, temps[2]], freq_mhz=1200.0)
    out = fresh(full, brief(now)).sensors
    assert out is not None and out.cpu_temp_c == 88.0 and out.freq_mhz == 2400.0  # the list's figures: detail
    assert [t.temp_c for t in out.temps or ()] == [50.0, 88.0, 52.0]
    # A sensor the full snapshot did not list leads it.
    new = schema.TempSensor(source="thermal", chip="x86_pkg_temp", temp_c=95.0, high_c=90.0, cpu=True)
    now.sensors.temps = [new]
    assert [t.temp_c for t in fresh(full, brief(now)).sensors.temps or ()] == [95.0, 50.0, 51.0, 52.0]  # type: ignore[union-attr]
