"""Scale figures at 10,000 nodes x 8 GPUs (issue 18): Redis's CPU per 1,000 agents publishing at 1 Hz, on one
Redis and on a 3-master/3-replica Redis Cluster, and the reader's read of 10,000 nodes from the cluster.

**Ingest.** Each simulated agent has its own connection(s) and sends, once a second, exactly what the agent's
publisher writes in a tick: the commands come from the real ``agents.publisher.Publisher`` recorded into
redis-py pipelines (payloads of real simulated 8-GPU nodes: full snapshot at its cadence, brief, digest,
seal, the history point every 5 s, the node index), packed once. On one Redis a tick is one MULTI; on the
cluster the node's MULTI goes to its slot's master and the index ZADD to the index's master, as the agent's
client splits it (``store/slots.py``). So Redis sees one client per agent, not a batching simulator. Redis CPU
is redis-server's own (utime+stime of /proc/<pid>/stat) over a steady window, masters and replicas apart; the
publishes are the ones the driver completed in that window (the rate achieved is printed: on a loaded 2-core
machine the driver may not reach 1 Hz for every agent; the per-publish cost is what is extrapolated, linearly,
to "agents one core holds at 50 %"; that extrapolation is printed as such). Templates: ``--templates`` nodes
x ``TICKS`` ticks of payloads, agent i sends template i's bytes under its own host's keys (Redis does not
look inside a payload; its keys, sizes and commands are the agent's).

**Read.** ``--nodes`` simulated nodes published once into the cluster (long TTL), then ``Reader.read`` at the
digest level (the overview, the nodes table) and at the GPU level (the GPU table: digests + the briefs' GPUs),
with the reader's per-shard fetch (``read/shards.py``) and, as the same-run baseline, redis-py's cluster
pipeline (``Reader(shard_fetch=False)``), interleaved. fetch_ms / decode_ms as ``ClusterState`` reports them,
p50/p95; the garbage collector as the dashboard runs it (``dashboard.gcpolicy``: collections between reads).

    python bench/scale_10k.py                      # ingest at 1,000, 3,000, 10,000 agents; read at 10,000 nodes
    python bench/scale_10k.py --quick              # CI smoke: 300 agents, 1,000 nodes, short windows
    python bench/scale_10k.py --no-ingest --reads 30
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from redis.connection import Connection  # noqa: E402
from redis.crc import key_slot  # noqa: E402

from clustertop import store, wire  # noqa: E402
from clustertop.agents import publisher as publisher_mod  # noqa: E402
from clustertop.control import signing, trust  # noqa: E402
from clustertop.control.summary import seal  # noqa: E402
from clustertop.dashboard import gcpolicy  # noqa: E402
from clustertop.read.cluster import by_bucket  # noqa: E402
from clustertop.read.plan import Level, ReadPlan  # noqa: E402
from clustertop.read.reader import Reader  # noqa: E402
from clustertop.read.summary import fold  # noqa: E402
from clustertop.sim.simulate import SimCluster, make_publishers, publish  # noqa: E402
from clustertop.wire.summary import summary_key  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402
from tests.support.redis_ha import RedisCluster  # noqa: E402

TICKS = 5  # per template: the history point is written every 5th tick
ALL_TOWERS = 51  # SimCluster: above 50 nodes every node is an 8-GPU tower
CLK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


# -- ingest -------------------------------------------------------------------------------------------------


def templates(n: int) -> list[tuple[str, list[tuple[list[Any], list[Any]]]]]:
    """n template nodes, each TICKS ticks of (the node's MULTI commands, the commands beside it), recorded from
    the real Publisher (with a node key: seals, as a real agent writes them)."""
    sim = SimCluster(seed=7, nodes=max(n, ALL_TOWERS), gpus_per_node=8, keys=True)
    sim.interval_s = 1.0
    extra = {"full_every_s": publisher_mod.FULL_EVERY_S} if hasattr(publisher_mod, "FULL_EVERY_S") else {}
    rec = redis.Redis()  # never connected: its pipelines only record
    pubs = {h: publisher_mod.Publisher(rec, h, 1.0, key=sim.keys[h], tiers=False, **extra) for h in sim.hosts[:n]}
    out: dict[str, list[tuple[list[Any], list[Any]]]] = {h: [] for h in pubs}
    t0 = time.time()
    for k in range(TICKS):
        ticks, _ = sim.step(t0 + k)
        for snap, hist in ticks:
            pub = pubs.get(snap.host)
            if pub is None:
                continue
            p, s = rec.pipeline(transaction=True), rec.pipeline(transaction=False)
            pub.publish(snap, hist, pipe=p, shared=s)
            out[snap.host].append(([a for a, _ in p.command_stack], [a for a, _ in s.command_stack]))
    return list(out.items())



def _rename(args: list[Any], old: str, new: str) -> list[Any]:
    tag_old, tag_new = "{" + old + "}", "{" + new + "}"
    out = []
    for a in args:
        if isinstance(a, str):
            a = new if a == old else a.replace(tag_old, tag_new)
        out.append(a)
    return out


class Agents:
    """``count`` agent connections sending their tick's bytes; one Redis (``single``) or a cluster."""

    def __init__(self, count: int, tmpl: list[Any], addr_of_slot: Any, single: bool) -> None:
        packer = Connection()
        self.socks: dict[tuple[str, int], socket.socket] = {}
        self.agents: list[list[tuple[socket.socket, bytes]]] = []  # per agent: per tick, one write per socket
        self.bytes_per_tick = 0
        width = len(str(count))
        for i in range(count):
            host = f"ag{i:0{width}d}"
            thost, ticks = tmpl[i % len(tmpl)]
            per_tick: list[list[tuple[Any, bytes]]] = []
            conns: dict[tuple[str, int], socket.socket] = {}
            for node_cmds, side in ticks:
                node_cmds = [_rename(c, thost, host) for c in node_cmds]
                side = [_rename(c, thost, host) for c in side]
                if single:
                    groups = {None: [["MULTI"], *node_cmds, *side, ["EXEC"]]}
                else:
                    groups = {addr_of_slot(key_slot(wire.digest_key(host).encode())): [["MULTI"], *node_cmds, ["EXEC"]]}
                    for c in side:
                        groups.setdefault(addr_of_slot(key_slot(str(c[1]).encode())), []).append(c)
                writes = []
                for addr, cmds in groups.items():
                    sock = conns.get(addr)
                    if sock is None:
                        sock = conns[addr] = socket.create_connection(addr if addr else self.single_addr, timeout=10)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sock.settimeout(None)  # blocking: sendall waits, recv(MSG_DONTWAIT) says "nothing yet"
                    writes.append((sock, b"".join(packer.pack_commands(cmds))))
                per_tick.append(writes)
            self.agents.append(per_tick)  # type: ignore[arg-type]
            self.socks.update({(host, j): s for j, s in enumerate(conns.values())})
        self.bytes_per_tick = sum(len(b) for a in self.agents for w in a for _, b in w) // max(1, TICKS * count)

    single_addr: tuple[str, int] = ("127.0.0.1", 0)

    def drain(self) -> None:
        for s in self.socks.values():
            try:
                while s.recv(65536, socket.MSG_DONTWAIT):
                    pass
            except BlockingIOError:
                pass

    def run(self, seconds: float) -> int:
        """Ticks at 1 Hz (each agent once a second, all in one burst) for ``seconds``; returns publishes sent."""
        sent = 0
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < seconds:
            tick_start = time.monotonic()
            for per_tick in self.agents:
                for sock, data in per_tick[k % TICKS]:
                    sock.sendall(data)
                sent += 1
            self.drain()
            k += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick_start)))
        self.drain()
        return sent

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


