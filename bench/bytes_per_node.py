"""Benchmark: bytes per node per second into Redis, against issue 18's budget of 3 KB (3,000 bytes).

A redis-server this script starts; a simulated cluster (8-GPU towers and ARM boards, every node signing
its ticks as a real agent does) driven through the real publishing path (``clustertop.sim.simulate.publish``:
the real ``Publisher`` per node, history every 5 s into the stream and the 1-minute/10-minute tiers,
energy ledgers every 15 s, the lease holders' cluster payloads) at the default interval of 1 s, for
``--seconds`` of simulated time (the simulator steps its clock; Redis counts bytes, not time).

Bytes are measured twice: by Redis itself (``INFO stats`` ``total_net_input_bytes`` before and after,
which counts every byte it read: protocol framing, key names, MULTI/EXEC, the seal, the node index) and by
parsing every command the client sent on its socket (a redis-py Connection that keeps what it sends), so
the total can be broken down per key kind and per node shape; the two totals are printed side by side.
Per node and second = a kind's bytes / (nodes of that shape x seconds); the cluster payloads (Ceph, queues,
Kubernetes), written once per cluster by the lease holders, are printed apart: they do not grow with nodes.

Three runs in one: ``plain`` (payloads as agents before packing wrote them: msgpack, no deflate; the
same-run baseline), ``packed, full every tick`` (clustertop/wire/compress.py) and, where the publisher
has a full-snapshot cadence (``Publisher(full_every_s=...)``), ``packed, default cadence`` (nobody
watching any node). Then, with ``--agent`` (default on), the real agent on this machine
(``clustertop agent``, its own RESP client, every collector this machine has) against the same Redis for
``--agent-seconds``: Redis's count only.

    python bench/bytes_per_node.py                 # 30 nodes (10 towers, 20 boards), 120 s, agent 20 s
    python bench/bytes_per_node.py --quick         # CI smoke: 30 s simulated, agent 8 s
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from benchlib import stop  # noqa: E402  (bench/benchlib/)
from benchlib.redis_server import start_redis  # noqa: E402

from clustertop import wire  # noqa: E402
from clustertop.agents import publisher as publisher_mod  # noqa: E402
from clustertop.sim import simulate  # noqa: E402
from clustertop.sim.simulate import SimCluster  # noqa: E402

BUDGET = 3000  # bytes per node per second (issue 18: "3 KB")
T0 = 1_800_000_000.0


class Recorded(redis.Connection):
    """A connection that keeps every command it sends (bytes on the wire, by command and key)."""

    sent: list[bytes] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, (bytes, bytearray, memoryview)) else command
        Recorded.sent.append(b"".join(bytes(c) for c in chunks))
        super().send_packed_command(command, check_health)


def commands(blob: bytes) -> list[tuple[list[bytes], int]]:
    """RESP arrays of bulk strings (what redis-py sends) -> [(args, bytes on the wire)]."""
    out = []
    i = 0
    while i < len(blob):
        if blob[i:i + 1] != b"*":
            raise ValueError(f"not a RESP array at {i}")
        j = blob.index(b"\r\n", i)
        n = int(blob[i + 1:j])
        start, i = i, j + 2
        args = []
        for _ in range(n):
            j = blob.index(b"\r\n", i)
            ln = int(blob[i + 1:j])
            args.append(blob[j + 2:j + 2 + ln])
            i = j + 2 + ln + 2
        out.append((args, i - start))
    return out


def kind_of(args: list[bytes]) -> tuple[str, str | None]:
    """(what the command writes or asks, the host whose key it is, if any)."""
    name = args[0].upper().decode()
    if name in ("MULTI", "EXEC"):
        return "MULTI/EXEC", None
    if len(args) < 2:
        return name, None
    key = args[1].decode("utf-8", "replace")
    if key == wire.NODES_KEY:
        return "node index (ZADD)", _host(args[2 + _zadd_opts(args)]) if name == "ZADD" else None
    host = key[key.index("{") + 1:key.index("}")] if "{" in key and "}" in key else None
    if host == "cluster":
        return "cluster payloads", None
    if key.startswith(f"{wire.PREFIX}:summary:"):  # the simulator writes them as a summary node would
        return "bucket summaries (summary nodes)", None
    for label, fn in (("full snapshot", wire.node_key), ("brief", wire.brief_key), ("digest", wire.digest_key),
                      ("seal", wire.seal_key), ("node key (every 60 s)", wire.nodekey_key),
                      ("history point (every 5 s)", wire.hist_key), ("energy ledger (every 15 s)", wire.energy_key)):
        if host is not None and key == fn(host):
            return label, host
    if host is not None and key.startswith(wire.hist_key(host) + ":"):
        return "history tiers (GET/SET blocks)", host
    want = getattr(wire, "want_key", None)
    if want is not None and host is not None and key == want(host):
        return "want probe (PTTL)", host
    return f"other ({name})", host


def _zadd_opts(args: list[bytes]) -> int:
    n = 0
    while 2 + n < len(args) and args[2 + n].upper() in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"):
        n += 1
    return n


def _host(member: bytes) -> str:
    return member.decode("utf-8", "replace")


def input_bytes(client: redis.Redis) -> int:
    return int(client.info("stats")["total_net_input_bytes"])


def publishers(sim: SimCluster, client: redis.Redis, cadence: bool) -> dict[str, publisher_mod.Publisher]:
    kw: dict[str, Any] = {}
    params = inspect.signature(publisher_mod.Publisher).parameters
    if "full_every_s" in params:  # the full-snapshot cadence (task M), where it exists
        kw["full_every_s"] = getattr(publisher_mod, "FULL_EVERY_S", 0.0) if cadence else 0.0
    return {h: publisher_mod.Publisher(client, h, 1.0, hist_every_s=5.0, key=sim.keys.get(h), tiers=True, **kw)
            for h in sim.own_hosts}


def run(url: str, nodes: int, gpus: int, seconds: int, cadence: bool) -> tuple[int, Counter[tuple[str, str]], dict[str, int]]:
    """One simulated run into a flushed Redis: (Redis's count, bytes by (kind, shape), nodes by shape)."""
    admin = redis.Redis.from_url(url)
    admin.flushall()
    pool = redis.ConnectionPool.from_url(url, connection_class=Recorded)
    client = redis.Redis(connection_pool=pool)
    sim = SimCluster(seed=5, nodes=nodes, gpus_per_node=gpus, keys=True)
    sim.interval_s = 1.0
    pubs = publishers(sim, client, cadence)
    shape = {h: ("8-GPU tower" if h in sim.tower_hosts else "ARM board") for h in sim.hosts}
    simulate.publish(client, sim, T0 - 1, pubs)  # first tick: tier writers read their streams, keys announced
    Recorded.sent = []
    before = input_bytes(admin)
    for i in range(seconds):
        simulate.publish(client, sim, T0 + i, pubs)
    counted = input_bytes(admin) - before
    by: Counter[tuple[str, str]] = Counter()
    for blob in Recorded.sent:
        for args, size in commands(blob):
            kind, host = kind_of(args)
            by[(kind, shape.get(host or "", "all nodes"))] += size
    client.close()
    admin.close()
    return counted, by, dict(Counter(shape.values()))


def report(title: str, counted: int, by: Counter[tuple[str, str]], shapes: dict[str, int], seconds: int) -> dict[str, float]:
    """Per shape, each kind's bytes per node per second and their total; the cluster payloads apart (written
    by the lease holders once for the whole cluster, whatever its size)."""
    total_nodes = sum(shapes.values())
    parsed = sum(by.values())
    print(f"\n== {title}: {total_nodes} nodes ({', '.join(f'{n} {s}s' for s, n in shapes.items())}), "
          f"{seconds} s at 1 s ==")
    print(f"Redis counted {counted:,} bytes in (total_net_input_bytes); parsed from the client's socket "
          f"{parsed:,} ({parsed / counted:.3f} of it)" if counted else "Redis counted nothing")
    cluster = sum(v for (k, _), v in by.items() if k == "cluster payloads") / seconds
    shared = {k: v for (k, s), v in by.items() if s == "all nodes" and k != "cluster payloads"}
    out = {}
    for s, n in shapes.items():
        rows = sorted(((k, v / seconds / n) for (k, sh), v in by.items() if sh == s), key=lambda r: -r[1])
        rows += [(k + " (spread)", v / seconds / total_nodes) for k, v in shared.items()]
        total = sum(v for _, v in rows)
        out[s] = total
        print(f"  {s} (bytes per node per second)")
        for k, v in rows:
            print(f"    {k:34s} {v:8.0f}")
        print(f"    {'total':34s} {total:8.0f}   {total / BUDGET:.2f}x the budget of {BUDGET}")
    print(f"  cluster payloads (Ceph, queues, Kubernetes: the lease holders, once per cluster): {cluster:,.0f} B/s "
          f"in all ({cluster / total_nodes:,.0f} per node here; {cluster / 1000:,.1f} per node at 1,000 nodes)")
    return out


def agent_run(url: str, seconds: float) -> tuple[float, float] | None:
    """The real agent on this machine: (bytes per second into Redis, its measuring window), Redis's count."""
    admin = redis.Redis.from_url(url)
    admin.flushall()
    state = tempfile.mkdtemp(prefix="ct-bytes-agent-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "NOTIFY_SOCKET"))}
    env["STATE_DIRECTORY"] = state  # its node key is made here, not in the machine's /var/lib/clustertop
    proc = subprocess.Popen([sys.executable, "-m", "clustertop", "agent", "--redis", url, "--node", "bench",
                             "--interval", "1", "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not admin.exists(wire.digest_key("bench")):
            if time.monotonic() > deadline or proc.poll() is not None:
                return None
            time.sleep(0.2)
        time.sleep(3.0)  # past its first ticks (key announcement, tier writer start)
        b0, t0 = input_bytes(admin), time.monotonic()
        time.sleep(seconds)
        b1, t1 = input_bytes(admin), time.monotonic()
        return (b1 - b0) / (t1 - t0), t1 - t0
    finally:
        stop(proc)
        shutil.rmtree(state, ignore_errors=True)
        admin.close()


def read_cost(url: str, nodes: int, reads: int) -> None:
    """What inflating costs the reader: ``nodes`` 8-GPU towers published plain into db 1 and packed into db 2
    (same seed, same tick), then ``Reader.read`` at each level, alternating plain and packed read by read.
    Prints the decode time p50 (``ClusterState.decode_ms``: the reader's decoding, inflation included) and
    the whole read's p50, plain against packed, and the bytes the read fetched."""
    from clustertop.read.plan import ALL_FULL, Level, ReadPlan
    from clustertop.read.reader import Reader

    base = url.rsplit("/", 1)[0]
    clients = {}
    plain_pack = wire.pack
    for db, packed in ((1, False), (2, True)):
        c = redis.Redis.from_url(f"{base}/{db}")
        c.flushdb()
        sim = SimCluster(seed=1, nodes=nodes, gpus_per_node=8)
        pubs = {h: publisher_mod.Publisher(c, h, 600.0, tiers=False) for h in sim.own_hosts}  # long TTL
        wire.pack = plain_pack if packed else (lambda data, kind: data)  # type: ignore[assignment]
        try:
            simulate.publish(c, sim, T0, pubs)
        finally:
            wire.pack = plain_pack  # type: ignore[assignment]
        clients[packed] = c
    print(f"\n== read side: {nodes} 8-GPU towers, Reader.read, {reads} reads per level and form, in turn (ms: p50, "
          f"and the best read, which a busy shared machine disturbs least) ==")
    print(f"  {'level':18s} {'decode plain':>12s} {'decode packed':>13s} {'ratio':>6s} {'read plain':>10s} "
          f"{'read packed':>11s} {'ratio':>6s} {'best plain':>10s} {'best packed':>11s} {'ratio':>6s}")
    for label, plan in (("digests", ReadPlan(Level.DIGESTS)), ("briefs' GPUs", ReadPlan(Level.GPUS)),
                        ("briefs", ReadPlan(Level.BRIEFS)), ("full", ALL_FULL)):
        readers = {k: Reader(c, brief_from=0) for k, c in clients.items()}
        dec: dict[bool, list[float]] = {False: [], True: []}
        tot: dict[bool, list[float]] = {False: [], True: []}
        for r in readers.values():
            r.read()  # learns the nodes
            r.read(plan)
        for _ in range(reads):
            for k, r in readers.items():
                t0 = time.perf_counter()
                st = r.read(plan)
                tot[k].append((time.perf_counter() - t0) * 1000)
                if st.decode_ms is not None:
                    dec[k].append(st.decode_ms)
        d0, d1, t0_, t1 = (_p50(dec[False]), _p50(dec[True]), _p50(tot[False]), _p50(tot[True]))
        b0, b1 = min(tot[False]), min(tot[True])
        print(f"  {label:18s} {d0:12.1f} {d1:13.1f} {d1 / d0:6.2f} {t0_:10.1f} {t1:11.1f} {t1 / t0_:6.2f} "
              f"{b0:10.1f} {b1:11.1f} {b1 / b0:6.2f}")
    for c in clients.values():
        c.flushdb()
        c.close()
    # The same per payload, on one tower's payloads, away from the reader's other work (less noise).
    from clustertop.wire import schema
    from clustertop.wire.brief import brief
    from clustertop.wire.digest import digest

    sim = SimCluster(seed=1, nodes=3, gpus_per_node=8)
    snap = next(s for s, _ in sim.step(T0)[0] if s.gpus)
    print("  per payload, wire.decode (µs, the best of 200 rounds of 50, plain and packed in turn): plain -> packed")
    for kind, obj, typ in (("digest", digest(snap), schema.NodeDigest), ("brief", brief(snap), schema.NodeSnapshot),
                           ("full", snap, schema.NodeSnapshot)):
        plain = wire.encode(obj)
        packed = wire.pack(plain, "node" if kind == "full" else kind)
        us = [float("inf"), float("inf")]
        gc.collect()
        gc.disable()  # as the dashboard runs (dashboard.gcpolicy: collections in idle time, not mid-read)
        try:
            for _ in range(200):  # short rounds in turn: a busy moment of the machine hits both forms alike
                for i, data in enumerate((plain, packed)):
                    t0 = time.perf_counter()
                    for _ in range(50):
                        wire.decode(data, typ)
                    us[i] = min(us[i], (time.perf_counter() - t0) / 50 * 1e6)
        finally:
            gc.enable()
        print(f"    {kind:7s} {len(plain):6,} B -> {len(packed):5,} B   {us[0]:6.1f} -> {us[1]:6.1f} µs  "
              f"(+{us[1] - us[0]:.1f} µs, {us[1] / us[0]:.2f}x; at 1,000 nodes +{(us[1] - us[0]):.1f} ms per read)")


def pack_cost() -> None:
    """Packing one 8-GPU tower's payloads at deflate level 1 and at the shipped level: bytes and µs (the best
    of short rounds, the levels in turn), from primed compressors as ``wire.compress`` keeps them."""
    import zlib

    from clustertop.wire import compress
    from clustertop.wire.brief import brief
    from clustertop.wire.digest import digest

    sim = SimCluster(seed=1, nodes=3, gpus_per_node=8)
    snap = next(s for s, _ in sim.step(T0)[0] if s.gpus)
    levels = sorted({1, compress.LEVEL, 9})
    print(f"\n== packing one 8-GPU tower's payloads (bytes, µs; levels {', '.join(map(str, levels))}; shipped: "
          f"{compress.LEVEL}) ==")
    for kind, obj in (("node", snap), ("brief", brief(snap)), ("digest", digest(snap))):
        data = wire.encode(obj)
        primed = {lv: zlib.compressobj(lv, zlib.DEFLATED, -15, compress.MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY,
                                       compress.dictionary(compress.CURRENT[kind])) for lv in levels}
        best = dict.fromkeys(levels, float("inf"))
        size = dict.fromkeys(levels, 0)
        for _ in range(100):
            for lv in levels:
                t0 = time.perf_counter()
                for _ in range(10):
                    c = primed[lv].copy()
                    size[lv] = 2 + len(c.compress(data) + c.flush())
                best[lv] = min(best[lv], (time.perf_counter() - t0) / 10 * 1e6)
        print(f"  {kind:7s} {len(data):6,} B: " + ", ".join(f"level {lv} {size[lv]:,} B {best[lv]:.0f} µs" for lv in levels))


def _p50(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=30, help="simulated nodes (a third 8-GPU towers, the rest ARM boards)")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=120, help="simulated seconds per run")
    ap.add_argument("--agent-seconds", type=float, default=20.0)
    ap.add_argument("--no-agent", action="store_true", help="skip the real agent's run")
    ap.add_argument("--read-nodes", type=int, default=1000, help="8-GPU towers for the read-side cost (0: skip)")
    ap.add_argument("--reads", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="CI smoke: 30 simulated seconds, the agent 8 s")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.agent_seconds, args.read_nodes, args.reads = 30, 8.0, 100, 5
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"({os.cpu_count()} cores)")
    proc, url, d = start_redis()
    try:
        has_cadence = "full_every_s" in inspect.signature(publisher_mod.Publisher).parameters
        runs: list[tuple[str, bool, bool]] = [("plain (msgpack, as before packing), full every tick", False, False),
                                              ("packed, full every tick", True, False)]
        if has_cadence:
            every = getattr(publisher_mod, "FULL_EVERY_S", None)
            runs.append((f"packed, default cadence (full every {every:g} s, nobody watching)", True, True))
        results = {}
        plain_pack = wire.pack
        for title, packed, cadence in runs:
            # The baseline: the same publisher storing encode()'s bytes as they are.
            wire.pack = plain_pack if packed else (lambda data, kind: data)  # type: ignore[assignment]
            try:
                counted, by, shapes = run(url, args.nodes, args.gpus, args.seconds, cadence)
            finally:
                wire.pack = plain_pack  # type: ignore[assignment]
            results[title] = report(title, counted, by, shapes, args.seconds)
        print("\nsummary (bytes per node per second, all kinds):")
        for title, per in results.items():
            print(f"  {title}: " + ", ".join(f"{s} {v:,.0f} ({v / BUDGET:.2f}x budget)" for s, v in per.items()))
        if not has_cadence:
            print("  (this publisher has no full-snapshot cadence: the default-cadence run is not made)")
        pack_cost()
        if args.read_nodes > 0:
            read_cost(url, args.read_nodes, args.reads)
        if not args.no_agent:
            got = agent_run(url, args.agent_seconds)
            if got is None:
                print("\nreal agent: published nothing within 30 s: not measured")
            else:
                print(f"\nreal agent on this machine (`clustertop agent`, interval 1 s, {got[1]:.1f} s, Redis's count): "
                      f"{got[0]:,.0f} bytes per second ({got[0] / BUDGET:.2f}x the budget of {BUDGET})")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
