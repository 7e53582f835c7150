"""Where the agent's CPU per tick goes: each collector, snapshot build, encode, brief, digest, seal, send, GC.

Runs the real Agent (agents/agent.py, the collectors `clustertop agent` enables on this machine) in this
process against a private redis-server, ticking on its real schedule (``--interval``, default 1 s), and
measures each part's CPU with the clock of the thread that runs it (``time.thread_time``: collectors in the
runner's pool threads, the rest in the ticking thread), by wrapping the parts in place: the code measured
is the agent's own, unchanged. Then the whole process's CPU over the same ticks (``time.process_time``), so what no
part accounts for (thread wake-ups, the runner's waiting, the interpreter's own bookkeeping) shows as
``other``. GC is timed from ``gc.callbacks`` (wall time of each collection, in whatever thread ran it; it
is also inside the part that triggered it). Informational: no assertions, exits 0.

    python bench/agent_profile.py --ticks 30
    python bench/agent_profile.py --quick            # CI smoke: 8 ticks
    python bench/agent_profile.py --cprofile 25      # plus the 25 costliest functions (all threads)

With prometheus-node-exporter installed, it runs beside the agent with the collectors comparable to the host
collector's per-tick part (benchlib/node_exporter.py), scraped once per tick by a separate process over the same
ticks, and the last line sets the agent's comparable part (host collector without the process walk, encode of
snapshot and digest, send) against its CPU per scrape (utime+stime: 10 ms resolution, so give it 60+ ticks).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchlib import node_exporter  # noqa: E402  (bench/benchlib/)
from benchlib.redis_server import start_redis  # noqa: E402

from clustertop.agents import agent as agent_mod  # noqa: E402
from clustertop.agents import publisher as pub_mod  # noqa: E402
from clustertop.agents.config import load_config  # noqa: E402


class Meter:
    """CPU seconds per part, summed over every call, in the calling thread's clock."""

    def __init__(self, profile: bool) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.gc_s = 0.0
        self.gc_runs = 0
        self._gc_t0: float | None = None
        self.profiles: list[cProfile.Profile] = []
        self._local = threading.local()
        self.profile = profile
        self.on = False

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            if not self.on:
                return fn(*a, **kw)
            prof = None
            # cProfile follows one thread: a profile per call of a pool thread, merged at the end.
            if self.profile and threading.current_thread() is not threading.main_thread():
                prof = cProfile.Profile()
                prof.enable()
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                self.cpu[part] += time.thread_time() - t0
                self.calls[part] += 1
                if prof is not None:
                    prof.disable()
                    self.profiles.append(prof)
        return timed

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0 is not None:
            self.gc_s += time.perf_counter() - self._gc_t0
            self.gc_runs += 1
            self._gc_t0 = None


