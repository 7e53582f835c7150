"""Benchmark: dashboard refresh cost at 100 and 1,000 simulated nodes with 8 GPUs each.

Per refresh, p50/p95 over ~30 refreshes per screen, in a running app under ``run_test``:
``shown`` is from asking for a refresh until the last repaint it caused was written out: fetch +
decode (``Reader.read``: one pipelined round trip, in the worker thread), folding the state into
the View, drawing the screen and Textual's render. That is the figure the budget is about
(p95 <= 100 ms at 1,000 nodes x 8 GPUs). ``settled`` adds Pilot's idle detection (~40 ms even at
20 nodes, so not the dashboard's); ``cpu`` is the process's CPU time over the same window, the
worker thread included. Then the dashboard's CPU at a 1 Hz refresh while a simulator thread
keeps publishing (its own CPU time subtracted). Starts its own redis-server unless ``--redis URL``.
The machine is shared: compare runs made back to back, and prefer p50 when it is busy.

The simulated agents publish as real ones do: the full snapshot every 15 s of snapshot time (a tick is 1 s of
it) or every tick while wanted, their cadences spread over the 15 s (``Feed.spread``: agents start at different
times). ``--detail full,detail`` measures the storage, network and people screens both as they read before issue
18's ``Level.DETAIL`` (every node wanted, so written in full every tick) and as they read now (each node's full
snapshot as stored, fetched only when changed, its brief's figures over it): a same-run baseline.

First ``Reader.read`` alone, reading every full snapshot, every brief (``collectors/brief.py``) and
digest, and every digest only (``collectors/digest.py``), in the same run; then each screen as the
app reads for it: at 1,000 nodes the overview and the nodes table read digests, the GPU table
digests, the briefs' GPUs and the selected node in full. ``--reads digests,briefs,nodigest`` runs the
screens again reading briefs, and with agents that publish no digests (the dashboard folding every
brief, as before digests): baselines in the same run.

The garbage collector runs as ``dashboard.main.run`` sets it up (``dashboard.gcpolicy``: start-up
frozen, collections in the idle time after a repaint). ``--gc idle,young10k,default`` measures the
same screens under each policy in one run, to see what each is worth against the others:
``young10k`` is the policy before (frozen, automatic young passes every 10,000 allocations, mid-read),
``default`` CPython's own (nothing frozen, 700).

    python bench/dashboard_refresh.py            # 100 and 1,000 nodes, 384x108
    python bench/dashboard_refresh.py --quick    # CI smoke: 20 nodes, few refreshes
    python bench/dashboard_refresh.py --screens all --nodes 1000    # every screen (SCREENS)
    python bench/dashboard_refresh.py --nodes 1000 --screens storage,network,people --detail full,detail --no-reader --cpu-seconds 0
    python bench/dashboard_refresh.py --nodes 10000 --screens overview,gpus --no-reader --refreshes 15 --cpu-seconds 0
                                                 # 80,000 GPUs on one Redis (a tick of the simulator takes seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from benchlib.redis_server import start_redis  # noqa: E402  (bench/benchlib/)
from textual.widgets import Input  # noqa: E402

from clustertop import wire  # noqa: E402
from clustertop.agents.publisher import FULL_EVERY_S  # noqa: E402
from clustertop.control import signing, trust  # noqa: E402
from clustertop.control.summary import seal  # noqa: E402
from clustertop.dashboard import gcpolicy  # noqa: E402
from clustertop.dashboard.app import make_app  # noqa: E402
from clustertop.dashboard.screens.gpus import GpusScreen  # noqa: E402
from clustertop.dashboard.screens.network import NetworkScreen  # noqa: E402
from clustertop.dashboard.screens.nodes import NodesScreen  # noqa: E402
from clustertop.dashboard.screens.overview import OverviewScreen  # noqa: E402
from clustertop.dashboard.screens.people import PeopleScreen  # noqa: E402
from clustertop.dashboard.screens.storage import StorageScreen  # noqa: E402
from clustertop.dashboard.settings import Settings  # noqa: E402
from clustertop.read.cluster import by_bucket  # noqa: E402
from clustertop.read.plan import ALL_FULL, Level, ReadPlan  # noqa: E402
from clustertop.read.reader import Reader  # noqa: E402
from clustertop.read.summary import fold  # noqa: E402
from clustertop.sim.simulate import SimCluster, make_publishers, publish  # noqa: E402
from clustertop.wire.summary import summary_key  # noqa: E402


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
        # The agents' full-snapshot cadence (15 s of snapshot time; a tick here is 1 s of it), which a Publisher
        # turns off for an interval as long as the cadence: this feed's 600 s interval is there only for its TTLs.
        for pub in self.pubs.values():
            pub.full_every_s = FULL_EVERY_S
            pub.full_ttl_ms = pub.ttl_ms + int(FULL_EVERY_S * 1000)
        self.t = time.time()
        self.bytes = 0
        self.digests = True  # False: agents from before digests (the dashboard folds their briefs)
        # True: after each tick every bucket is folded from the digests and sealed, as a summary node does
        # (``--reads summaries``); untimed, like the tick. The folder's key is the app's only enrolled one.
        self.summaries = False
        self.summary_key = signing.new_key()
        self.known = trust.KnownNodes(keys={SUMMARY_FOLDER: self.summary_key.public()})
        self._folder_reader: Reader | None = None
        self.columns = False  # True: the summaries folded from the briefs' GPUs (every card's figures in the columns)

    def hosts(self) -> list[str]:
        return [h.decode() for h in self.client.zrange(wire.NODES_KEY, 0, -1)]

    def spread(self) -> None:
        """Spread the nodes' full-snapshot cadences over ``full_every`` as agents started at different times have
        them (the simulator starts them all at once, so all would write in full in the same tick): over the next
        ``full_every`` ticks node i writes one genuine full snapshot in tick i mod ``full_every`` (as wanted for
        that tick), so ~1/15 of the nodes write in full per tick, as on a real cluster."""
        every = int(max((p.full_every_s for p in self.pubs.values()), default=0))
        for k in range(every):
            for i, pub in enumerate(self.pubs.values()):
                if i % every == k:
                    pub.wanted = True
            self.tick()

    def unwant(self) -> None:
        """Drop every want key a run's screen wrote (they last 5 s of wall time, many ticks here), so the next
        run starts with the agents on their cadence, spread again (``spread``)."""
        self.client.delete(*[wire.want_key(h) for h in self.hosts()])
        self.tick()
        self.spread()

    def tick(self) -> None:
        self.t += 1.0
        self.bytes = publish(self.client, self.sim, self.t, self.pubs)
        if not self.digests:
            self.client.delete(*[wire.digest_key(h) for h in self.hosts()])
        if self.summaries:
            self.write_summaries()
        # The tick's own allocations (publishing, the summaries' fold) would count toward the app's next automatic
        # young collection and move it into the timed refresh (the app has no simulator in its process): counted
        # off here, in every mode.
        gc.collect(0)

    def write_summaries(self) -> None:
        """Every bucket folded from this tick's digests (``read.summary.fold``) and sealed (``control.summary.seal``)."""
        if self._folder_reader is None:
            self._folder_reader = Reader(self.client)
            self._folder_reader.read()  # learns the index (in full, once)
        st = self._folder_reader.read(ReadPlan(Level.GPUS if self.columns else Level.DIGESTS))
        now = time.time()
        p = self.client.pipeline(transaction=False)
        for bucket, group in enumerate(by_bucket(st.nodes)):
            # A long interval, as the feed's TTLs: a tick of 10,000 nodes takes seconds of wall time here.
            p.set(summary_key(bucket), seal(fold(group, bucket, SUMMARY_FOLDER, now, seq=int(self.t),
                                                 interval_s=600.0), self.summary_key))
        p.execute()


