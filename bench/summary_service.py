"""The agent's summary service (agents/summaries.py, issue 18): its own CPU per interval at N simulated 8-GPU nodes
(default 1,000 and 10,000), holding every bucket, on the agent's own RESP client against a real redis-server.

The simulator publishes the nodes once (long TTL, no summaries of its own); then ``SummaryService.step()`` runs
``--steps`` times per setting, GPU columns on (it reads the briefs' GPUs) and off (digests only), one after the other. The
figure is the step's thread CPU time (``time.thread_time``: 64 lease renewals, read, fold, seal, SET; a step a
second, so every step renews its leases), median, per 1,000
nodes folded; beside it, as the same-run baseline, a bare ``Reader.read`` of the same nodes at the same level on
the same kind of client, the cyclic collector paused as the service pauses it (what reading alone costs: the
rest is leases + fold + seal + write). Bytes written per step
= what the summaries add to Redis's intake per interval. Printed with the machine's load.

    python bench/summary_service.py
    python bench/summary_service.py --nodes 1000 --steps 9
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import redis  # noqa: E402
from benchlib.redis_server import start_redis, stop  # noqa: E402  (bench/benchlib/)

from clustertop.agents.lease import Lease  # noqa: E402
from clustertop.agents.summaries import SummariesSection, SummaryService  # noqa: E402
from clustertop.control import signing  # noqa: E402
from clustertop.read.plan import Level, ReadPlan  # noqa: E402
from clustertop.read.reader import Reader  # noqa: E402
from clustertop.sim.simulate import SimCluster, make_publishers, publish  # noqa: E402
from clustertop.store.resp import Client  # noqa: E402


def fill(url: str, n: int) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    sim = SimCluster(seed=1, nodes=n, gpus_per_node=8, summaries=False)
    pubs = make_publishers(sim, client, 3600.0)  # nothing expires during the run
    publish(client, sim, time.time(), pubs)
    client.close()


def run(url: str, n: int, steps: int) -> None:
    fill(url, n)
    key = signing.new_key()
    services = {}
    for cols in (True, False):
        services[cols] = SummaryService(SummariesSection(interval=1.0, gpu_columns=cols), f"sum-{cols}", 1.0,
                                        lambda: Client.from_url(url),
                                        lambda client, name, period: Lease(client, name, "sum", period), key)
    readers = {cols: Reader(Client.from_url(url), brief_from=0) for cols in (True, False)}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    read_cpu: dict[bool, list[float]] = {True: [], False: []}
    written: dict[bool, int] = {}
    for cols, svc in services.items():
        # One setting after the other (at 10,000 nodes a step and its baseline read take over a second of wall time
        # on a loaded machine: interleaved, each service's 3 s leases would lapse between its steps). The first
        # step learns the index (one more MGET of every payload: seconds at 10,000 nodes, longer than the leases'
        # 3 s, so they lapse under it once) and takes the leases: warm up until every bucket is held.
        for _ in range(6):
            if svc.step() and len(svc.held) == 64:
                break
        assert len(svc.held) == 64, (svc.error, len(svc.held))
        for _ in range(steps):
            t_iter = time.monotonic()
            assert svc.step(), (n, cols, svc.error, len(svc.held))
            assert svc.last_nodes == n, (svc.last_nodes, n)
            gc.disable()  # as the service reads (agents/summaries.py)
            t0 = time.thread_time()
            readers[cols].read(ReadPlan(Level.GPUS if cols else Level.DIGESTS))
            read_cpu[cols].append((time.thread_time() - t0) * 1000)
            gc.enable()
            cpu[cols].append(svc.last_cpu_ms)
            written[cols] = svc.last_bytes
            # A step a second, as the service runs: every step renews its 64 leases (a lease renews once a period).
            time.sleep(max(0.0, 1.05 - (time.monotonic() - t_iter)))
        svc.close()
    load = os.getloadavg()[0]
    print(f"\n{n:,} nodes x 8 GPUs, every bucket held, {steps} steps each; load {load:.2f}")
    for cols in (True, False):
        step, read = statistics.median(cpu[cols]), statistics.median(read_cpu[cols])
        print(f"  GPU columns {'on ' if cols else 'off'}: step {step:.1f} ms CPU ({step * 1000 / n:.1f} ms per 1,000 "
              f"nodes); a bare read of the same nodes {read:.1f} ms ({step / read:.2f}x); written "
              f"{written[cols] / 1024:,.0f} KiB per interval ({written[cols] / n:.0f} B/node/s at a 1 s interval)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 200 nodes, 3 steps")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.steps = [200], 3
    proc, url, d = start_redis()
    try:
        for n in args.nodes:
            run(url, n, args.steps)
    finally:
        stop(proc, 5.0)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
