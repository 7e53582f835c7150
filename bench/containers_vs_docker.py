"""Measures the containers collector against the engine's own `docker ps` / `docker stats`, and what a poll costs.

Starts a private Docker Engine (tests/support/dockerd.py: docker.io, busybox image, --network none), runs
containers with known loads (idle; busy loops capped at 0.25, 0.5 and 1.0 CPU; one with a 64 MiB limit
holding ~20 MiB), then, ``--rounds`` times: `docker stats --no-stream` (its own ~2 s sample) beside two
collector polls bracketing it, and prints per container the collector's CPU % and memory next to docker's,
with the differences. Then the cost of one poll (wall time per poll over N polls, with --containers idle
containers more) and the ratio to one `docker ps -a` call in the same run. Informational: no assertions.

    python bench/containers_vs_docker.py               # 3 rounds
    python bench/containers_vs_docker.py --quick       # 1 round, CI smoke
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clustertop.collectors.base import Context  # noqa: E402
from clustertop.collectors.containers import ContainersCollector  # noqa: E402
from tests.support.dockerd import Dockerd, available  # noqa: E402

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "kB": 1000, "MB": 10**6, "GB": 10**9}


def _bytes(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)\s*([A-Za-z]+)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--containers", type=int, default=20, help="idle containers added for the cost figure")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.containers = 1, 5
    why = available()
    if why:
        print(f"skipped: {why}")
        return 0
    d = Dockerd().start()
    try:
        d.run("idle", "sleep", "100000", extra=("--memory", "64m"))
        for cpus in ("0.25", "0.5", "1.0"):
            d.run(f"busy{cpus}", "sh", "-c", "while :; do :; done", extra=("--cpus", cpus))
        # ~20 MiB held in a tmpfs file (counted as the container's memory: shmem, not reclaimable cache)
        d.run("mem20", "sh", "-c", "dd if=/dev/zero of=/dev/shm/x bs=1M count=20 2>/dev/null; sleep 100000",
              extra=("--memory", "64m", "--shm-size", "32m"))
        col = ContainersCollector(Context(node="bench", config={"socket": d.url}))
        col.collect()
        time.sleep(1.0)
        print(f"{'container':<10} {'cpu% ours':>9} {'docker':>7} {'diff':>6}   {'mem ours':>10} {'docker':>10} {'diff':>9}")
        for r in range(a.rounds):
            before = {c.name: c for c in col.collect().containers or []}
            ref = {json.loads(x)["Name"]: json.loads(x) for x in d.docker("stats", "--no-stream", "--format",
                                                                            "{{json .}}").splitlines()}
            after = {c.name: c for c in col.collect().containers or []}
            print(f"round {r + 1}")
            for name in sorted(ref):
                ours = [c for c in (before.get(name), after.get(name)) if c is not None and c.cpu_pct is not None]
                cpu = sum(c.cpu_pct or 0 for c in ours) / len(ours) if ours else float("nan")
                mem = after[name].mem_bytes if name in after and after[name].mem_bytes is not None else float("nan")
                dcpu = float(ref[name]["CPUPerc"].rstrip("%"))
                dmem = _bytes(ref[name]["MemUsage"].split("/")[0])
                print(f"{name:<10} {cpu:>9.1f} {dcpu:>7.1f} {cpu - dcpu:>+6.1f}   {mem / 2**20:>8.2f}Mi {dmem / 2**20:>8.2f}Mi "
                      f"{(mem - dmem) / 2**10:>+7.0f}Ki")
        for name in [n for n in ref if n.startswith("busy")]:
            d.docker("rm", "-f", name)
        for i in range(a.containers):
            d.run(f"extra{i}", "sleep", "100000")
        n_polls = 10
        col.collect()
        t0 = time.perf_counter()
        for _ in range(n_polls):
            got = col.collect()
        poll = (time.perf_counter() - t0) / n_polls
        t0 = time.perf_counter()
        for _ in range(n_polls):
            d.docker("ps", "-a")
        ps = (time.perf_counter() - t0) / n_polls
        n = len(got.containers or [])
        print(f"one poll of {n} running containers: {poll * 1000:.1f} ms ({poll * 1000 / max(n, 1):.2f} ms per container); "
              f"one `docker ps -a` (CLI process) in the same run: {ps * 1000:.1f} ms; ratio {poll / ps:.2f}")
    finally:
        d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