#: The summary node of ``--reads summaries`` (the folder the app's known_nodes enrols).
SUMMARY_FOLDER = "head01"

GC_POLICIES = ("idle", "young10k", "default")


def settle_gc(policy: str) -> None:
    """What ``dashboard.main.run`` does once the app is built (``idle``), or a ``--gc`` policy compared with it."""
    if policy == "idle":
        gcpolicy.tune()
    elif policy == "young10k":
        gcpolicy.untune((10_000, 20, 20))
        gc.collect()
        gc.freeze()
    else:
        gcpolicy.untune((700, 10, 10))
        gc.unfreeze()


def bench_reader(url: str, feed: Feed, n: int, plan: ReadPlan = ALL_FULL, policy: str = "idle") -> dict[str, float]:
    """``Reader.read`` alone: full snapshots (``ALL_FULL``), briefs and digests (``Level.BRIEFS``), or
    digests only (``Level.DIGESTS``)."""
    reader = Reader(redis.Redis.from_url(url), brief_from=0)  # briefs when asked, at any size
    reader.read()  # the first read learns the node list (one extra MGET, once)
    settle_gc(policy)
    fetch, decode, total = [], [], []
    for _ in range(n):
        feed.tick()
        t0 = time.perf_counter()
        st = reader.read(plan)
        total.append((time.perf_counter() - t0) * 1000)
        if st.fetch_ms is not None and st.decode_ms is not None:  # else not timed: left out, not 0
            fetch.append(st.fetch_ms)
            decode.append(st.decode_ms)
    return {"fetch_p50": pct(fetch, 0.5), "decode_p50": pct(decode, 0.5), "read_p50": pct(total, 0.5),
            "read_p95": pct(total, 0.95)}


