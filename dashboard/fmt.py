"""Provides the one formatter module: honest, compact text for every kind of value.

Rules: ``None`` is unknown and shows as "N/A" (dim), never as 0; units are chosen here and
nowhere else; node text goes through ``node_text`` so markup and control characters show literally.

Every value here came from a node, and any node can write anything to Redis: NaN, ±inf, 1e308,
2**64 - 1, a negative size. Such a value is not a measurement, so every helper shows it as unknown
("N/A"), never as a 309-digit number, and never raises (a ``ValueError`` from ``int(nan)`` in a
sparkline once took the whole dashboard down). ``known`` is that one test.
"""

from __future__ import annotations

import time

from rich.text import Text

from clustertop.read.cluster import age_text
from clustertop.wire.text import MAX_FIGURE, inert
from clustertop.wire.text import known as _known

NA = "N/A"

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

#: Bounds past which a value is a broken counter or a lie, not a measurement (shown as N/A).
MAX_BYTES = 2**60  # 1 EiB: no disk, GPU, node or Ceph cluster here holds that much
MAX_RATE = 2**50  # 1 PiB/s: far past any NIC, disk or cluster sum
MAX_PCT = 100_000.0  # per-process CPU % is of one core: 1,000 cores at 100 %
MAX_NUM = MAX_FIGURE  # counts, loads, clocks, latencies, operations per second (11 digits at most)
MAX_SERIES = float(MAX_BYTES)  # what a sparkline or a plot draws: past every byte count or rate here
MAX_MW = 1e12  # 1 GW of GPU board power
#: Node text is cut here when the caller names no limit: wider than any terminal line (480 cells),
#: and far short of the megabyte host name a Redis writer can put in the index.
TEXT_LIMIT = 512


def known(v: float | None, lo: float = -MAX_NUM, hi: float = MAX_NUM) -> float | None:
    """``v`` as a float where it is a value worth showing; None (unknown) where it is missing, not
    finite or outside ``[lo, hi]`` (``wire.text.known``: the one test, shared with the CLI)."""
    return _known(v, lo, hi)


def bytes_(n: float | None, digits: int = 1) -> str:
    """1536 -> "1.5 KiB"; None, NaN, negative or past MAX_BYTES -> "N/A"."""
    v = known(n, 0, MAX_BYTES)
    if v is None:
        return NA
    for unit in _UNITS:
        if abs(v) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{v:.0f} B"
            return f"{v:.{digits}f} {unit}"
        v /= 1024
    return NA  # unreachable: the loop returns on the last unit


def brief_rate(n: float | None) -> str:
    """Bytes per second in 6 cells or fewer, for tiles: "22.4M", "512K", "0B"; None -> "N/A"."""
    v = known(n, 0, MAX_RATE)
    if v is None:
        return NA
    for unit in ("B", "K", "M", "G", "T"):
        if abs(v) < 1000 or unit == "T":
            return f"{v:.0f}{unit}" if unit == "B" or v >= 100 else f"{v:.1f}{unit}"
        v /= 1024
    return NA  # unreachable: the loop returns on the last unit


def gib(n: float | None) -> str:
    """Whole GiB, for totals in the header ("448 GiB")."""
    v = known(n, 0, MAX_BYTES)
    return NA if v is None else f"{v / 1024**3:.0f}"


def rate(n: float | None) -> str:
    """Bytes per second: "12.3 MiB/s"."""
    return NA if known(n, 0, MAX_RATE) is None else f"{bytes_(n)}/s"


def pct(v: float | None, digits: int = 0) -> str:
    """A percentage: "42 %"; negative, NaN or past MAX_PCT -> "N/A"."""
    f = known(v, 0, MAX_PCT)
    return NA if f is None else f"{f:.{digits}f} %"


def num(v: float | None, digits: int = 0) -> str:
    """A plain number (counts, loads, clocks, exit codes: may be negative); past ±MAX_NUM -> "N/A"."""
    f = known(v)
    return NA if f is None else f"{f:.{digits}f}"


def seconds(v: float | None) -> str:
    """An interval in its shortest form ("1s", "0.5s"); negative, NaN or past a million seconds -> "N/A"
    (``:g`` would print 1e308 as "1e+308s")."""
    f = known(v, 0, 1e6)
    return NA if f is None else f"{round(f, 3):g}s"  # rounded: 1e-280 would be "1e-280s"


def watts(mw: float | None) -> str:
    """Milliwatts (NVML's unit) to W or kW."""
    v = known(mw, 0, MAX_MW)
    if v is None:
        return NA
    w = v / 1000
    return f"{w / 1000:.1f} kW" if w >= 1000 else f"{w:.0f} W"


def temp(c: float | None) -> str:
    v = known(c, -273.15, 1000)  # below absolute zero, or hotter than silicon survives: not a reading
    return NA if v is None else f"{v:.0f} °C"


