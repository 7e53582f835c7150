"""Provides the sensors collector: CPU/SoC temperature and thermal throttling from sysfs.

Fanless ARM boards fail by heat first: the SoC slows its clocks (a cpufreq cooling device steps up) long
before anything else looks wrong. x86 servers count each PROCHOT crossing per core and package. Read here,
all under ``ctx.roots.sys`` (a fixture tree in tests, ``--sys-root`` for a container):
- ``class/thermal/thermal_zone*/{type,temp,trip_point_*_{type,temp}}`` and ``cooling_device*/{type,cur_state}``;
- ``class/hwmon/hwmon*/{name,temp*_{input,label,max,crit}}`` (coretemp, k10temp, nvme, ...);
- ``devices/system/cpu/cpu*/{cpufreq/{scaling_cur_freq,cpuinfo_max_freq},topology/*,thermal_throttle/*}``.
Parsing and the rules live in ``clustertop.collectors.sensors_parse``. A machine that exposes none of it
(a VM, like the one the tests run on) raises NoData: the field stays None, shown as N/A.
"""

from __future__ import annotations

import os
import re

from clustertop.collectors import sensors_parse as parse
from clustertop.collectors.base import Context, NoData, Roots, Section
from clustertop.config import convert
from clustertop.wire import schema

SECTION = "collectors.sensors"
#: At most this many directories of each kind are read (a sysfs with 1,000 hwmon entries is broken or hostile).
MAX_ENTRIES = 256
_NUMBERED = re.compile(r"^(thermal_zone|cooling_device|hwmon|cpu)(\d+)$")
_TRIP = re.compile(r"^trip_point_(\d+)_(type|temp)$")
_TEMP = re.compile(r"^temp(\d+)_(input|label|max|crit)$")


def read_text(path: str, limit: int = 4096) -> str | None:
    """A small sysfs file, or None (missing, EINVAL from a sensor that is not ready, EACCES)."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def numbered(directory: str, prefix: str) -> list[tuple[int, str]]:
    """(N, path) of ``prefixN`` entries in ``directory``, in N order, bounded."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    out = []
    for name in names:
        m = _NUMBERED.match(name)
        if m and m.group(1) == prefix:
            out.append((int(m.group(2)), os.path.join(directory, name)))
    return sorted(out)[:MAX_ENTRIES]


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))[:MAX_ENTRIES * 4]
    except OSError:
        return []


def read_thermal(roots: Roots) -> tuple[list[schema.TempSensor], list[tuple[str | None, str | None]]]:
    base = roots.sysfs("class", "thermal")
    zones = []
    for n, path in numbered(base, "thermal_zone"):
        trips: dict[int, dict[str, str | None]] = {}
        for name in _listdir(path):
            m = _TRIP.match(name)
            if m:
                trips.setdefault(int(m.group(1)), {})[m.group(2)] = read_text(os.path.join(path, name))
        zone = parse.thermal_zone(read_text(os.path.join(path, "type")), read_text(os.path.join(path, "temp")),
                                  [(t.get("type"), t.get("temp")) for _, t in sorted(trips.items())])
        zone.device = f"thermal_zone{n}"
        zones.append(zone)
    cooling = [(read_text(os.path.join(p, "type")), read_text(os.path.join(p, "cur_state")))
               for _, p in numbered(base, "cooling_device")]
    return zones, cooling


def read_hwmon(roots: Roots, zone_types: set[str]) -> list[schema.TempSensor]:
    out: list[schema.TempSensor] = []
    for n, path in numbered(roots.sysfs("class", "hwmon"), "hwmon"):
        name = parse.word(read_text(os.path.join(path, "name")))
        # A thermal zone also registers as an hwmon chip named after its type ("cpu-thermal" ->
        # "cpu_thermal"): the same reading twice.
        if name is not None and name in zone_types:
            continue
        channels: dict[int, parse.HwmonChannel] = {}
        for f in _listdir(path):
            m = _TEMP.match(f)
            if m:
                ch = channels.setdefault(int(m.group(1)), parse.HwmonChannel())
                setattr(ch, m.group(2), read_text(os.path.join(path, f)))
        for t in parse.hwmon_chip(name, channels):
            t.device = f"hwmon{n}"
            out.append(t)
    return out


def read_cpus(roots: Roots) -> list[parse.CpuInfo]:
    out = []
    for _, path in numbered(roots.sysfs("devices", "system", "cpu"), "cpu"):
        def f(*parts: str, _p: str = path) -> str | None:
            return read_text(os.path.join(_p, *parts))

        out.append(parse.CpuInfo(
            cur_khz=f("cpufreq", "scaling_cur_freq"), max_khz=f("cpufreq", "cpuinfo_max_freq"),
            package=f("topology", "physical_package_id"), core=f("topology", "core_id"),
            core_throttles=f("thermal_throttle", "core_throttle_count"),
            package_throttles=f("thermal_throttle", "package_throttle_count")))
    return out


def read(roots: Roots) -> parse.Readings:
    zones, cooling = read_thermal(roots)
    zone_types = {(z.chip or "").replace("-", "_") for z in zones if z.chip}
    return parse.Readings(temps=zones + read_hwmon(roots, zone_types), cpus=read_cpus(roots), cooling=cooling)


class SensorsCollector:
    """Collector "sensors": schema.Sensors for the snapshot's ``sensors`` field."""

    name = "sensors"
    field = "sensors"
    scope = "node"
    default_interval_s = 5.0  # temperatures move over seconds; a tick of sysfs reads on 128 CPUs is not free
    config_type = Section

    def __init__(self, ctx: Context) -> None:
        convert(ctx.config, Section, ctx.config_file, SECTION)
        self.ctx = ctx
        self._throttles: int | None = None

    def collect(self) -> schema.Sensors:
        s = parse.summarize(read(self.ctx.roots), self._throttles)
        if s is None:
            raise NoData("no thermal zones, hwmon temperatures or cpufreq under " + self.ctx.roots.sys)
        self._throttles = s.throttle_count
        return s

    def close(self) -> None:
        self._throttles = None