def ingest(name: str, counts: list[int], tmpl: list[Any], url: str, pids: dict[str, list[int]], window: float,
           single_addr: tuple[str, int] | None, flush: Any) -> None:
    client = store.connect(url, timeout_s=30)
    cluster = None if single_addr else client.resolve()

    def addr_of_slot(slot: int) -> tuple[str, int]:
        node = cluster.nodes_manager.slots_cache[slot][0]
        return (node.host, node.port)

    for count in counts:
        Agents.single_addr = single_addr or ("", 0)
        agents = Agents(count, tmpl, addr_of_slot, single_addr is not None)
        try:
            agents.run(2.0)  # warm-up: every key exists, Redis's dicts grown
            before = {p: cpu_s(p) for ps in pids.values() for p in ps}
            t0 = time.monotonic()
            sent = agents.run(window)
            wall = time.monotonic() - t0
            used = {p: cpu_s(p) - c for p, c in before.items()}
        finally:
            agents.close()
        rate = sent / wall
        load = os.getloadavg()[0]
        for role, ps in pids.items():
            core = sum(used[p] for p in ps) / wall  # cores busy, this role's servers together
            hottest = max(used[p] for p in ps) / wall
            per_k = core / (rate / 1000) if rate else float("nan")  # cores per 1,000 publishes/s
            us = core * wall / sent * 1e6 if sent else float("nan")
            hold = 0.5 * rate / hottest if hottest else float("inf")  # linear: the hottest server at half a core
            print(f"{name:11} {role:8} {count:7,} {rate:9,.0f} {rate / count:6.2f} {agents.bytes_per_tick:7,} "
                  f"{100 * core:7.1f} {100 * hottest:7.1f} {100 * per_k:9.2f} {us:8.1f} {hold:10,.0f} {load:5.1f}")
        flush()