async def bench_app(url: str, feed: Feed, n: int, size: tuple[int, int], screen: str,
                    policy: str = "idle", reads_mode: str = "digests") -> dict[str, Any]:
    """Per refresh: ``shown`` = from asking for a refresh until the last repaint it caused has been
    written out (read + fold + draw + Textual's render and display: what a person waits for);
    ``settled`` adds Pilot's idle detection (~40 ms of waiting even at 20 nodes); ``cpu`` is the
    process's CPU time over the same window (the read worker thread included)."""
    app = make_app(Settings(refresh_s=3600.0, known=feed.known), lambda: redis.Redis.from_url(url))
    settle_gc(policy)
    set_reads(reads_mode, feed)  # everything else equal: the other modes are the same run's baselines
    paints: list[float] = []
    display = app._display

    def timed_display(*args: Any, **kw: Any) -> None:
        display(*args, **kw)
        paints.append(time.perf_counter())

    app._display = timed_display  # type: ignore[method-assign]
    shown: list[float] = []
    read: list[float] = []  # the app's own read (fetch + decode + summarize), in its reader thread
    # Where a refresh's time goes, as three consecutive spans: asking -> the reader thread has the
    # state; -> the main thread has folded it in and drawn the screen (alerts, tiles, tables);
    # -> the last repaint is written out (Textual's compositor and render_line calls).
    phases: dict[str, list[float]] = {"read": [], "fold": [], "paint": []}
    read_end: list[float] = []
    settled: list[float] = []
    cpu: list[float] = []
    # The main thread's CPU alone (fold, draw, Textual's render: the screen's own work, without the read in
    # the worker thread): CPU time, so it moves far less with the machine's load than the waits do.
    main_cpu: list[float] = []
    # Each refresh whole (shown, its spans, the read's fetch/decode, the main thread's CPU, collector passes
    # inside it): the tail is what the budget is about, so the slowest are printed with where their time went.
    each: list[dict[str, float]] = []
    async with app.run_test(size=size) as pilot:
        # Woken by the app when a read has been folded in, not by polling: a poll loop every
        # 0.5 ms took ~30 ms of the main thread's CPU (and the GIL) away from the read it waits for.
        read_done = asyncio.Event()
        changed = app._changed

        def signalled() -> None:
            changed()
            read_done.set()

        app._changed = signalled  # type: ignore[method-assign]
        source_read = app.source.read

        in_read = [0]  # reads under way in the app's reader thread (the hidden GPU ledger's own ones too)

        def timed_read(*args: Any, **kw: Any) -> Any:
            in_read[0] += 1
            try:
                state = source_read(*args, **kw)
            finally:
                in_read[0] -= 1
            read_end.append(time.perf_counter())
            return state

        app.source.read = timed_read  # type: ignore[method-assign]
        while app.finished_reads < 1:
            await pilot.pause(0.01)
        await go_to(app, pilot, screen, feed)
        # One warm-up refresh (the first fill of a screen is not the steady state).
        for i in range(n + 1):
            feed.tick()
            await pilot.pause()
            # What the last refresh left for after its repaint (the hidden GPU ledger's own read and fold, the
            # collector's pass, freeing the previous read) done before this one starts, as in a running app,
            # where it has the rest of the interval: here the tick above blocked the app's loop meanwhile, and
            # at 10,000 nodes that work (~0.4 s) was counted into the next refresh.
            for _ in range(2000):
                if not in_read[0] and not app._ledger_read and not app._read_wanted.is_set():
                    break
                await asyncio.sleep(0.005)
            await pilot.pause()
            before = app.finished_reads
            paints.clear()
            read_done.clear()
            read_end.clear()
            g0 = sum(x["collections"] for x in gc.get_stats())
            t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
            app.refresh_now()
            await read_done.wait()
            assert app.finished_reads > before
            t_read = time.perf_counter()  # the fold is done (signalled() runs after _changed())
            await pilot.pause()  # let the screen process the update and repaint
            await pilot.wait_for_scheduled_animations()
            t1, c1, m1 = time.perf_counter(), time.process_time(), time.thread_time()
            if i:
                t_shown = max([t_read, *paints])
                shown.append((t_shown - t0) * 1000)
                if read_end:  # else this refresh's read was not seen: its spans are unknown, not 0
                    t_got = read_end[-1]
                    phases["read"].append((t_got - t0) * 1000)
                    phases["fold"].append((t_read - t_got) * 1000)
                    phases["paint"].append((t_shown - t_read) * 1000)
                st = app.view.state
                if st.fetch_ms is not None and st.decode_ms is not None:  # else not timed: left out, not 0
                    read.append(st.fetch_ms + st.decode_ms)
                each.append({"shown": shown[-1], **({"read": phases["read"][-1], "fold": phases["fold"][-1],
                                                     "paint": phases["paint"][-1]} if read_end else {}),
                             "fetch": st.fetch_ms if st.fetch_ms is not None else float("nan"),
                             "decode": st.decode_ms if st.decode_ms is not None else float("nan"),
                             "cpu": (c1 - c0) * 1000, "main": (m1 - m0) * 1000,
                             "gc": sum(x["collections"] for x in gc.get_stats()) - g0})
                settled.append((t1 - t0) * 1000)
                cpu.append((c1 - c0) * 1000)
                main_cpu.append((m1 - m0) * 1000)
        st = app.view.state  # what the screen really read
        reads = st.plan.level.name.lower()
    return {"reads": reads, "mode": reads_mode, "read_p50": pct(read, 0.5), "read_p95": pct(read, 0.95), "p50": pct(shown, 0.5),
            "p95": pct(shown, 0.95), "mean": statistics.fmean(shown), "settled_p95": pct(settled, 0.95),
            "cpu_p50": pct(cpu, 0.5), "cpu_p95": pct(cpu, 0.95),
            "main_cpu_p50": pct(main_cpu, 0.5), "main_cpu_p95": pct(main_cpu, 0.95),
            **{f"{k}_span_p50": pct(v, 0.5) for k, v in phases.items()},
            "slowest": sorted(each, key=lambda e: -e["shown"])[:3]}


