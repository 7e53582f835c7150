"""Tests for the sensors collector (collectors/sensors.py) and its pure parser, on the sysfs trees in
tests/fixtures/sensors (see the README there for where their shapes come from)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clustertop import wire
from clustertop.collectors import sensors_parse as parse
from clustertop.collectors.base import Context, NoData, Roots
from clustertop.collectors.sensors import SensorsCollector
from clustertop.config import ConfigError
from clustertop.wire import digest, schema
from tests.conftest import FIXTURES

SENSORS = FIXTURES / "sensors"


def collector(sys_root: Path, config: dict | None = None) -> SensorsCollector:
    return SensorsCollector(Context(node="n", roots=Roots(sys=str(sys_root)), config=config or {},
                                    config_file="agent.toml"))


def test_x86_server() -> None:
    c = collector(SENSORS / "x86-server" / "sys")
    s = c.collect()
    assert s.cpu_temp_c == 61.0  # package 0, from both coretemp and x86_pkg_temp
    assert (s.cpu_high_c, s.cpu_crit_c) == (90.0, 100.0)  # coretemp max/crit; the zones' 0 trips are "unset"
    chips = {(t.source, t.chip) for t in s.temps or ()}
    assert ("hwmon", "coretemp") in chips and ("thermal", "x86_pkg_temp") in chips and ("hwmon", "nvme") in chips
    labels = [t.label for t in s.temps or () if t.chip == "coretemp"]
    assert labels[:5] == ["Package id 0", "Core 0", "Core 1", "Core 2", "Core 4"]
    nvme = [t for t in s.temps or () if t.chip == "nvme"]
    assert not any(t.cpu for t in nvme)
    # temp2_max 65261850 is no threshold: unknown, never 65261.85 °C.
    assert nvme[1].high_c is None and nvme[0].high_c == 81.85
    assert s.freq_max_mhz == 3900.0 and s.freq_mhz is not None and 1000 < s.freq_mhz < 3900
    # Core counters once per core (siblings share them), package counters once per package: 3+1 + 12.
    assert s.throttle_count == 16
    assert s.throttle_new is None  # first read: nothing to compare with
    assert s.cooling == 0  # ACPI Processor cooling devices, all at 0
    assert s.throttled is False
    assert not digest.cpu_hot(s)


def test_x86_throttle_counters_rising_mark_throttled(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    shutil.copytree(SENSORS / "x86-server" / "sys", root)
    c = collector(root)
    assert c.collect().throttled is False
    for cpu in (1, 9):  # package 0, core 1 and its hyperthread sibling: one core, one counter
        (root / f"devices/system/cpu/cpu{cpu}/thermal_throttle/core_throttle_count").write_text("5\n")
    s = c.collect()
    assert (s.throttle_count, s.throttle_new, s.throttled) == (18, 2, True)
    s = c.collect()
    assert (s.throttle_new, s.throttled) == (0, False)
    # A counter that goes back (CPU offlined and onlined) claims no events.
    (root / "devices/system/cpu/cpu0/thermal_throttle/package_throttle_count").write_text("0\n")
    for cpu in range(16):
        p = root / f"devices/system/cpu/cpu{cpu}/thermal_throttle/package_throttle_count"
        if p.read_text().strip() == "12":
            p.write_text("0\n")
    s = c.collect()
    assert s.throttle_new == 0 and s.throttled is False


def test_arm_board_hot_and_throttled() -> None:
    s = collector(SENSORS / "arm-board" / "sys").collect()
    assert s.cpu_temp_c == 86.538  # bigcore0
    assert s.cpu_high_c == 75.0 and s.cpu_crit_c == 115.0
    cpu_chips = {t.chip for t in s.temps or () if t.cpu}
    assert cpu_chips == {"package-thermal", "bigcore0-thermal", "bigcore2-thermal", "littlecore-thermal"}
    assert not any(t.source == "hwmon" for t in s.temps or ())  # the zones' own hwmon twins are not counted twice
    assert s.cooling == 2 and s.throttled is True  # cpufreq-cpu4 and -cpu6 held down
    assert s.throttle_count is None  # no thermal_throttle on ARM: unknown, not 0
    assert s.freq_max_mhz == 2400.0 and s.freq_mhz == 1800.0
    assert digest.cpu_hot(s)


def test_a_vm_without_sensors_is_nodata(tmp_path: Path) -> None:
    # The test machine's own /sys (a VM) has none of these: the same as an empty tree.
    (tmp_path / "sys" / "class" / "thermal").mkdir(parents=True)
    (tmp_path / "sys" / "devices" / "system" / "cpu" / "cpu0").mkdir(parents=True)
    with pytest.raises(NoData):
        collector(tmp_path / "sys").collect()


def test_hostile_sysfs_values(tmp_path: Path) -> None:
    z = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0"
    z.mkdir(parents=True)
    (z / "type").write_text("cpu-thermal\u202e\x1b[31m" + "x" * 10000)
    (z / "temp").write_text("NaN\n")
    (z / "trip_point_0_type").write_text("passive\n")
    (z / "trip_point_0_temp").write_text(str(2**64) + "\n")
    z1 = z.parent / "thermal_zone1"
    z1.mkdir()
    (z1 / "type").write_text("soc-thermal\n")
    (z1 / "temp").write_text("-273150\n")
    (z.parent / "cooling_device0").mkdir()
    (z.parent / "cooling_device0" / "type").write_text("cpufreq-cpu0\n")
    (z.parent / "cooling_device0" / "cur_state").write_text("garbage\n")
    h = tmp_path / "sys" / "class" / "hwmon" / "hwmon0"
    h.mkdir(parents=True)
    (h / "name").write_text("coretemp\n")
    (h / "temp1_input").write_bytes(b"\xff\xfe12\n")
    (h / "temp2_input").write_text("99999999999999999999999\n")
    s = collector(tmp_path / "sys").collect()
    assert s.cpu_temp_c is None and s.throttled is None and s.cooling is None
    assert all(t.temp_c is None and t.high_c is None for t in s.temps or ())
    assert len(s.temps or ()) == 4 and all(len(t.chip or "") <= 64 for t in s.temps or ())
    wire.decode(wire.encode(schema.NodeSnapshot(host="n", sensors=s)), schema.NodeSnapshot)  # it still publishes


def test_unknown_option_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"collectors\.sensors"):
        collector(SENSORS / "arm-board" / "sys", {"bogus": 1})


def test_parser_units_and_bounds() -> None:
    assert parse.millideg("48686\n") == 48.686
    assert parse.millideg("-273150") is None and parse.millideg("") is None and parse.millideg(None) is None
    assert parse.millideg("250000") is None
    z = parse.thermal_zone("x86_pkg_temp", "45000", [("passive", "0"), ("passive", "0")])
    assert z.high_c is None and z.crit_c is None and z.cpu
    assert parse.is_cpu_zone("cpu-thermal") and parse.is_cpu_zone("bigcore0-thermal")
    assert not parse.is_cpu_zone("gpu-thermal") and not parse.is_cpu_zone("acpitz") and not parse.is_cpu_zone("")
    assert parse.is_cpu_cooling("cpufreq-cpu4") and parse.is_cpu_cooling("Processor")
    assert not parse.is_cpu_cooling("pwm-fan")


def test_hot_rule_uses_the_sensor_own_points() -> None:
    def s(t: float, high: float | None = None, crit: float | None = None) -> schema.Sensors:
        return schema.Sensors(temps=[schema.TempSensor(source="hwmon", temp_c=t, high_c=high, crit_c=crit, cpu=True)])

    assert digest.cpu_hot(s(80, high=80)) and not digest.cpu_hot(s(79.9, high=80))
    assert digest.cpu_hot(s(90, crit=100)) and not digest.cpu_hot(s(89, crit=100))
    assert digest.cpu_hot(s(digest.CPU_HOT_C)) and not digest.cpu_hot(s(digest.CPU_HOT_C - 1))


def test_parser_never_raises_on_any_text() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    txt = st.one_of(st.none(), st.text(max_size=40), st.integers(-(2**70), 2**70).map(str))

    @settings(max_examples=300, deadline=None)
    @given(txt, txt, st.lists(st.tuples(txt, txt), max_size=4), txt, txt, txt, txt)
    def run(kind, temp, trips, label, inp, mx, crit) -> None:  # type: ignore[no-untyped-def]
        zone = parse.thermal_zone(kind, temp, trips)
        chans = parse.hwmon_chip(kind, {1: parse.HwmonChannel(label=label, input=inp, max=mx, crit=crit)})
        cpus = [parse.CpuInfo(cur_khz=inp, max_khz=mx, package=label, core=kind, core_throttles=temp, package_throttles=crit)]
        s = parse.summarize(parse.Readings(temps=[zone, *chans], cpus=cpus, cooling=[(kind, temp)]), 5)
        if s is not None:
            wire.decode(wire.encode(schema.NodeSnapshot(host="n", sensors=s)), schema.NodeSnapshot)
            digest.cpu_hot(s)

    run()
