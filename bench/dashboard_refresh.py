"""Benchmark: dashboard refresh cost at 100 and 1,000 simulated nodes with 8 GPUs each.

Per refresh: fetch + decode (``Reader.read``: one pipelined round trip) and render (the state
applied to a running app under ``run_test`` and the screen settled), p50/p95 over ~30 refreshes,
per screen; then the dashboard's CPU at a 1 Hz refresh while a simulator thread keeps publishing
(its own CPU time subtracted). Starts its own redis-server unless ``--redis URL``.

    python bench/dashboard_refresh.py            # 100 and 1,000 nodes, 384x108
    python bench/dashboard_refresh.py --quick    # CI smoke: 20 nodes, few refreshes
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from agents.simulate import SimCluster, make_publishers, publish  # noqa: E402
from collectors.reader import Reader  # noqa: E402
from dashboard.app import make_app  # noqa: E402
from dashboard.settings import Settings  # noqa: E402


def start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="ct-bench-")
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            if redis.Redis.from_url(url).ping():
                return proc, url, d
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


class Feed:
    """The simulated cluster and its publishers; ``tick()`` writes one new tick (not timed)."""

    def __init__(self, url: str, nodes: int) -> None:
        self.client = redis.Redis.from_url(url)
        self.client.flushdb()
        self.sim = SimCluster(seed=1, nodes=nodes, gpus_per_node=8)
        self.pubs = make_publishers(self.sim, self.client, 600.0)  # long TTL: nothing expires mid-run
        self.t = time.time()
        self.bytes = 0

    def tick(self) -> None:
        self.t += 1.0
        self.bytes = publish(self.client, self.sim, self.t, self.pubs)


def bench_reader(url: str, feed: Feed, n: int) -> dict[str, float]:
    reader = Reader(redis.Redis.from_url(url))
    reader.read()  # the first read learns the node list (one extra MGET, once)
    fetch, decode, total = [], [], []
    for _ in range(n):
        feed.tick()
        t0 = time.perf_counter()
        st = reader.read()
        total.append((time.perf_counter() - t0) * 1000)
        fetch.append(st.fetch_ms or 0.0)
        decode.append(st.decode_ms or 0.0)
    return {"fetch_p50": pct(fetch, 0.5), "decode_p50": pct(decode, 0.5), "read_p50": pct(total, 0.5),
            "read_p95": pct(total, 0.95)}


async def bench_app(url: str, feed: Feed, n: int, size: tuple[int, int], screen: str) -> dict[str, float]:
    app = make_app(Settings(refresh_s=3600.0), lambda: redis.Redis.from_url(url))
    times: list[float] = []
    cpu: list[float] = []
    async with app.run_test(size=size) as pilot:
        while app.reads < 1:
            await pilot.pause(0.01)
        if screen != "overview":
            await pilot.press({"nodes": "2", "gpus": "3"}[screen])
            await pilot.pause()
        # One warm-up refresh (first fill of tables is an add_row per row, not steady state).
        for i in range(n + 1):
            feed.tick()
            before = app.reads
            t0, c0 = time.perf_counter(), time.process_time()
            app.refresh_now()
            while app.reads == before:
                await pilot.pause(0.001)
            await pilot.pause()  # let the screen process the update and repaint
            await pilot.wait_for_scheduled_animations()
            if i:
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
    # Wall time includes Textual's idle waits (pilot.pause); CPU time is the work actually done.
    return {"p50": pct(times, 0.5), "p95": pct(times, 0.95), "mean": statistics.fmean(times),
            "cpu_p50": pct(cpu, 0.5), "cpu_p95": pct(cpu, 0.95)}


async def bench_cpu(url: str, feed: Feed, seconds: float, size: tuple[int, int]) -> float:
    """Dashboard CPU % of one core at a 1 Hz refresh, the simulator's own CPU subtracted."""
    stop = threading.Event()
    sim_cpu = [0.0]

    def feeder() -> None:
        start = time.thread_time()
        while not stop.wait(1.0):
            feed.tick()
        sim_cpu[0] = time.thread_time() - start

    app = make_app(Settings(refresh_s=1.0), lambda: redis.Redis.from_url(url))
    async with app.run_test(size=size) as pilot:
        while app.reads < 1:
            await pilot.pause(0.01)
        th = threading.Thread(target=feeder, daemon=True)
        c0, w0 = time.process_time(), time.perf_counter()
        th.start()
        await pilot.pause(seconds)
        stop.set()
        th.join()
        c1, w1 = time.process_time(), time.perf_counter()
    return 100 * ((c1 - c0) - sim_cpu[0]) / (w1 - w0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", metavar="URL", help="use this Redis (FLUSHDB!) instead of starting one")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 20 nodes, 5 refreshes")
    ap.add_argument("--nodes", type=int, nargs="*", help="node counts (default 100 1000)")
    ap.add_argument("--refreshes", type=int, default=30)
    ap.add_argument("--size", default="384x108", help="terminal size WxH")
    ap.add_argument("--cpu-seconds", type=float, default=10.0)
    ap.add_argument("--screens", default="overview,nodes,gpus")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    counts = args.nodes or ([20] if args.quick else [100, 1000])
    n = 5 if args.quick else args.refreshes
    cpu_s = 2.0 if args.quick else args.cpu_seconds
    proc = d = None
    url = args.redis
    if url is None:
        proc, url, d = start_redis()
    rows = []
    try:
        for nodes in counts:
            feed = Feed(url, nodes)
            feed.tick()
            r = bench_reader(url, feed, n)
            for screen in args.screens.split(","):
                a = asyncio.run(bench_app(url, feed, n, (w, h), screen))
                rows.append((nodes, screen, feed.bytes, r, a))
                print(f"  {nodes} nodes {screen}: refresh p95 {a['p95']:.1f} ms", file=sys.stderr)
            cpu = asyncio.run(bench_cpu(url, feed, cpu_s, (w, h)))
            rows.append((nodes, "cpu@1Hz", feed.bytes, r, {"cpu": cpu}))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)
            shutil.rmtree(d or "", ignore_errors=True)
    print(f"\ndashboard refresh, {w}x{h}, {n} refreshes each (ms; refresh = fetch + decode + render, settled)")
    print(f"{'nodes':>6} {'screen':<9} {'snap KiB':>9} {'fetch p50':>9} {'decode p50':>10} {'read p95':>9} "
          f"{'refresh p50':>11} {'refresh p95':>11} {'cpu p50':>8} {'cpu p95':>8}  cpu@1Hz")
    for nodes, screen, nbytes, r, a in rows:
        if screen == "cpu@1Hz":
            print(f"{nodes:>6} {'(overview)':<9} {'':>9} {'':>9} {'':>10} {'':>9} {'':>11} {'':>11} {'':>8} {'':>8}  "
                  f"{a['cpu']:.1f} % of a core")
            continue
        print(f"{nodes:>6} {screen:<9} {nbytes / 1024 / nodes:>9.1f} {r['fetch_p50']:>9.1f} {r['decode_p50']:>10.1f} "
              f"{r['read_p95']:>9.1f} {a['p50']:>11.1f} {a['p95']:>11.1f} {a['cpu_p50']:>8.1f} {a['cpu_p95']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
