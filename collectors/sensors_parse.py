"""Provides pure parsers and rules for CPU/SoC temperature and thermal throttling.

Nothing here touches the filesystem; ``clustertop.collectors.sensors`` reads the files and calls these.
The kernel's formats (Documentation/ABI/testing/sysfs-class-thermal, sysfs-class-hwmon,
sysfs-devices-system-cpu):
- thermal zones and hwmon temperatures are integers in millidegrees Celsius ("48686\\n");
- a trip point of 0 (x86_pkg_temp zones on servers: writable passive trips nobody set) means "not set";
- cpufreq frequencies are kHz;
- x86 ``thermal_throttle/{core,package}_throttle_count`` count the times a core or a package crossed its
  PROCHOT threshold since boot. Hyperthread siblings share the core counter and every CPU of a package
  shows the package counter, so each is counted once per core or package (from ``topology/``).
Every value is node data: a broken sensor gives ``-273150`` (nvme temp1_min), an absurd number or text,
and becomes None (unknown), never a figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from clustertop.wire import schema

#: Readings outside this range are not temperatures (disconnected diodes, -273.15, 2**31 garbage).
PLAUSIBLE_C = (-60.0, 200.0)
#: The snapshot keeps this many temperature readings (a 2-socket Xeon has ~60 coretemp channels).
MAX_TEMPS = 64

#: hwmon drivers that measure the CPU or SoC die.
CPU_HWMON = frozenset(("coretemp", "k10temp", "zenpower", "fam15h_power", "cpu_thermal", "soc_thermal",
                       "cpu0_thermal", "scpi_sensors", "via_cputemp", "tegra_bpmp"))
#: Thermal zone types that are the CPU or SoC: "cpu-thermal" (Raspberry Pi), "soc-thermal",
#: "package-thermal", "bigcore0-thermal", "littlecore-thermal" (RK3588), "x86_pkg_temp" (Intel), "cpu0-thermal".
_CPU_ZONE = re.compile(r"(^|[-_])(cpu\d*|soc|package|x86_pkg_temp|bigcore\d*|littlecore|cluster\d*|core\d*)([-_]|$)")
_NOT_CPU = re.compile(r"gpu|npu|ddr|dram|nvme|wifi|battery|pch|board|center|ambient", re.I)
#: Cooling devices whose state above 0 means the CPU's clock is being held back for heat.
_CPU_COOLING = re.compile(r"^(cpufreq-cpu\d+|cpufreq-cluster\d+|Processor|thermal-cpufreq-\d+)$")


def millideg(text: str | None) -> float | None:
    """A sysfs temperature (m°C) as °C; None for anything that is not a plausible reading."""
    if text is None:
        return None
    try:
        v = int(text.strip()) / 1000.0
    except ValueError:
        return None
    return v if PLAUSIBLE_C[0] <= v <= PLAUSIBLE_C[1] else None


def integer(text: str | None, lo: int = 0, hi: int = 2**63 - 1) -> int | None:
    if text is None:
        return None
    try:
        v = int(text.strip())
    except ValueError:
        return None
    return v if lo <= v <= hi else None


def word(text: str | None, limit: int = 64) -> str | None:
    """A name from sysfs: first line, bounded (still node text: escaped before display)."""
    if text is None:
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit] or None


def is_cpu_zone(kind: str | None) -> bool:
    return bool(kind) and not _NOT_CPU.search(kind or "") and bool(_CPU_ZONE.search((kind or "").lower()))


def is_cpu_cooling(kind: str | None) -> bool:
    return bool(kind) and bool(_CPU_COOLING.match(kind or ""))


def thermal_zone(kind: str | None, temp: str | None, trips: list[tuple[str | None, str | None]]) -> schema.TempSensor:
    """One /sys/class/thermal/thermal_zoneN: its type, temp and (trip_point_K_type, trip_point_K_temp) list."""
    name = word(kind)
    high: float | None = None
    crit: float | None = None
    for t_kind, t_temp in trips:
        c = millideg(t_temp)
        if c is None or c <= 0:  # 0: a trip nobody set (x86_pkg_temp)
            continue
        tk = (word(t_kind) or "").lower()
        if tk == "critical" or tk == "hot":
            crit = c if crit is None else min(crit, c)
        elif tk == "passive":
            high = c if high is None else min(high, c)
    return schema.TempSensor(source="thermal", chip=name, temp_c=millideg(temp), high_c=high, crit_c=crit,
                             cpu=is_cpu_zone(name))


@dataclass
class HwmonChannel:
    label: str | None = None
    input: str | None = None
    max: str | None = None
    crit: str | None = None


def hwmon_chip(name: str | None, channels: dict[int, HwmonChannel]) -> list[schema.TempSensor]:
    """One /sys/class/hwmon/hwmonN: its name and tempK_{label,input,max,crit} files, by K."""
    chip = word(name)
    cpu = chip in CPU_HWMON if chip else False
    out = []
    for k in sorted(channels):
        ch = channels[k]
        temp = millideg(ch.input)
        if temp is None and ch.input is None:
            continue
        out.append(schema.TempSensor(source="hwmon", chip=chip, label=word(ch.label), temp_c=temp,
                                     high_c=_positive(millideg(ch.max)), crit_c=_positive(millideg(ch.crit)),
                                     cpu=cpu))
    return out


def _positive(v: float | None) -> float | None:
    return v if v is not None and v > 0 else None


@dataclass
class CpuInfo:
    """What one /sys/devices/system/cpu/cpuN gives: frequencies (kHz) and throttle counters."""

    cur_khz: str | None = None
    max_khz: str | None = None
    package: str | None = None  # topology/physical_package_id
    core: str | None = None  # topology/core_id
    core_throttles: str | None = None
    package_throttles: str | None = None


@dataclass
class Readings:
    temps: list[schema.TempSensor] = field(default_factory=list)
    cpus: list[CpuInfo] = field(default_factory=list)
    cooling: list[tuple[str | None, str | None]] = field(default_factory=list)  # (type, cur_state)


def throttle_total(cpus: list[CpuInfo]) -> int | None:
    """Core counters once per (package, core), package counters once per package; None if none readable."""
    cores: dict[tuple[str, str], int] = {}
    packages: dict[str, int] = {}
    for i, c in enumerate(cpus):
        pkg = (c.package or "").strip() or f"?{i}"
        core = (c.core or "").strip() or f"?{i}"
        n = integer(c.core_throttles)
        if n is not None:
            cores[(pkg, core)] = max(n, cores.get((pkg, core), 0))
        n = integer(c.package_throttles)
        if n is not None:
            packages[pkg] = max(n, packages.get(pkg, 0))
    if not cores and not packages:
        return None
    return sum(cores.values()) + sum(packages.values())


def summarize(r: Readings, prev_throttles: int | None) -> schema.Sensors | None:
    """The node's sensors; None when the machine exposes none of them (a VM, a container without /sys)."""
    temps = r.temps[:MAX_TEMPS]
    cpu_temps = [t for t in r.temps if t.cpu and t.temp_c is not None]
    curs = [v for v in (integer(c.cur_khz, 1, 10**8) for c in r.cpus) if v is not None]
    maxes = [v for v in (integer(c.max_khz, 1, 10**8) for c in r.cpus) if v is not None]
    total = throttle_total(r.cpus)
    states = [(kind, integer(state)) for kind, state in r.cooling if is_cpu_cooling(word(kind))]
    if not temps and not curs and not maxes and total is None and not states:
        return None
    s = schema.Sensors(temps=temps or None)
    if cpu_temps:
        hottest = max(cpu_temps, key=lambda t: t.temp_c or 0.0)
        s.cpu_temp_c = hottest.temp_c
        highs = [t.high_c for t in cpu_temps if t.high_c is not None]
        crits = [t.crit_c for t in cpu_temps if t.crit_c is not None]
        s.cpu_high_c = min(highs) if highs else None
        s.cpu_crit_c = min(crits) if crits else None
    s.freq_mhz = round(sum(curs) / len(curs) / 1000.0, 1) if curs else None
    s.freq_max_mhz = max(maxes) / 1000.0 if maxes else None
    s.throttle_count = total
    if total is not None and prev_throttles is not None:
        # A counter that went down was reset (CPU hot-unplugged and back): no new events are claimed.
        s.throttle_new = max(0, total - prev_throttles)
    known_states = [v for _, v in states if v is not None]
    s.cooling = sum(1 for v in known_states if v > 0) if known_states else None
    if s.throttle_new is not None or s.cooling is not None:
        s.throttled = bool(s.throttle_new) or bool(s.cooling)
    return s