# -- read ---------------------------------------------------------------------------------------------------


def read_bench(url: str, nodes: int, reads: int) -> None:
    client = store.connect(url, timeout_s=60)
    sim = SimCluster(seed=1, nodes=nodes, gpus_per_node=8)
    t = time.perf_counter()
    publish(client, sim, time.time(), make_publishers(sim, client, 3600.0))  # long TTL: nothing expires mid-run
    print(f"published {nodes:,} nodes x 8 GPUs into the cluster in {time.perf_counter() - t:.1f} s "
          f"(not timed below)")
    del sim
    gcpolicy.tune()
    print(f"{'level':8} {'fetch by':22} {'fetch p50':>9} {'p95':>6} {'decode p50':>10} {'p95':>6} "
          f"{'read p50':>8} {'p95':>6} {'cpu ms':>7} {'ratio':>6}  (ms; ratio: read p50 vs redis-py's pipeline)")
    for level in (Level.DIGESTS, Level.GPUS):
        readers = {"redis-py cluster pipe": Reader(client, shard_fetch=False), "per-shard (shards.py)": Reader(client)}
        figures: dict[str, dict[str, list[float]]] = {k: {"f": [], "d": [], "c": []} for k in readers}
        for r in readers.values():  # first read: every node new to the index
            r.read(ReadPlan(level))
            r.read(ReadPlan(level))
        for _ in range(reads):
            for name, r in readers.items():
                gcpolicy.collect_if_due()
                c0 = time.process_time()
                st = r.read(ReadPlan(level))
                figures[name]["c"].append((time.process_time() - c0) * 1000)
                figures[name]["f"].append(st.fetch_ms)
                figures[name]["d"].append(st.decode_ms)
                assert sum(v.state == "up" for v in st.nodes) == nodes, "a node not up: the bench is wrong"
                del st
        base = None
        for name, fig in figures.items():
            total = [a + b for a, b in zip(fig["f"], fig["d"], strict=True)]
            p50 = statistics.median(total)
            base = base or p50
            fell = readers[name].shard_fetch.fell_back if readers[name].shard_fetch else "-"
            print(f"{level.name:8} {name:22} {statistics.median(fig['f']):9.1f} {pct(fig['f'], 0.95):6.1f} "
                  f"{statistics.median(fig['d']):10.1f} {pct(fig['d'], 0.95):6.1f} {p50:8.1f} {pct(total, 0.95):6.1f} "
                  f"{statistics.median(fig['c']):7.1f} {p50 / base:6.2f}" + (f"  fell back: {fell}" if fell not in (None, "-") else ""))
    gcpolicy.untune((700, 10, 10))
    gc.collect()


