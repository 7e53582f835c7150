"""Benchmark: `clustertop exporter` scrape time and CPU per scrape at 100 and 1,000 simulated nodes x 8 GPUs.

The exporter runs as its own process (`python -m clustertop exporter`), as it would beside Prometheus, on
a redis-server this script starts (or ``--redis URL``, which is FLUSHDB'd). The simulator publishes one
tick of N nodes x 8 GPUs with a long TTL; the data then holds still (decoding costs the same whatever the
values). Per size:

- ``miss``: scrapes that each read Redis (``--cache 0``), as Prometheus asks for them (``Accept-Encoding:
  gzip``): wall time as the scraper sees it (request to last byte), p50/p95, and the exporter process's
  CPU time per scrape (utime + stime from /proc/<pid>/stat over all of them, so the HTTP server, gzip and
  the garbage collector are in it). ``read`` and ``render`` are the exporter's own figures
  (``clustertop_exporter_read_seconds``: Redis round trip + decode; ``_render_seconds``: the exposition).
- ``plain``: the same without gzip (what curl gets).
- ``hit``: scrapes within the default 1 s cache of a read (an HA pair of Prometheus servers): no read,
  the same bytes again.
- the page: series, bytes plain and gzip, and the exporter's RSS after the run.

    python bench/exporter_scrape.py            # 100 and 1,000 nodes
    python bench/exporter_scrape.py --quick    # CI smoke: 100 nodes, fewer scrapes (well under a minute)
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from benchlib.redis_server import start_redis  # noqa: E402  (bench/benchlib/)

from clustertop.sim.simulate import SimCluster, make_publishers, publish  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


class Exporter:
    def __init__(self, url: str, cache: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "clustertop", "exporter", "--listen", "127.0.0.1:0",
                                      "--redis", url, "--cache", str(cache), "--log-level", "warning"],
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        m = re.search(r"serving (http://\S+/metrics)", line)
        if not m:
            raise SystemExit(f"exporter did not start: {line}{self.proc.stderr.read()}")
        self.url = m.group(1)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # never let its pipe fill

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def scrape(self, compress: bool) -> tuple[float, bytes]:
        req = urllib.request.Request(self.url, headers={"Accept-Encoding": "gzip"} if compress else {})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            body = r.read()
        return time.perf_counter() - t0, body

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def own(body: bytes, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else float("nan")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(v: float) -> str:
    return f"{v * 1000:7.1f}"


def measure(url: str, nodes: int, scrapes: int) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    t0 = time.perf_counter()
    sim = SimCluster(seed=1, nodes=nodes, gpus_per_node=8)
    publish(client, sim, time.time(), make_publishers(sim, client, 600.0))  # long TTL: nothing expires mid-run
    print(f"\n{nodes} nodes x 8 GPUs (published in {time.perf_counter() - t0:.1f} s)")

    exp = Exporter(url, cache=0)
    try:
        for _ in range(2):  # the first read learns the nodes (one more MGET, once)
            exp.scrape(True)
        walls, reads, renders = [], [], []
        cpu0 = exp.cpu_s()
        for _ in range(scrapes):
            wall, body = exp.scrape(True)
            text = gzip.decompress(body)
            walls.append(wall)
            reads.append(own(text, "clustertop_exporter_read_seconds"))
            renders.append(own(text, "clustertop_exporter_render_seconds"))
        cpu = (exp.cpu_s() - cpu0) / scrapes
        plain = [exp.scrape(False) for _ in range(max(3, scrapes // 3))]
        series = own(plain[-1][1], "clustertop_exporter_series")
        rss = exp.rss_mib()
    finally:
        exp.stop()
    print(f"  miss (gzip)   wall p50 {ms(statistics.median(walls))} ms  p95 {ms(pct(walls, 0.95))} ms   "
          f"exporter CPU {ms(cpu)} ms/scrape   read p50 {ms(statistics.median(reads))} ms   "
          f"render p50 {ms(statistics.median(renders))} ms")
    pw = [w for w, _ in plain]
    print(f"  miss (plain)  wall p50 {ms(statistics.median(pw))} ms  p95 {ms(pct(pw, 0.95))} ms")

    exp = Exporter(url, cache=1.0)
    try:
        exp.scrape(True)
        hits = []
        start = time.monotonic()
        while time.monotonic() - start < 0.8 and len(hits) < 20:
            wall, body = exp.scrape(True)
            hits.append(wall)
        reads_total = own(gzip.decompress(body), "clustertop_exporter_reads_total")
    finally:
        exp.stop()
    print(f"  hit (gzip)    wall p50 {ms(statistics.median(hits))} ms  ({len(hits)} scrapes, "
          f"{reads_total:.0f} read{'s' if reads_total != 1 else ''})")
    body = plain[-1][1]
    print(f"  page          {series:,.0f} series, {len(body) / 1e6:.1f} MB plain, "
          f"{len(gzip.compress(body, 1)) / 1e6:.2f} MB gzip   exporter RSS {rss:.0f} MiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", metavar="URL", help="use this Redis (FLUSHDB!) instead of starting one")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 100 nodes, 10 scrapes")
    ap.add_argument("--scrapes", type=int, default=None, help="scrapes per size (default 30; --quick 10)")
    args = ap.parse_args()
    sizes = (100,) if args.quick else (100, 1000)
    scrapes = args.scrapes or (10 if args.quick else 30)
    if args.redis is None and shutil.which("redis-server") is None:
        print("redis-server not installed: nothing measured")
        return 0
    proc = tmp = None
    url = args.redis
    if url is None:
        proc, url, tmp = start_redis()
    print(f"clustertop exporter scrape benchmark ({os.cpu_count()} CPUs; shared machine: compare runs made "
          f"back to back)")
    try:
        for n in sizes:
            measure(url, n, scrapes)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
