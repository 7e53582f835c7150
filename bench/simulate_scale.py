"""Measures `clustertop simulate`: steady-state seconds per tick on one Redis and on a 3-master Redis Cluster,
in one process and split over processes (``--procs``), plus the start-up (model build) each run pays.

Each figure comes from real runs of the CLI (``--ticks 2`` and ``--ticks 2+T``, ``--interval 0.01`` so no
tick waits), the fastest of ``--repeat`` runs each: per tick = (wall(2+T) - wall(2)) / T, which leaves out the
interpreter start and the build; "2 ticks s" is wall(2) itself (start, build, two ticks). The ratio column is
against ``--procs 1`` on the same deployment in the same run. Informational: exits 0.
On a machine with fewer free cores than processes the split cannot help (each part also builds the whole
cluster's shared model); see the load average printed.

    python bench/simulate_scale.py [--nodes 5000] [--ticks 5] [--procs 1,2,4] [--repeat 3] [--no-cluster]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import RedisServer  # noqa: E402
from tests.support.redis_ha import RedisCluster  # noqa: E402


def wall(url: str, nodes: int, ticks: int, procs: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "clustertop", "simulate", "--redis", url, "--nodes", str(nodes),
                          "--ticks", str(ticks), "--interval", "0.01", "--procs", str(procs)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    if out.returncode:
        raise SystemExit(f"simulate --procs {procs} on {url}: {out.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--ticks", type=int, default=5)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 500 nodes, 2 ticks, once")
    a = ap.parse_args()
    if a.quick:
        a.nodes, a.ticks, a.repeat = 500, 2, 1
    procs = [int(p) for p in a.procs.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    single = RedisServer()
    cluster = None if a.no_cluster else RedisCluster().start()
    try:
        rows = [("one Redis", single.url)] + ([("Redis Cluster (3 masters)", cluster.url)] if cluster else [])
        print(f"{a.nodes:,} nodes, {a.ticks} timed ticks")
        print(f"{'deployment':28} {'procs':>5} {'2 ticks s':>10} {'s/tick':>8} {'nodes/s':>9} {'ratio':>6}")
        for name, url in rows:
            base = None
            for k in procs:
                short = min(wall(url, a.nodes, 2, k) for _ in range(a.repeat))
                long = min(wall(url, a.nodes, 2 + a.ticks, k) for _ in range(a.repeat))
                if long <= short:  # noise larger than the ticks timed (a busy machine, big clusters): no figure
                    print(f"{name:28} {k:5} {short:10.2f} {'n/a: the longer run was not slower; more --ticks':>26}")
                    continue
                per_tick = (long - short) / a.ticks
                base = base or per_tick
                print(f"{name:28} {k:5} {short:10.2f} {per_tick:8.3f} {a.nodes / per_tick:9,.0f} "
                      f"{per_tick / base:6.2f}")
    finally:
        if cluster is not None:
            cluster.stop()
        single.stop()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
