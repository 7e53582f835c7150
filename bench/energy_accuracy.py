"""Benchmark: how close the agent's energy figures come to the truth, on a replayed power trace.

The trace (``tests/support/power_trace.py``) is a synthetic data-parallel training run on one card (an idle
start, a ~0.7 s step loop between ~250 W and the ~690 W cap, a low-power checkpoint every minute), defined
at 10 ms with an exact integral: the ground truth. The agent's ledger (``agents/energy.py``, the real code)
is fed what the gpu collector would publish at each tick and its total is compared with the truth:
- ``counter``: NVML's total-energy counter (whole mJ), as Volta and newer cards have it;
- ``power``: the trapezoid of the instantaneous power readings (what Pascal cards give), at several tick
  intervals, with tick jitter, and with readings lost (a gap longer than ``max_gap`` is not integrated);
- ``mean power x time``: the naive figure, the mean of the readings times the wall time.
Printed: kWh and the error against the truth in %.

    python bench/energy_accuracy.py           # a 1-hour trace
    python bench/energy_accuracy.py --quick   # 10 minutes (CI smoke)
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clustertop.agents.energy import EnergySection, Ledger  # noqa: E402
from clustertop.wire import schema  # noqa: E402
from tests.support import power_trace  # noqa: E402

J_PER_KWH = 3.6e6


def run(reads: list[tuple[float, int, int]], counter: bool, drop: float = 0.0, seed: int = 1) -> float:
    rng = random.Random(seed)
    led = Ledger("bench", EnergySection(max_gap=10.0))
    for ts, p, e in reads:
        if drop and rng.random() < drop:
            continue
        g = schema.Gpu(index=0, uuid="GPU-0", power_mw=p, power_limit_mw=700_000, energy_mj=e if counter else None)
        led.observe(schema.NodeSnapshot(host="bench", ts=ts, gpus=[g],
                                        collectors={"gpu": schema.CollectorStatus(ok=True, last_ok_ts=ts)}))
    return sum(u.joules for b in led.hours.values() for (k, _), u in b.items() if k == "gpu")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    duration = 600.0 if args.quick else 3600.0
    trace = power_trace.training_trace(duration)
    base = power_trace.readings(trace, 1.0)
    first, last = base[0][0], base[-1][0]
    truth = trace.truth_j(first, last)
    print(f"trace: {duration:.0f} s synthetic training run, truth {truth / J_PER_KWH:.5f} kWh "
          f"(mean {truth / (last - first):.1f} W)")
    print(f"{'method':44} {'kWh':>9} {'error %':>8}")

    def line(label: str, joules: float, span_truth: float = truth) -> None:
        print(f"{label:44} {joules / J_PER_KWH:9.5f} {100 * (joules - span_truth) / span_truth:+8.3f}")

    line("counter, 1 s ticks", run(base, counter=True))
    line("counter, 1 s ticks, 10 % readings lost", run(base, counter=True, drop=0.10))
    for every, jitter in ((1.0, 0.0), (1.0, 0.2), (2.0, 0.0), (5.0, 0.0)):
        reads = power_trace.readings(trace, every, jitter_s=jitter)
        span = trace.truth_j(reads[0][0], reads[-1][0])
        label = f"power (trapezoid), {every:g} s ticks" + (f", jitter ±{jitter:g} s" if jitter else "")
        line(label, run(reads, counter=False), span)
    line("power (trapezoid), 1 s ticks, 10 % lost", run(base, counter=False, drop=0.10))
    mean_w = sum(p for _, p, _ in base) / len(base) / 1000
    line("mean power x time (naive), 1 s ticks", mean_w * (last - first))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