#: Every screen ``--screens`` can name: the app's modes, and ``node`` (a node's screen, pushed over the
#: overview for the first node, as Enter on a tile does).
SCREENS = ("overview", "nodes", "gpus", "node", "work", "wall", "storage", "network", "people", "energy", "audit")
#: The screens that draw every node's detail (``--detail``: what they read).
DETAIL_SCREENS = {"storage": StorageScreen, "network": NetworkScreen, "people": PeopleScreen}


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


async def go_to(app: Any, pilot: Any, screen: str, feed: Feed) -> None:
    """Show ``screen`` as a person would reach it (a mode switch, or a node opened)."""
    if screen == "node":
        app.open_node(feed.hosts()[0])
    elif screen != "overview":
        app.switch_mode(screen)
    await pilot.pause()
    # The people screen's user-name input has the focus, and its cursor blinks: a repaint every 0.5 s whatever a
    # refresh does, counted as the refresh's last repaint whenever it fell inside its window (paint spans of
    # 36-190 ms among the slowest). Not a repaint the refresh caused: the cursor is kept still here.
    for w in app.screen.query(Input):
        w.cursor_blink = False


#: What is compared with ``--reads``: the overview and nodes table reading digests, or briefs and digests, or
#: digests from agents that publish none (so the dashboard reads and folds every brief itself: the cost of
#: these screens before digests), or the overview reading the bucket summaries (as it does past
#: ``plan.SUMMARY_FROM_NODES``: the feed folds and seals them after every tick, untimed); ``gpusummaries``: the same
#: with every card's figures in the summaries' GPU columns (folded from a read of the briefs' GPUs, as a summary node
#: with ``gpu_columns`` folds) and the GPU table reading them (``GpusScreen.summaries``; every other mode: off).
READ_MODES = ("digests", "briefs", "nodigest", "summaries", "gpusummaries")


