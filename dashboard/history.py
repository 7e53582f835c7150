"""Provides the dashboard's own ring buffer of cluster totals (an hour), for the overview's sparklines."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from clustertop.read.cluster import Totals

WINDOW_S = 3600.0


@dataclass(frozen=True)
class Sample:
    ts: float
    gpu_util_pct: float | None
    power_mw: int | None
    cpu_util_pct: float | None
    vram_used_bytes: int | None


class TotalsHistory:
    def __init__(self, refresh_s: float = 1.0, window_s: float = WINDOW_S) -> None:
        self.samples: deque[Sample] = deque(maxlen=max(2, int(window_s / max(0.05, refresh_s)) + 1))

    def add(self, ts: float, t: Totals) -> None:
        s = Sample(ts, t.gpu_util_pct, t.power_mw, t.cpu_util_pct, t.vram_used_bytes)
        # Same timestamp (a frozen clock, or two reads within a tick): replace, do not duplicate.
        if self.samples and self.samples[-1].ts >= ts:
            self.samples[-1] = s
        else:
            self.samples.append(s)

    def add_gap(self, ts: float) -> None:
        """The store was unreachable: a gap, not zeros."""
        self.add(ts, Totals())

    def series(self, name: str) -> list[float | None]:
        return [getattr(s, name) for s in self.samples]
