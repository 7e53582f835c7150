"""Provides the dashboard's one ring of timestamped samples, and the ring of cluster totals (an hour)
that the overview's sparklines and the wall's trend charts draw from.

Every trend the dashboard keeps itself (cluster totals here, Ceph I/O in widgets/cephio.py) is a
``Ring``: bounded, oldest first, one sample per timestamp, and a gap is a sample of Nones, never zeros.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from clustertop.read.cluster import Totals

WINDOW_S = 3600.0


class Timed(Protocol):
    @property
    def ts(self) -> float: ...


S = TypeVar("S", bound=Timed)


def window_len(refresh_s: float, window_s: float = WINDOW_S) -> int:
    """Samples in ``window_s`` at one per ``refresh_s`` (floored at 50 ms, so a tiny refresh stays bounded)."""
    return max(2, int(window_s / max(0.05, refresh_s)) + 1)


class Ring(Generic[S]):
    """Timestamped samples, oldest first, at most ``maxlen`` of them."""

    def __init__(self, maxlen: int) -> None:
        self.samples: deque[S] = deque(maxlen=maxlen)

    def push(self, sample: S) -> None:
        # Same or older timestamp (a frozen clock, two reads within a tick, a payload read again):
        # replace the last sample, do not duplicate it; time in the ring only moves forward.
        if self.samples and self.samples[-1].ts >= sample.ts:
            self.samples[-1] = sample
        else:
            self.samples.append(sample)

    @property
    def last(self) -> S | None:
        return self.samples[-1] if self.samples else None

    def series(self, name: str) -> list[Any]:
        """One field of every sample, oldest first (a sparkline's values)."""
        return [getattr(s, name) for s in self.samples]

    def points(self, name: str, scale: float = 1.0) -> list[tuple[float, float | None]]:
        """(ts, field / scale) of every sample, oldest first (a time plot's points); a gap stays None."""
        out: list[tuple[float, float | None]] = []
        for s in self.samples:
            v = getattr(s, name)
            out.append((s.ts, None if v is None else v / scale))
        return out

    def __len__(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class Sample:
    ts: float
    gpu_util_pct: float | None
    power_mw: int | None
    cpu_util_pct: float | None
    vram_used_bytes: int | None
    tasks_queued: int | None


class TotalsHistory(Ring[Sample]):
    def __init__(self, refresh_s: float = 1.0, window_s: float = WINDOW_S) -> None:
        super().__init__(window_len(refresh_s, window_s))

    def add(self, ts: float, t: Totals) -> None:
        self.push(Sample(ts, t.gpu_util_pct, t.power_mw, t.cpu_util_pct, t.vram_used_bytes, t.tasks_queued))

    def add_gap(self, ts: float) -> None:
        """The store was unreachable: a gap, not zeros."""
        self.add(ts, Totals())