def age(s: float | None) -> str:
    """3 -> "3s", 300 -> "5m", 7200 -> "2h"; the alerts use the same words."""
    return NA if known(s) is None else age_text(s)


def duration(s: float | None) -> str:
    """Uptime: "3d 4h", "5h 12m", "42m"; NaN, inf or past MAX_NUM seconds (317 years) -> "N/A"."""
    v = known(s)
    if v is None:
        return NA
    s = int(max(0.0, v))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m"


def clock(ts: float | None) -> str:
    """Local wall-clock time of a Unix timestamp ("14:03:07"); one the C library cannot place
    (NaN, inf, 1e308: ValueError, OverflowError or OSError from ``localtime``) -> "N/A"."""
    return strftime("%H:%M:%S", ts)


def strftime(pattern: str, ts: float | None) -> str:
    """``time.strftime`` of a Unix timestamp from a node, "N/A" where it is no time at all."""
    if ts is None:
        return NA
    try:
        return time.strftime(pattern, time.localtime(ts))
    except (ValueError, OverflowError, OSError):
        return NA


def node_text(s: object, limit: int | None = None) -> str:
    """Node-supplied text made safe to show, by ``wire.text.inert`` (the one escaper, shared with the
    CLI): controls, bidi overrides and zero-width characters become visible escapes ("\\x1b",
    "\\u202e"); cut to ``limit`` characters, TEXT_LIMIT when none is named, with "…".

    The result is still *data*: put it in a ``Text``/``Content`` (never parsed as markup), which is
    how every widget here draws it. It is deliberately not markup-escaped: inside a ``Content`` a
    ``\\[`` would show its backslash.
    """
    if s is None:
        return NA
    cap = TEXT_LIMIT if limit is None else max(1, limit)
    out = inert(s, limit=cap)  # cut before escaping: a megabyte name costs no more than a short one
    if len(out) > cap:  # escapes made it longer: cut again, so ``limit`` bounds what is drawn
        out = out[: cap - 1] + "…"
    return out


def cell(s: str, style: str = "") -> Text:
    """A table cell: N/A is dimmed so it never reads as a value."""
    if s == NA:
        return Text(NA, style="dim", justify="right")
    return Text(s, style=style, justify="right")


def text_cell(s: str | None, style: str = "", limit: int | None = None) -> Text:
    """A left-aligned cell of node text (never parsed as markup)."""
    if s is None:
        return Text(NA, style="dim")
    return Text(node_text(s, limit), style=style)


BAR_FULL = "█"
BAR_PARTS = " ▏▎▍▌▋▊▉"
SPARKS = "▁▂▃▄▅▆▇█"
ASCII_SPARKS = "_.-=+*#@"


def bar(fraction: float | None, width: int, ascii: bool = False) -> tuple[str, str]:
    """A horizontal bar as (filled, empty) strings; ``None`` or NaN/inf -> ("", width spaces of '·')."""
    frac = known(fraction)
    if frac is None or width <= 0:
        return "", ("." if ascii else "·") * max(0, width)
    f = min(1.0, max(0.0, frac)) * width
    full = int(f)
    if ascii:
        filled = "#" * full
        return filled, "-" * (width - full)
    rem = int((f - full) * 8)
    filled = BAR_FULL * full + (BAR_PARTS[rem] if rem and full < width else "")
    return filled, " " * (width - len(filled))


def sparkline(values: list[float | None], width: int, top: float | None = None, ascii: bool = False) -> str:
    """The last ``width`` values as block characters; a gap (None, or a NaN/inf/absurd value: unknown,
    not a level) shows as a space. The scale's top is ``top`` or the largest value shown."""
    chars = ASCII_SPARKS if ascii else SPARKS
    vals = [known(v, -MAX_SERIES, MAX_SERIES) for v in values[-width:]] if width > 0 else []
    seen = [v for v in vals if v is not None]
    hi = known(top, -MAX_SERIES, MAX_SERIES) if top is not None else (max(seen) if seen else 0.0)
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif hi is None or hi <= 0:
            out.append(chars[0])
        else:
            # Clamped before int(): under a tiny top (5e-324) the ratio is inf, and int(inf) raises.
            level = min(1.0, max(0.0, v / hi))
            out.append(chars[int(level * (len(chars) - 1) + 0.5)])
    return " " * (width - len(out)) + "".join(out)


def severity_of_pct(v: float | None, warn: float = 75, crit: float = 90) -> str:
    """The severity scale every status colour comes from: ok / warn / crit / na (NaN, inf: unknown)."""
    f = known(v, -MAX_PCT, MAX_PCT)
    if f is None:
        return "na"
    if f >= crit:
        return "crit"
    if f >= warn:
        return "warn"
    return "ok"
