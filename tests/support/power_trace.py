"""Provides a replayable GPU power trace and what NVML would report of it, for the energy ledger's tests and
``bench/energy_accuracy.py``.

The trace is synthetic (no GPU here), shaped on what data-parallel training does to a card's power: a
step loop of ~0.7 s (about 0.55 s of compute near the power cap, 0.15 s of communication/data loading far
below it), a checkpoint every minute (a few seconds at low power), an idle start, noise. It is defined at
10 ms resolution, and the ground truth is its exact integral at that resolution. What the agent sees of it
once per tick: the instantaneous power (as Pascal-era cards report it) and NVML's total-energy counter in
whole mJ (Volta and newer), both read at the tick, with an optional jitter of the tick itself.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

RES_S = 0.01  # trace resolution


@dataclass
class Trace:
    """Power in W every RES_S from t0, and the cumulative energy (J) at every point."""

    t0: float
    watts: list[float]
    cum_j: list[float]

    @property
    def duration_s(self) -> float:
        return (len(self.watts) - 1) * RES_S

    def _index(self, t: float) -> tuple[int, float]:
        x = (t - self.t0) / RES_S
        i = max(0, min(len(self.watts) - 2, int(x)))
        return i, min(1.0, max(0.0, x - i))

    def power_w(self, t: float) -> float:
        i, f = self._index(t)
        return self.watts[i] + (self.watts[i + 1] - self.watts[i]) * f

    def energy_j(self, t: float) -> float:
        """The exact integral from t0 to t (the trace is linear between points)."""
        i, f = self._index(t)
        p0, p1 = self.watts[i], self.power_w(t)
        return self.cum_j[i] + (p0 + p1) / 2 * f * RES_S

    def truth_j(self, a: float, b: float) -> float:
        return self.energy_j(b) - self.energy_j(a)


def training_trace(duration_s: float, seed: int = 16, t0: float = 1_800_000_000.0, idle_s: float = 30.0,
                   cap_w: float = 690.0) -> Trace:
    rng = random.Random(seed)
    n = int(duration_s / RES_S) + 1
    watts = []
    step = 0.7
    for k in range(n):
        t = k * RES_S
        if t < idle_s:
            w = 70.0 + rng.gauss(0, 1.5)
        elif (t - idle_s) % 60.0 < 4.0:  # checkpoint: the card waits on storage
            w = 180.0 + rng.gauss(0, 10)
        else:
            phase = ((t - idle_s) % step) / step
            w = (cap_w - 40 + 30 * math.sin(t * 0.9) + rng.gauss(0, 12)) if phase < 0.78 else 250.0 + rng.gauss(0, 20)
        watts.append(max(20.0, min(cap_w, w)))
    cum = [0.0]
    for a, b in zip(watts, watts[1:], strict=False):
        cum.append(cum[-1] + (a + b) / 2 * RES_S)
    return Trace(t0, watts, cum)


def readings(trace: Trace, every_s: float = 1.0, jitter_s: float = 0.0, seed: int = 7,
             counter_base_mj: int = 104_213_774_310) -> list[tuple[float, int, int]]:
    """(ts, power_mw, energy_mj) at each tick, as the gpu collector would publish them."""
    rng = random.Random(seed)
    out = []
    t = trace.t0
    end = trace.t0 + trace.duration_s
    while t <= end:
        ts = min(end, t + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0))
        if out and ts <= out[-1][0]:
            ts = out[-1][0] + RES_S
        out.append((ts, int(trace.power_w(ts) * 1000), counter_base_mj + int(trace.energy_j(ts) * 1000)))
        t += every_s
    return out