def instrument(agent: agent_mod.Agent, meter: Meter) -> None:
    """Wrap each part where the agent calls it (module globals and bound methods of this agent only)."""
    for s in agent.runner.slots.values():
        if s.collector is not None:
            s.collector.collect = meter.wrap(f"collector {s.name}", s.collector.collect)
            if hasattr(s.collector, "_procs"):  # the host collector's process walk (every procs_interval)
                s.collector._procs = meter.wrap(f"{s.name}: process walk", s.collector._procs)
    agent.stats.sample = meter.wrap("snapshot: self stats", agent.stats.sample)  # type: ignore[method-assign]
    agent._refresh_leases = meter.wrap("leases", agent._refresh_leases)  # type: ignore[method-assign]

    real_wire = pub_mod.wire

    class Wire:  # the publisher's `wire`, with encode timed by what it encodes
        def __getattr__(self, name: str) -> Any:
            return getattr(real_wire, name)

    encode = real_wire.encode

    def enc(obj: Any) -> bytes:
        # The brief is a NodeSnapshot too: "encode NodeSnapshot" is the full snapshot and the brief.
        return meter.wrap(f"encode {type(obj).__name__}", encode)(obj)

    w = Wire()
    w.encode = enc  # type: ignore[attr-defined]
    if hasattr(real_wire, "pack"):  # deflate of the stored payloads (task L): per kind
        pack = real_wire.pack
        w.pack = lambda data, kind: meter.wrap(f"pack (deflate) {kind}", pack)(data, kind)  # type: ignore[attr-defined]
    pub_mod.wire = w  # type: ignore[assignment]
    pub_mod.brief = meter.wrap("brief (build)", pub_mod.brief)
    pub_mod.digest = meter.wrap("digest (build)", pub_mod.digest)
    pub_mod.seal = meter.wrap("seal (SHA-256s + Ed25519)", pub_mod.seal)
    agent_mod.hist_point = meter.wrap("history point", agent_mod.hist_point)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 8 ticks")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print the N costliest functions")
    args = ap.parse_args()
    if args.quick:
        args.ticks = 8
    if shutil.which("redis-server") is None:
        print("redis-server not installed: nothing measured")
        return 0
    proc, url, data_dir = start_redis()
    exporter = node_exporter.start()
    state = tempfile.mkdtemp(prefix="ct-agent-profile-")
    meter = Meter(profile=args.cprofile > 0)
    gc.callbacks.append(meter.gc_callback)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
        cfg = load_config(None, env, {"redis_url": url, "node": "profile", "interval_s": args.interval,
                                      "state_dir": state})
        agent = agent_mod.Agent(cfg)
        # The publisher is built at the first publish: build it now, so its parts can be wrapped.
        agent.publish(*agent.tick())
        pub = agent._publisher
        assert pub is not None
        client = pub.client
        pipeline = client.pipeline

        def timed_pipeline(*a: Any, **kw: Any) -> Any:
            p = pipeline(*a, **kw)
            p.execute = meter.wrap("send (MULTI/EXEC round trip)", p.execute)
            return p

        client.pipeline = timed_pipeline
        pub._flush_tiers = meter.wrap("history tiers", pub._flush_tiers)  # type: ignore[method-assign]
        fulls0 = getattr(pub, "fulls", None)
        agent.account_energy = meter.wrap("energy ledger", agent.account_energy)  # type: ignore[method-assign]
        instrument(agent, meter)
        snapshot = agent._snapshot
        agent._snapshot = meter.wrap("snapshot build (all)", snapshot)  # type: ignore[method-assign]
        runner_tick = agent.runner.tick
        agent.runner.tick = meter.wrap("runner (submit, wait, harvest)", runner_tick)  # type: ignore[method-assign]
        publish = agent._publisher.publish
        agent._publisher.publish = meter.wrap("publish (all)", publish)  # type: ignore[method-assign]
        for _ in range(2):  # warm: first rates, first history point, imports behind first calls
            agent.publish(*agent.tick())
            time.sleep(args.interval)
        main_prof = cProfile.Profile() if args.cprofile else None
        scraper = e0 = None
        if exporter is not None:
            e0 = node_exporter.cpu_ms(exporter[0].pid)
            scraper = node_exporter.scrape_in_background(exporter[1], args.interval, args.ticks)
        t_proc0 = time.process_time()
        main_cpu0 = time.thread_time()
        meter.on = True
        if main_prof:
            main_prof.enable()
        next_t = time.monotonic()
        for _ in range(args.ticks):
            snap, cluster = agent.tick()
            agent.publish(snap, cluster)
            agent.account_energy(snap)
            next_t += args.interval
            time.sleep(max(0.0, next_t - time.monotonic()))
        if main_prof:
            main_prof.disable()
        meter.on = False
        total = (time.process_time() - t_proc0) * 1000 / args.ticks
        main_total = (time.thread_time() - main_cpu0) * 1000 / args.ticks
        exporter_ms = None
        if exporter is not None and scraper is not None and e0 is not None:
            # every scrape answered (the scraper ends by itself after --ticks scrapes, exit 0)
            if scraper.wait(args.interval * 3 + 30) == 0:
                exporter_ms = (node_exporter.cpu_ms(exporter[0].pid) - e0) / args.ticks
        fulls = getattr(pub, "fulls", None)
        report(meter, args, total, main_total, agent, None if fulls is None or fulls0 is None else fulls - fulls0,
               exporter_ms)
        if main_prof:
            st = pstats.Stats(main_prof)
            for p in meter.profiles:
                st.add(p)
            print(f"\ncProfile, all threads ({args.ticks} ticks; the profiler inflates small calls):")
            st.sort_stats("tottime").print_stats(args.cprofile)
        agent.close()
        return 0
    finally:
        gc.callbacks.remove(meter.gc_callback)
        if exporter is not None:
            node_exporter.stop(exporter[0])
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