def set_reads(mode: str, feed: Feed) -> None:
    for cls in (OverviewScreen, NodesScreen):
        cls.plan_level = Level.BRIEFS if mode == "briefs" else Level.DIGESTS
    if mode in ("summaries", "gpusummaries"):
        OverviewScreen.plan_level = Level.SUMMARIES
    GpusScreen.summaries = mode == "gpusummaries"
    feed.digests = mode != "nodigest"
    feed.summaries = mode in ("summaries", "gpusummaries")
    feed.columns = mode == "gpusummaries"
    feed.tick()


async def bench_cpu(url: str, feed: Feed, seconds: float, size: tuple[int, int], policy: str = "idle",
                    reads: str = "digests", ticking: bool = True) -> float:
    """Dashboard CPU % of one core at a 1 Hz refresh, the simulator's own CPU subtracted. ``ticking`` False
    (``--cpu-feed none``): nothing is published meanwhile, every refresh reads the data of the last tick (each
    read decoded and folded in full all the same: nothing caches decoded bytes), for clusters whose tick takes
    longer than a second here (10,000 nodes): the tiles then change only in their ages."""
    stop = threading.Event()
    sim_cpu = [0.0]

    def feeder() -> None:
        start = time.thread_time()
        while not stop.wait(1.0):
            if ticking:
                feed.tick()
        sim_cpu[0] = time.thread_time() - start

    app = make_app(Settings(refresh_s=1.0, known=feed.known), lambda: redis.Redis.from_url(url))
    settle_gc(policy)
    set_reads(reads, feed)
    async with app.run_test(size=size) as pilot:
        while app.finished_reads < 1:
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
    ap.add_argument("--cpu-seconds", type=float, default=10.0, help="0: no CPU-at-1-Hz run")
    ap.add_argument("--cpu-feed", default="tick", choices=("tick", "none"),
                    help="during the CPU-at-1-Hz run: tick the simulator every second (its CPU subtracted), or "
                         "publish nothing (10,000 nodes take seconds a tick here; see bench_cpu)")
    ap.add_argument("--no-reader", action="store_true",
                    help="skip Reader.read alone (3 x refreshes ticks: minutes at 10,000 nodes)")
    ap.add_argument("--screens", default="overview,nodes,gpus",
                    help=f"screens to measure, of {','.join(SCREENS)} (or all)")
    ap.add_argument("--reads", default="digests",
                    help=f"what the overview and nodes table read, of {','.join(READ_MODES)} (see READ_MODES)")
    ap.add_argument("--gc", default="idle", help=f"garbage-collector policies to compare, of {','.join(GC_POLICIES)}")
    ap.add_argument("--detail", default="detail",
                    help="what the storage, network and people screens read, of detail (every node's full "
                         "snapshot as stored, wanting none: as they do) and full (every node wanted, each writing "
                         "in full every tick: as they did before), e.g. full,detail for a same-run baseline")
    args = ap.parse_args()
    details = args.detail.split(",")
    if bad := [x for x in details if x not in ("detail", "full")]:
        ap.error(f"--detail: unknown {bad[0]!r} (choose from detail, full)")
    policies = args.gc.split(",")
    modes = args.reads.split(",")
    if bad := [x for x in modes if x not in READ_MODES]:
        ap.error(f"--reads: unknown {bad[0]!r} (choose from {', '.join(READ_MODES)})")
    if bad := [x for x in policies if x not in GC_POLICIES]:
        ap.error(f"--gc: unknown policy {bad[0]!r} (choose from {', '.join(GC_POLICIES)})")
    screens = list(SCREENS) if args.screens == "all" else args.screens.split(",")
    if bad := [x for x in screens if x not in SCREENS]:
        ap.error(f"--screens: unknown {bad[0]!r} (choose from {', '.join(SCREENS)}, or all)")
    w, h = (int(x) for x in args.size.split("x"))
    counts = args.nodes or ([20] if args.quick else [100, 1000])
    n = 5 if args.quick else args.refreshes
    cpu_s = 2.0 if args.quick else args.cpu_seconds
    proc = d = None
    url = args.redis
    if url is None:
        proc, url, d = start_redis()
    reads: list[tuple[int, int, int, int, dict[str, float], dict[str, float], dict[str, float]]] = []  # Reader.read alone
    rows: list[tuple[int, str, str, dict[str, Any]]] = []  # the app, per GC policy and screen
    try:
        for nodes in counts:
            t_feed = time.perf_counter()
            feed = Feed(url, nodes)
            feed.tick()
            feed.spread()
            print(f"  {nodes} nodes simulated and published in {time.perf_counter() - t_feed:.1f} s", file=sys.stderr)
            if not args.no_reader:
                r = bench_reader(url, feed, n, policy=policies[0])
                rb = bench_reader(url, feed, n, ReadPlan(Level.BRIEFS), policy=policies[0])
                rd = bench_reader(url, feed, n, ReadPlan(Level.DIGESTS), policy=policies[0])
                print(f"  {nodes} nodes Reader.read p50: full {r['read_p50']:.1f} ms, briefs {rb['read_p50']:.1f} ms, "
                      f"digests {rd['read_p50']:.1f} ms", file=sys.stderr)
                hosts = feed.hosts()
                full_bytes = sum(len(x or b"") for x in feed.client.mget([wire.node_key(h) for h in hosts]))
                brief_bytes = sum(len(x or b"") for x in feed.client.mget([wire.brief_key(h) for h in hosts]))
                digest_bytes = sum(len(x or b"") for x in feed.client.mget([wire.digest_key(h) for h in hosts]))
                reads.append((nodes, full_bytes, brief_bytes, digest_bytes, r, rb, rd))
            for policy in policies:
                for mode in modes:
                    for screen in screens:
                        for level in details if screen in DETAIL_SCREENS else [None]:
                            if level is not None:
                                for cls in DETAIL_SCREENS.values():
                                    cls.plan_level = Level[level.upper()]
                                feed.unwant()  # the agents back on their cadence (a "full" run pinned them)
                            a = asyncio.run(bench_app(url, feed, n, (w, h), screen, policy, mode))
                            rows.append((nodes, policy, screen, a))
                            print(f"  {nodes} nodes {policy} {screen} ({a['reads']}): shown p95 {a['p95']:.1f} ms "
                                  f"({load()})", file=sys.stderr)
                for mode in modes if cpu_s > 0 else ():
                    cpu = asyncio.run(bench_cpu(url, feed, cpu_s, (w, h), policy, mode, args.cpu_feed == "tick"))
                    rows.append((nodes, policy, "cpu@1Hz", {"cpu": cpu, "reads": mode}))
                    print(f"  {nodes} nodes {policy} cpu@1Hz ({mode}, feed {args.cpu_feed}): {cpu:.1f} % ({load()})",
                          file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)
            shutil.rmtree(d or "", ignore_errors=True)
    print(f"\ndashboard refresh, {w}x{h}, {n} refreshes each (ms); Reader.read under GC policy {policies[0]}")
    print("\nReader.read alone (fetch + decode + summarize): every full snapshot; every brief and digest; every digest\n"
          "(collectors/brief.py, collectors/digest.py). Sizes per node: full snapshot, brief, digest")
    print(f"{'nodes':>6} {'KiB full':>8} {'brief':>6} {'digest':>6} | {'full: fetch':>11} {'decode':>7} {'p50':>6} "
          f"{'p95':>6} | {'briefs: fetch':>13} {'decode':>7} {'p50':>6} {'p95':>6} | {'digests: fetch':>14} {'decode':>7} "
          f"{'p50':>6} {'p95':>6}")
    for nodes, full_bytes, brief_bytes, digest_bytes, r, rb, rd in reads:
        print(f"{nodes:>6} {full_bytes / 1024 / nodes:>8.1f} {brief_bytes / 1024 / nodes:>6.1f} "
              f"{digest_bytes / 1024 / nodes:>6.2f} | "
              f"{r['fetch_p50']:>11.1f} {r['decode_p50']:>7.1f} {r['read_p50']:>6.1f} {r['read_p95']:>6.1f} | "
              f"{rb['fetch_p50']:>13.1f} {rb['decode_p50']:>7.1f} {rb['read_p50']:>6.1f} {rb['read_p95']:>6.1f} | "
              f"{rd['fetch_p50']:>14.1f} {rd['decode_p50']:>7.1f} {rd['read_p50']:>6.1f} {rd['read_p95']:>6.1f}")
    print("\nIn the app, per refresh: read = its own Reader.read (what the screen asks for); shown = from asking for\n"
          "a refresh until its last repaint is written out (read + fold + draw + render); settled adds Pilot's idle waits;\n"
          "cpu = the process's CPU time over the same window, main = the main thread's alone (no read: the screen's own work);\n"
          "spans: the same wait cut in three, asking -> state read (worker thread) -> folded and drawn (main thread)\n"
          "-> last repaint written (Textual's compositor); their p50s need not add up to shown p50")
    print(f"{'nodes':>6} {'gc':<8} {'screen':<9} {'mode':<8} {'reads':<7} {'read p50':>8} {'read p95':>8} {'shown p50':>9} {'shown p95':>9} "
          f"{'settled p95':>11} {'cpu p50':>8} {'cpu p95':>8} {'main p50':>8} {'main p95':>8} | {'spans p50: read':>15} "
          f"{'fold':>5} {'paint':>5}")
    for nodes, policy, screen, a in rows:
        if screen == "cpu@1Hz":
            print(f"{nodes:>6} {policy:<8} {'overview':<9} {a['reads']:<8} at a 1 Hz refresh: {a['cpu']:.1f} % of a core"
                  f" (feed: {args.cpu_feed})")
            continue
        print(f"{nodes:>6} {policy:<8} {screen:<9} {a['mode']:<8} {a['reads']:<7} {a['read_p50']:>8.1f} {a['read_p95']:>8.1f} {a['p50']:>9.1f} "
              f"{a['p95']:>9.1f} {a['settled_p95']:>11.1f} {a['cpu_p50']:>8.1f} {a['cpu_p95']:>8.1f} "
              f"{a['main_cpu_p50']:>8.1f} {a['main_cpu_p95']:>8.1f} | "
              f"{a['read_span_p50']:>15.1f} {a['fold_span_p50']:>5.1f} {a['paint_span_p50']:>5.1f}")
    print("\nThe slowest 3 refreshes of each screen: shown = read span + fold + paint; the read's fetch and decode\n"
          "(in the worker thread); the process's and the main thread's CPU; gc = collector passes inside the refresh")
    for nodes, policy, screen, a in rows:
        for e in a.get("slowest", ()):
            print(f"{nodes:>6} {policy:<8} {screen:<9} shown {e['shown']:>6.1f} = read {e.get('read', float('nan')):>6.1f}"
                  f" + fold {e.get('fold', float('nan')):>5.1f} + paint {e.get('paint', float('nan')):>5.1f} | fetch "
                  f"{e['fetch']:>5.1f} decode {e['decode']:>6.1f} | cpu {e['cpu']:>6.1f} main {e['main']:>6.1f} | "
                  f"gc {e['gc']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
