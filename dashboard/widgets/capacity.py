"""Provides usage bars as Content parts: capacity of Ceph, OSDs, pools and filesystems.

Parts are (text, style) pairs for ``Content.assemble``, drawn on the theme's ``$ct-bar-empty``
track so the empty part is visible; unknown usage is a dotted track and "N/A", never an empty bar.
"""

from __future__ import annotations

from clustertop.dashboard import fmt

Part = str | tuple[str, str]

#: Ceph's own defaults: nearfull_ratio 0.85, full_ratio 0.95 (writes stop at full).
CEPH_NEARFULL_PCT = 85.0
CEPH_FULL_PCT = 95.0

SEV_STYLE = {"ok": "$ct-ok", "info": "$ct-info", "warn": "$ct-warn", "crit": "$ct-crit", "na": "dim",
             "stale": "$ct-stale"}


def fraction(used: float | None, total: float | None) -> float | None:
    """used/total, or None when either is unknown or the total is 0 (no capacity is not 0 % used)."""
    if used is None or not total:
        return None
    return used / total


def usage_bar(frac: float | None, width: int, ascii: bool = False, warn: float = CEPH_NEARFULL_PCT,
              crit: float = CEPH_FULL_PCT, show_pct: bool = True) -> list[Part]:
    """A bar of ``width`` cells coloured by severity, then " 47 %" (5 cells) when ``show_pct``. A NaN or
    infinite fraction (a node's 1e308 over its 1e-308) is unknown: the dotted track and N/A."""
    frac = fmt.known(frac)
    if frac is None:
        _, empty = fmt.bar(None, width, ascii)
        parts: list[Part] = [(empty, "dim")]
        if show_pct:
            parts.append((f" {fmt.NA:>5}", "dim"))
        return parts
    pct = 100 * frac
    sev = SEV_STYLE[fmt.severity_of_pct(pct, warn, crit)]
    filled, empty = fmt.bar(frac, width, ascii)
    parts = [(filled, f"{sev} on $ct-bar-empty"), (empty, "on $ct-bar-empty")]
    if show_pct:
        parts.append((f" {fmt.pct(pct):>5}", sev if sev != "$ct-ok" else ""))
    return parts


def count(n: int | None) -> str:
    """Object counts: 987, 12.3 k, 4.5 M, 1.2 G; None, negative or past 10**15 (a 2**64 - 1 counter) -> N/A."""
    if fmt.known(n, 0, 1e15) is None:
        return fmt.NA
    assert n is not None
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)
