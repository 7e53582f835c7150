"""Provides the one formatter module: honest, compact text for every kind of value.

Rules: ``None`` is unknown and shows as "N/A" (dim), never as 0; units are chosen here and
nowhere else; node text goes through ``node_text`` so markup and control characters show literally.
"""

from __future__ import annotations

import re
import time

from rich.text import Text

from clustertop.read.cluster import age_text

NA = "N/A"

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
# C0/C1 control characters and DEL: a process name with an ANSI escape must not drive the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def bytes_(n: float | None, digits: int = 1) -> str:
    """1536 -> "1.5 KiB"; None -> "N/A"."""
    if n is None:
        return NA
    v = float(n)
    for unit in _UNITS:
        if abs(v) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{v:.0f} B"
            return f"{v:.{digits}f} {unit}"
        v /= 1024
    return NA  # unreachable: the loop returns on the last unit


def brief_rate(n: float | None) -> str:
    """Bytes per second in 6 cells or fewer, for tiles: "22.4M", "512K", "0B"; None -> "N/A"."""
    if n is None:
        return NA
    v = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(v) < 1000 or unit == "T":
            return f"{v:.0f}{unit}" if unit == "B" or v >= 100 else f"{v:.1f}{unit}"
        v /= 1024
    return NA  # unreachable: the loop returns on the last unit


def gib(n: float | None) -> str:
    """Whole GiB, for totals in the header ("448 GiB")."""
    return NA if n is None else f"{n / 1024**3:.0f}"


def rate(n: float | None) -> str:
    """Bytes per second: "12.3 MiB/s"."""
    return NA if n is None else f"{bytes_(n)}/s"


def pct(v: float | None, digits: int = 0) -> str:
    return NA if v is None else f"{v:.{digits}f} %"


def num(v: float | None, digits: int = 0) -> str:
    return NA if v is None else f"{v:.{digits}f}"


def watts(mw: float | None) -> str:
    """Milliwatts (NVML's unit) to W or kW."""
    if mw is None:
        return NA
    w = mw / 1000
    return f"{w / 1000:.1f} kW" if w >= 1000 else f"{w:.0f} W"


def temp(c: float | None) -> str:
    return NA if c is None else f"{c:.0f} °C"


def age(s: float | None) -> str:
    """3 -> "3s", 300 -> "5m", 7200 -> "2h"; the alerts use the same words."""
    return NA if s is None else age_text(s)


def duration(s: float | None) -> str:
    """Uptime: "3d 4h", "5h 12m", "42m"."""
    if s is None:
        return NA
    s = int(max(0.0, s))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m"


def clock(ts: float | None) -> str:
    """Local wall-clock time of a Unix timestamp ("14:03:07")."""
    return NA if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


def node_text(s: str | None, limit: int | None = None) -> str:
    """Node-supplied text made safe to show: control characters become visible escapes.

    The result is still *data*: put it in a ``Text``/``Content`` or through ``markup.escape``.
    """
    if s is None:
        return NA
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 1)] + "…"
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
    """A horizontal bar as (filled, empty) strings; ``None`` -> ("", width spaces of '·')."""
    if fraction is None or width <= 0:
        return "", ("." if ascii else "·") * max(0, width)
    f = min(1.0, max(0.0, fraction)) * width
    full = int(f)
    if ascii:
        filled = "#" * full
        return filled, "-" * (width - full)
    rem = int((f - full) * 8)
    filled = BAR_FULL * full + (BAR_PARTS[rem] if rem and full < width else "")
    return filled, " " * (width - len(filled))


def sparkline(values: list[float | None], width: int, top: float | None = None, ascii: bool = False) -> str:
    """The last ``width`` values as block characters; a gap (None) shows as a space."""
    chars = ASCII_SPARKS if ascii else SPARKS
    vals = values[-width:]
    known = [v for v in vals if v is not None]
    hi = top if top is not None else (max(known) if known else 0.0)
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif hi <= 0:
            out.append(chars[0])
        else:
            out.append(chars[min(len(chars) - 1, max(0, int(v / hi * (len(chars) - 1) + 0.5)))])
    return " " * (width - len(out)) + "".join(out)


def severity_of_pct(v: float | None, warn: float = 75, crit: float = 90) -> str:
    """The severity scale every status colour comes from: ok / warn / crit / na."""
    if v is None:
        return "na"
    if v >= crit:
        return "crit"
    if v >= warn:
        return "warn"
    return "ok"
