"""Provides the health facts of a GPU (driver and CUDA version, clocks, PCIe link, throttle reasons, XIDs,
retired pages / remapped rows) and the CPU/SoC sensors section, for the node screen and the GPU table.

Every figure is node data: unknown (None, NaN, 2**64) shows as N/A, never 0; names are escaped.
"""

from __future__ import annotations

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.dashboard.widgets.pack import Part, facts, pack
from clustertop.wire import schema
from clustertop.wire.digest import cpu_high_c, cpu_hot

_HW_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")


def _na(s: str) -> Part:
    return (s, "dim") if s == fmt.NA else s


def _flag(value: bool | None, yes: str, style: str = "$ct-warn") -> list[Part]:
    return [] if not value else [(yes, style)]


def pcie(g: schema.Gpu) -> str:
    """"Gen4 x16" (current link), "Gen1 x16 of Gen3 x16" where the link runs below what it could do."""
    if g.pcie_gen is None and g.pcie_width is None:
        return fmt.NA
    cur = f"Gen{fmt.num(g.pcie_gen)} x{fmt.num(g.pcie_width)}"
    if (g.pcie_gen_max, g.pcie_width_max) not in ((None, None), (g.pcie_gen, g.pcie_width)):
        cur += f" of Gen{fmt.num(g.pcie_gen_max)} x{fmt.num(g.pcie_width_max)}"
    return cur


def xids(g: schema.Gpu) -> list[Part]:
    if g.xid_errors is None:
        return ["XID ", (fmt.NA, "dim")]
    if not g.xid_errors:
        return ["XID none"]
    last = f", last {fmt.num(g.xid_last)}" if g.xid_last is not None else ""
    return [("XID ", "$ct-crit"), (f"{fmt.num(g.xid_errors)}{last}", "bold $ct-crit")]


def memory_repair(g: schema.Gpu) -> list[Part]:
    """Retired pages (Pascal..Turing) or remapped rows (Ampere on): whichever the card answers."""
    if g.remapped_rows is not None:
        parts: list[Part] = ["remapped rows ", fmt.num(g.remapped_rows)]
        parts += _flag(g.remap_pending, " reset pending")
        parts += _flag(g.remap_failed, " REMAP FAILED", "bold $ct-crit")
        return parts
    if g.retired_pages is not None:
        return ["retired pages ", fmt.num(g.retired_pages), *_flag(g.retired_pending, " pending reload")]
    return ["retired pages ", (fmt.NA, "dim")]


def throttle(g: schema.Gpu) -> list[Part]:
    reasons = g.throttle_reasons
    if reasons is None:
        return ["throttle ", (fmt.NA, "dim")]
    if not reasons:
        return ["throttle none"]
    hw = any(r in _HW_REASONS for r in reasons)
    return ["throttle ", (fmt.node_text(", ".join(reasons), 80), "$ct-warn" if hw else "")]


def gpu_health(g: schema.Gpu, width: int) -> list[Content]:
    """The facts below a GPU's usage line: versions, clocks, link, throttling, errors."""
    groups: list[list[Part]] = [
        ["driver ", _na(fmt.node_text(g.driver, 20)), " CUDA ", _na(fmt.node_text(g.cuda_version, 8))],
        ["SM ", _na(fmt.num(g.sm_clock_mhz)), "/", _na(fmt.num(g.sm_clock_max_mhz)), " MHz"],
        ["mem ", _na(fmt.num(g.mem_clock_mhz)), " MHz"],
        ["PCIe ", _na(pcie(g))],
        ["cores ", _na(fmt.num(g.cuda_cores))],
        throttle(g), xids(g), memory_repair(g),
    ]
    if g.ecc_corrected is not None or g.ecc_uncorrected is not None:
        groups.append(["ECC ", _na(fmt.num(g.ecc_corrected)), " corr ", _na(fmt.num(g.ecc_uncorrected)), " uncorr"])
    return pack(facts(groups), width)


def sensors_section(s: schema.Sensors | None, width: int, limit: int = 8) -> Content:
    """CPU/SoC temperature, slowdown and critical points, frequency, throttling; then the hottest sensors."""
    title = Content.assemble(("CPU/SoC sensors", "bold $primary"))
    if s is None:
        return Content("\n").join([title, Content.assemble(("N/A (no thermal zones, hwmon or cpufreq here)", "dim"))])
    hot = cpu_hot(s)
    temp: list[Part] = ["temp ", (fmt.temp(s.cpu_temp_c), "bold $ct-crit" if hot else "") if s.cpu_temp_c is not None
                        else (fmt.NA, "dim")]
    if s.cpu_high_c is not None:
        temp += [" (slows at ", fmt.temp(s.cpu_high_c)]
        temp += [", crit ", fmt.temp(s.cpu_crit_c), ")"] if s.cpu_crit_c is not None else [")"]
    elif s.cpu_crit_c is not None:
        temp += [" (crit ", fmt.temp(s.cpu_crit_c), ")"]
    if s.throttled is None:
        thr: list[Part] = ["throttled ", (fmt.NA, "dim")]
    elif s.throttled:
        why = (f"{fmt.num(s.throttle_new)} events" if s.throttle_new else f"{fmt.num(s.cooling)} cooling devices")
        thr = [("THROTTLED", "bold $ct-warn"), f" ({why})"]
    else:
        thr = ["not throttled"]
    groups: list[list[Part]] = [
        temp,
        ["freq ", _na(fmt.num(s.freq_mhz)), "/", _na(fmt.num(s.freq_max_mhz)), " MHz"],
        thr,
        ["throttle count ", _na(fmt.num(s.throttle_count))] if s.throttle_count is not None else [],
    ]
    rows = pack(facts(groups), width)
    temps = sorted((t for t in s.temps or () if t.temp_c is not None and fmt.known(t.temp_c) is not None),
                   key=lambda t: -(t.temp_c or 0.0))[:limit]
    cells = []
    for t in temps:
        name = fmt.node_text(t.label or t.chip or t.source, 24)
        style = "$ct-crit" if t.cpu and t.temp_c is not None and t.temp_c >= cpu_high_c(t) else ("" if t.cpu else "dim")
        cells.append([f"{name} ", (fmt.temp(t.temp_c), style)])
    rows += pack(facts(cells), width)
    return Content("\n").join([title, *rows])
