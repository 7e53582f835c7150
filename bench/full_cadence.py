"""Benchmark: bytes per node per second into Redis with the full snapshot's cadence (issue 18, the byte budget).

Each simulated node (the simulator's model: an 8-GPU tower, an ARM board) publishes through the agent's real
``Publisher`` exactly as an agent does: one MULTI per tick with its full snapshot (when due), brief, digest,
signed seal and want probe, the index ZADD, a history point every 5 s, its history tiers. Ticks are 1 s of
snapshot time, sent back to back (the cadence counts snapshot time, so no sleeping is needed). The figure is
Redis's own ``INFO stats total_net_input_bytes`` over the measured ticks, divided by nodes and seconds: every
byte that reached the server, RESP framing, key names, MULTI/EXEC and all.

Scenarios, per node kind:
- ``every tick``: ``full_every = 0``, the full snapshot every tick (before this change; payloads packed as today);
- ``nobody looking``: the default cadence (``FULL_EVERY_S``), no want key;
- ``node screen``: one node of the run wanted (a dashboard on its screen: ``read.want.Wants`` writes its key
  as the dashboard does, at most every ``REFRESH_FRACTION`` of its PX); the figure is for THAT node, which
  writes in full every ``FULL_EVERY_WANTED_S`` (the agents' default ``[agent] full_every_wanted``);
- ``node screen 1 s``: the same with ``full_every_wanted = 0`` (every tick while wanted: before that setting);
- ``ALL_FULL reader``: every node wanted (before issue 18's ``Level.DETAIL``: the storage, network and people
  screens, ``clustertop snapshot``/``who``; today ``snapshot``/``who --fresh-detail``): the figure per node.
- ``detail reader``: a reader of every node's detail as those screens and commands read it now
  (``Level.DETAIL``: the full snapshots as stored, fetched only when changed, no want), reading every tick;
  its own read (MGET commands) is the reader's bytes.
- ``exporter``: the Prometheus exporter as it runs by default (``clustertop.export.Exporter``, scraped every
  ``SCRAPE_S`` of snapshot time): it reads every node in full, brief and digest beside, and wants nothing;
- ``exporter fresh``: the same with ``--fresh-detail`` (it wants every node: full snapshots every tick).
The reader's own bytes into Redis are counted apart (``reader B/node/s``): its SETs of want keys, and for the
exporter rows its whole read (MGETs included); they are bytes into Redis too, but not the node's.

Every figure is printed with the machine's load (``uptime``); ratios are against the ``every tick`` row of the
same run. ``--quick``: fewer ticks (CI smoke).

    python bench/full_cadence.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from benchlib.redis_server import start_redis  # noqa: E402  (bench/benchlib/)

from clustertop.agents.publisher import FULL_EVERY_S, FULL_EVERY_WANTED_S, Publisher, hist_point  # noqa: E402
from clustertop.export.exporter import Exporter  # noqa: E402
from clustertop.read.plan import Level, ReadPlan  # noqa: E402
from clustertop.read.reader import Reader  # noqa: E402
from clustertop.read.want import Wants  # noqa: E402
from clustertop.sim.simulate import SimCluster  # noqa: E402
from clustertop.store.resp import Client  # noqa: E402

T0 = 1_900_000_000.0
#: Prometheus's default scrape interval.
SCRAPE_S = 15


def input_bytes(r: redis.Redis) -> int:
    return int(r.info("stats")["total_net_input_bytes"])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def run(url: str, kind: str, scenario: str, warm: int, ticks: int, nodes: int = 4) -> tuple[float, float, float]:
    """(bytes/node/s of the measured nodes, of the reader's want writes per wanted node, full snapshots/node/s)."""
    r = redis.Redis.from_url(url)
    r.flushall()
    # The simulator's 1:2 tower:board mix: 3 x nodes of them hold ``nodes`` towers and more boards.
    sim = SimCluster(seed=7, nodes=nodes * 3, gpus_per_node=8, keys=True)  # every node seals, as agents do
    hosts = (sim.tower_hosts if kind == "tower" else sim.arm_hosts)[:nodes]
    assert len(hosts) == nodes
    every = 0.0 if scenario == "every tick" else FULL_EVERY_S
    # One client per node, as agents each hold their own connection; the agent's own RESP client.
    wanted_every = 0.0 if scenario == "node screen 1 s" else FULL_EVERY_WANTED_S
    pubs = {h: Publisher(Client.from_url(url), h, 1.0, key=sim.keys.get(h), full_every_s=every,
                         wanted_every_s=wanted_every) for h in hosts}
    wanted = {"node screen": hosts[:1], "node screen 1 s": hosts[:1], "ALL_FULL reader": hosts}.get(scenario, [])
    measured = wanted if scenario.startswith("node screen") else hosts
    clock = [0.0]
    wants = Wants(clock=lambda: clock[0])
    reader = redis.Redis.from_url(url)
    exporter = None
    detail = Reader(reader, clock=lambda: T0 + clock[0], wants=Wants(clock=lambda: clock[0])) \
        if scenario == "detail reader" else None
    if detail is not None:
        wanted = hosts  # the reader's bytes are per node read
    if scenario.startswith("exporter"):
        # Its reader's clock is the snapshot time (node ages); its wants' clock is the wall's, as in a real
        # exporter: a want lasts WANT_MAX_MS of Redis's time, longer than this whole run.
        exporter = Exporter(reader, cache_s=0, clock=lambda: T0 + clock[0], fresh_detail=scenario == "exporter fresh")
        wanted = hosts

    def tick(k: int) -> tuple[int, int]:
        """(bytes the measured nodes sent, bytes the reader's wants sent) in tick ``k``."""
        now = T0 + k
        clock[0] = float(k)
        snaps = {s.host: s for s, _ in sim.step(now)[0]}
        node_b = want_b = 0
        for h in hosts:
            before = input_bytes(r)
            pubs[h].publish(snaps[h], hist_point(snaps[h]))
            if h in measured:
                node_b += input_bytes(r) - before - INFO_OVERHEAD
        if exporter is not None:
            if k % SCRAPE_S == 0:
                before = input_bytes(r)
                exporter.scrape()
                want_b = input_bytes(r) - before - INFO_OVERHEAD
        elif detail is not None:
            before = input_bytes(r)
            detail.read(ReadPlan(Level.DETAIL))
            want_b = input_bytes(r) - before - INFO_OVERHEAD
            assert detail.wants is not None and detail.wants.writes == 0
        elif wanted:
            before = input_bytes(r)
            wants.send(reader, wanted)
            want_b = input_bytes(r) - before - INFO_OVERHEAD
        return node_b, want_b

    for k in range(warm):
        tick(k)
    fulls0 = sum(pubs[h].fulls for h in measured)
    node_total = want_total = 0
    for k in range(warm, warm + ticks):
        nb, wb = tick(k)
        node_total += nb
        want_total += wb
    fulls = sum(pubs[h].fulls for h in measured) - fulls0
    n = len(measured)
    return node_total / n / ticks, want_total / max(1, len(wanted)) / ticks, fulls / n / ticks


#: ``INFO stats`` itself is input bytes (the command the measuring client sends): measured once, subtracted.
INFO_OVERHEAD = 0


def main() -> int:
    global INFO_OVERHEAD
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer ticks (CI smoke)")
    args = ap.parse_args()
    warm, ticks = (16, 30) if args.quick else (31, 120)  # ticks: a multiple of 15 s (the cadence) and 5 s (history)
    proc, url, d = start_redis()
    try:
        r = redis.Redis.from_url(url)
        a = input_bytes(r)
        b = input_bytes(r)
        INFO_OVERHEAD = b - a
        print(f"bytes into Redis per node per second, {ticks} ticks of 1 s after {warm} of warm-up; "
              f"full_every = {FULL_EVERY_S:g} s, full_every_wanted = {FULL_EVERY_WANTED_S:g} s; {load()}")
        print(f"{'node':<12}{'scenario':<18}{'bytes/node/s':>14}{'vs every tick':>15}{'fulls/s':>9}"
              f"{'reader B/node/s':>22}")
        for kind in ("tower", "arm"):
            base = None
            for scenario in ("every tick", "nobody looking", "node screen", "node screen 1 s", "ALL_FULL reader",
                             "detail reader",
                             "exporter", "exporter fresh"):
                per_s, want_s, fulls = run(url, kind, scenario, warm, ticks)
                base = per_s if base is None else base
                label = "8-GPU tower" if kind == "tower" else "ARM board"
                print(f"{label:<12}{scenario:<18}{per_s:>14.0f}{per_s / base:>14.2f}x{fulls:>9.2f}{want_s:>22.1f}",
                      flush=True)
        print(load())
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
