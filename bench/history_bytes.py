"""Benchmark: what a node's history costs in Redis: the 1-hour stream of 5-second points, and the 1-minute
(24 h) and 10-minute (7 d) tiers the agent downsamples it into (``clustertop/wire/tiers.py``).

One simulated node (the simulator's model: moving CPU, GPU, VRAM, power, temperature and network figures)
per GPU count is run through the agent's real writers at its default 5 s history interval, into a
redis-server this script starts: the 1-hour stream as the publisher writes it (``XADD MAXLEN ~ 800``) and
the tiers through ``agents.tiers.TierWriter``. Bytes are Redis's own ``MEMORY USAGE`` of each key once full
(the stream after an hour, the 1-minute tier after a day, the 10-minute tier after a week), so the
figures include Redis's per-entry and per-key overhead, not just payload bytes.

Printed per GPU count: each key's bytes and entries and bytes per entry; ``tiers`` = both tiers, full;
``per day`` = what one day of history costs across the tiers (the 1-minute tier holds one day; the
10-minute tier's day is a seventh of it); and the tiers as a ratio of the 1-hour stream.

    python bench/history_bytes.py           # 0, 2 and 8 GPUs, a full week each (~1-2 min)
    python bench/history_bytes.py --quick   # CI smoke: 8 GPUs only, full tiers still
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from benchlib.redis_server import start_redis  # noqa: E402  (bench/benchlib/)

from clustertop import wire  # noqa: E402
from clustertop.agents.tiers import TierWriter  # noqa: E402
from clustertop.sim.simulate import SimCluster  # noqa: E402
from clustertop.wire import schema  # noqa: E402
from clustertop.wire.tiers import MINUTE, TEN_MINUTES, block_starts, points  # noqa: E402

EVERY_S = 5.0
DAY = 86400
WEEK = 7 * DAY


def run(client: redis.Redis, gpus: int) -> dict[str, tuple[int, int]]:
    """A week of one node's history; returns what -> (MEMORY USAGE bytes, keys or entries), measured full."""
    sim = SimCluster(seed=3, nodes=1, gpus_per_node=gpus)
    host = sim.hosts[0]
    writer = TierWriter(host)
    t0 = 1_800_000_000.0
    n = int(WEEK / EVERY_S)
    minutes = []
    # The model's figures move slowly; stepping it every minute and holding its point for the minute's
    # twelve samples keeps the run short without making the tiers' numbers any rounder.
    for i in range(0, n, 12):
        (_snap, hp), = [(s, h) for s, h in sim.step(t0 + i * EVERY_S)[0] if s.host == host]
        minutes.append(hp)
    p = client.pipeline(transaction=False)
    for i in range(n):
        hp = wire.decode(wire.encode(minutes[i // 12]), schema.HistPoint)
        hp.ts = t0 + i * EVERY_S
        if i >= n - 720:  # the stream keeps the last hour: write only that (the cap makes the rest moot)
            # Packed, as the publisher writes it (wire.compress: the history point's own dictionary).
            p.xadd(wire.hist_key(host), {"d": wire.pack(wire.encode(hp), "hist")}, maxlen=wire.HIST_MAXLEN,
                   approximate=True)
        writer.add(hp)
        if writer.has_work():
            writer.flush(client)  # the agent's own calls: MGET of a block on start, a SET per closed bucket
    p.execute()
    end = t0 + n * EVERY_S
    out: dict[str, tuple[int, int]] = {}
    for tier in (MINUTE, TEN_MINUTES):
        # What a dashboard asking for the tier's whole span reads: the blocks still there.
        keys = [wire.tier_block_key(host, tier.name, s) for s in block_starts(tier, end - tier.span_s, end)]
        sizes = [int(client.memory_usage(k, samples=0) or 0) for k in keys if client.exists(k)]
        pts = sum(len(points(wire.decode(client.get(k), schema.TierBlock))) for k in keys if client.exists(k))
        out[f"{tier.name} tier ({tier.span_s // 3600} h)"] = (sum(sizes), pts)
    key = wire.hist_key(host)
    out["1 h stream"] = (int(client.memory_usage(key, samples=0) or 0), int(client.xlen(key)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 GPUs only")
    args = ap.parse_args()
    proc, url, d = start_redis()
    try:
        client = redis.Redis.from_url(url)
        for gpus in ((8,) if args.quick else (0, 2, 8)):
            client.flushdb()
            t = time.perf_counter()
            res = run(client, gpus)
            hour = res["1 h stream"][0]
            m1, m10 = res["1m tier (24 h)"][0], res["10m tier (168 h)"][0]
            print(f"node with {gpus} GPUs ({time.perf_counter() - t:.0f} s to simulate a week)")
            for name, (size, entries) in res.items():
                print(f"  {name:<16} {size / 1024:8.1f} KiB  {entries:5d} points  {size / max(1, entries):6.1f} B/point")
            print(f"  {'tiers, full':<16} {(m1 + m10) / 1024:8.1f} KiB  ({(m1 + m10) / hour:.2f} x the 1 h stream)")
            print(f"  {'per day':<16} {(m1 + m10 / 7) / 1024:8.1f} KiB  (a day of 1m points + a day of 10m points)")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