#: The summary node of the summaries modes: the app's one enrolled folder (as ``dashboard_refresh.SUMMARY_FOLDER``).
SUMMARY_FOLDER = "head01"


class ReplayFeed:
    """For the app: two ticks of every node's payloads, published once through the simulator, then written
    back in turn before each refresh (not timed), so every refresh reads a cluster that changed. A simulator
    tick of 10,000 nodes takes ~10 s on this machine; a replayed one ~1 s."""

    def __init__(self, client: Any, nodes: int) -> None:
        sim = SimCluster(seed=1, nodes=nodes, gpus_per_node=8)
        pubs = make_publishers(sim, client, 3600.0)
        self.client, self.digests, self.k = client, True, 0
        self._hosts = list(sim.hosts)
        self.ticks: list[list[tuple[str, bytes]]] = []
        # The bucket summaries of each tick too, folded from a read of the briefs' GPUs (every card's figures in the
        # columns, as a summary node with ``gpu_columns`` folds) and sealed by the app's one enrolled folder; written
        # back with their tick only while ``summaries`` (``dashboard_refresh.set_reads``: the overview's and the GPU
        # table's summary modes). The overview opens them without their columns.
        self.summaries = self.columns = False
        key = signing.new_key()
        self.known = trust.KnownNodes(keys={SUMMARY_FOLDER: key.public()})
        self.summary_ticks: list[list[tuple[str, bytes]]] = []
        reader = Reader(client)
        for k in range(2):
            publish(client, sim, time.time() + k, pubs)
            keys = [f(h) for h in self._hosts for f in (wire.node_key, wire.brief_key, wire.digest_key)]
            self.ticks.append([(key, v) for key, v in zip(keys, client.mget_nonatomic(keys), strict=True)
                               if v is not None])
            st = reader.read(ReadPlan(Level.GPUS))
            now = time.time()
            self.summary_ticks.append([
                (summary_key(b), seal(fold(group, b, SUMMARY_FOLDER, now, seq=k + 1, interval_s=600.0), key))
                for b, group in enumerate(by_bucket(st.nodes)) if group])

    def hosts(self) -> list[str]:
        return list(self._hosts)

    def tick(self) -> None:
        self.k ^= 1
        p = self.client.pipeline(transaction=False)
        for key, v in self.ticks[self.k] + (self.summary_ticks[self.k] if self.summaries else []):
            p.set(key, v, px=3_600_000)
        p.execute()