def report(meter: Meter, args: argparse.Namespace, total: float, main_total: float, agent: agent_mod.Agent,
           fulls: int | None, exporter_ms: float | None = None) -> None:
    n = args.ticks
    per = {k: v * 1000 / n for k, v in meter.cpu.items()}
    collectors = {k: v for k, v in per.items() if k.startswith("collector ")}
    in_snapshot = ("snapshot: self stats",)
    in_publish = [k for k in per if k.startswith(("encode ", "pack ", "brief", "digest", "seal", "send"))]
    main_parts = ["leases", "runner (submit, wait, harvest)", "snapshot build (all)", "history point",
                  "publish (all)", "energy ledger"]
    rows: list[tuple[str, float, str]] = []
    for k in sorted(collectors, key=lambda k: -collectors[k]):
        slot = agent.runner.slots[k.removeprefix("collector ")]
        rows.append((k, collectors[k], f"{meter.calls[k]} calls; interval {slot.interval_s:g} s"))
        walk = f"{slot.name}: process walk"
        if walk in per:
            rows.append((f"  of which {walk}", per[walk], f"{meter.calls[walk]} walks"))
    coll_sum = sum(collectors.values())
    rows.append(("  collectors (pool threads)", coll_sum, ""))
    for k in main_parts:
        rows.append((k, per.get(k, 0.0), ""))
        if k == "snapshot build (all)":
            rows += [(f"  of which {s}", per.get(s, 0.0), "") for s in in_snapshot]
        if k == "publish (all)":
            rows += [(f"  of which {s}", per[s], "") for s in sorted(in_publish, key=lambda s: -per[s])]
            rest = per.get(k, 0.0) - sum(per[s] for s in in_publish) - per.get("history tiers", 0.0)
            rows.append(("  of which pipeline build, index, history", rest, ""))
            rows.append(("  of which history tiers", per.get("history tiers", 0.0), ""))
    main_sum = sum(per.get(k, 0.0) for k in main_parts)
    rows.append(("  ticking thread, parts", main_sum, ""))
    rows.append(("  ticking thread, not in a part", main_total - main_sum, "loop, sleep"))
    other = total - coll_sum - main_total
    rows.append(("other threads' overhead", other, "pool wake-ups, waits, the runtime"))
    rows.append(("GC (wall, inside the parts above)", meter.gc_s * 1000 / n, f"{meter.gc_runs} collections"))
    rows.append(("PROCESS CPU per tick", total, "CLOCK_PROCESS_CPUTIME_ID, every thread"))
    full = "every tick" if fulls is None else f"{fulls} of {n} ticks"
    print(f"agent CPU per tick, {n} ticks at {args.interval:g} s; load {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; full snapshot written {full}")
    w = max(len(r[0]) for r in rows)
    print(f"{'part':<{w}}  {'ms/tick':>8}  {'share':>6}  note")
    for name, ms, note in rows:
        share = f"{100 * ms / total:5.1f}%" if total > 0 else "N/A"
        print(f"{name:<{w}}  {ms:8.3f}  {share:>6}  {note}")
    comparable(per, total, exporter_ms, n)


def comparable(per: dict[str, float], total: float, exporter_ms: float | None, scrapes: int) -> None:
    """The agent's part that node_exporter's cpu, meminfo, diskstats, netdev, filesystem and loadavg collectors also
    do (read and parse the same files, encode, hand over), against node_exporter's CPU per scrape in the same run."""
    walk = per.get("host: process walk", 0.0)
    host = per.get("collector host", 0.0) - walk
    encode = per.get("encode NodeSnapshot", 0.0) + per.get("encode NodeDigest", 0.0)
    send = per.get("send (MULTI/EXEC round trip)", 0.0)
    part = host + encode + send
    vs = "node_exporter not measured" if exporter_ms is None else (
        f"node_exporter {exporter_ms:.2f} ms per scrape (+-{10 / max(1, scrapes):.2f}: 10 ms CPU ticks over "
        f"{scrapes} scrapes) = {part / exporter_ms:.2f}x" if exporter_ms > 0 else
        "node_exporter 0 ticks of CPU (too few scrapes for its 10 ms clock)")
    print(f"comparable part: host collector without the process walk {host:.3f} + encode {encode:.3f} + send "
          f"{send:.3f} = {part:.3f} ms/tick vs {vs}")
    print(f"  what node_exporter does not do here: process walk {walk:.3f}, the other collectors, brief and digest "
          f"build, seal, deflate, runner, history: {total - part:.3f} ms/tick; the whole agent "
          f"{total:.3f} ms/tick" + ("" if not exporter_ms else f" = {total / exporter_ms:.2f}x node_exporter"))


if __name__ == "__main__":
    raise SystemExit(main())