def app_bench(url: str, nodes: int, refreshes: int, screens: list[str], cpu_seconds: float) -> None:
    """The dashboard itself on the cluster, through ``bench/dashboard_refresh.py``'s measurement (``shown``:
    from asking for a refresh until its last repaint is written out), its Redis client swapped for
    ``store.connect`` (a cluster client; that bench's own feed speaks to one Redis)."""
    import asyncio
    from types import SimpleNamespace

    import dashboard_refresh as dr  # bench/, beside this file

    dr.redis = SimpleNamespace(Redis=SimpleNamespace(from_url=lambda u: store.connect(u, timeout_s=60)))
    client = store.connect(url, timeout_s=60)
    t = time.perf_counter()
    feed = ReplayFeed(client, nodes)
    print(f"two ticks of {nodes:,} nodes recorded in {time.perf_counter() - t:.0f} s (not timed)")
    print(f"{'screen':9} {'reads':8} {'shown p50':>9} {'p95':>7} {'read p50':>8} {'read p95':>8} {'fold':>6} "
          f"{'paint':>6} {'cpu p50':>7}  (ms, 384x108, {refreshes} refreshes)")
    runs = [(screen, mode) for screen in screens
            for mode in ("digests", *({"overview": ("summaries",), "gpus": ("gpusummaries",)}.get(screen, ())))]
    for screen, mode in runs:  # every digest (every brief's GPUs), then the bucket summaries: the same run's baseline
        a = asyncio.run(dr.bench_app(url, feed, refreshes, (384, 108), screen, "idle", mode))
        print(f"{screen:9} {a['reads']:8} {a['p50']:9.1f} {a['p95']:7.1f} {a['read_p50']:8.1f} {a['read_p95']:8.1f} "
              f"{a['fold_span_p50']:6.1f} {a['paint_span_p50']:6.1f} {a['cpu_p50']:7.1f}  load {os.getloadavg()[0]:.1f}")
    for mode in ("digests", "summaries") if cpu_seconds else ():
        cpu = asyncio.run(dr.bench_cpu(url, feed, cpu_seconds, (384, 108), "idle", mode))
        print(f"dashboard CPU at a 1 Hz refresh on the overview ({mode}), {cpu_seconds:g} s: {cpu:.1f} % of a core "
              f"(the replaying feeder's own CPU subtracted), load {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="1000,3000,10000", help="agent counts for the ingest")
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured per ingest point")
    ap.add_argument("--templates", type=int, default=60)
    ap.add_argument("--nodes", type=int, default=10_000, help="nodes for the read")
    ap.add_argument("--reads", type=int, default=20)
    ap.add_argument("--no-ingest", action="store_true")
    ap.add_argument("--no-read", action="store_true")
    ap.add_argument("--app", default="", help="screens to measure in the dashboard on the cluster, e.g. "
                                             "overview,gpus (bench/dashboard_refresh.py's measure); default none")
    ap.add_argument("--refreshes", type=int, default=15)
    ap.add_argument("--cpu-seconds", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 300 agents, 1,000 nodes, short windows")
    a = ap.parse_args()
    if a.quick:
        a.agents, a.window, a.templates, a.nodes, a.reads = "300", 3.0, 10, 1000, 3
        a.refreshes, a.cpu_seconds = 3, 2.0
    counts = [int(x) for x in a.agents.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    cluster = RedisCluster().start()
    single = RedisServer(extra=["--maxclients", str(max(counts) + 1000)])
    try:
        for port in cluster.servers:  # every agent also talks to the index's master
            redis.Redis(port=port).config_set("maxclients", max(counts) + 1000)
        if not a.no_ingest:
            tmpl = templates(a.templates)
            print(f"\ningest: agents at 1 Hz, {a.window:g} s measured per point (after 2 s of warm-up)")
            print(f"{'deployment':11} {'servers':8} {'agents':>7} {'pub/s':>9} {'Hz':>6} {'B/tick':>7} "
                  f"{'CPU %':>7} {'hot %':>7} {'%/1k ag':>9} {'µs/pub':>8} {'@50% hot':>10} {'load':>5}")
            masters = [p for p in cluster.servers if cluster.role(p) == "master"]
            replicas = [p for p in cluster.servers if p not in masters]
            ingest("one Redis", counts, tmpl, single.url, {"server": [single.proc.pid]}, a.window,
                   ("127.0.0.1", single.port), lambda: redis.Redis(port=single.port).flushall())
            ingest("cluster", counts, tmpl, cluster.url,
                   {"masters": [cluster.servers[p].proc.pid for p in masters],
                    "replicas": [cluster.servers[p].proc.pid for p in replicas]}, a.window, None,
                   lambda: [redis.Redis(port=p).flushall() for p in cluster.servers if cluster.role(p) == "master"])
            print("CPU %: redis-server CPU over the window (100 = one core; the cluster's 3 masters, or its 3 "
                  "replicas, summed); hot %: the busiest one of them; %/1k ag: CPU % per 1,000 publishes/s; "
                  "µs/pub: CPU per publish; @50% hot: agents at 1 Hz at which the busiest server would reach half "
                  "a core (linear extrapolation from the rate measured, not a measurement at that rate)")
        if not a.no_read:
            print(f"\nread: {a.nodes:,} nodes x 8 GPUs on the 3-master cluster, {a.reads} reads per reader and level")
            read_bench(cluster.url, a.nodes, a.reads)
        if a.app:
            for port in cluster.servers:
                if cluster.role(port) == "master":
                    redis.Redis(port=port).flushall()
            print(f"\ndashboard on the cluster: {a.nodes:,} nodes x 8 GPUs")
            app_bench(cluster.url, a.nodes, a.refreshes, a.app.split(","), a.cpu_seconds)
    finally:
        cluster.stop()
        single.stop()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
