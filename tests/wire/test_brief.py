"""Briefs: what the cluster-wide views read at scale, and the reads that choose briefs or full snapshots.

The invariant that makes briefs safe: every fold and drawing a brief-reading screen does gives
exactly what it gives on the full snapshots (totals, alerts, GPU ledger, tiles, nodes table, heat
grid, launcher), on a simulated cluster given every kind of trouble those folds look at. Then the
read path against a real redis-server: briefs for all plus full snapshots where asked, an agent
from before briefs (no brief key) read in full, one round trip, and the app switching screens.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
import redis

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.dashboard.actions import node_choices
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.gpus import SORT_VALUES as GPU_SORT
from clustertop.dashboard.screens.gpus import GpusScreen, gpu_row
from clustertop.dashboard.screens.gpus import matches as gpu_matches
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.nodes import SORT_VALUES, node_row
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.header import ClusterHeader
from clustertop.dashboard.widgets.heatgrid import cells_of
from clustertop.dashboard.widgets.palette import Palette
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.dashboard.widgets.tiles import render_tile
from clustertop.read.cluster import alerts, summarize
from clustertop.read.ledger import LedgerTracker
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.reader import NodeView, Reader
from clustertop.sim.simulate import SimCluster
from clustertop.wire import schema
from clustertop.wire.brief import brief
from clustertop.wire.digest import digest
from tests.read.test_reader import CountingConnection
from tests.support import builders as b


def troubled(seed: int = 5, nodes: int = 120) -> tuple[list[schema.NodeSnapshot], schema.Kubernetes | None]:
    """Simulated snapshots with lost, hot, ECC, throttled and silent GPUs, degraded bonds, hung and
    slow mounts, full filesystems, failing collectors, missing sections and templates."""
    sim = SimCluster(seed=seed, nodes=nodes, gpus_per_node=8)
    pairs, cluster = sim.step(b.NOW)
    snaps = [s for s, _ in pairs]
    rng = random.Random(seed)
    for s in snaps:
        for g in s.gpus or ():
            r = rng.random()
            b.trouble_gpu(g, r)
            if 0.13 <= r < 0.15:
                g.procs = None  # processes not reported: the ledger's "unknown"
        if rng.random() < 0.1:
            s.collectors["nfs"] = schema.CollectorStatus(ok=False, error="TimeoutError: exceeded 2.0 s")
        if s.bonds and rng.random() < 0.2:
            bond = s.bonds[0]
            bond.degraded, bond.problems = True, ["eth1: link down"]
            if bond.slaves:
                bond.slaves[0].ok = False
        if rng.random() < 0.1:
            s.netmounts = [schema.NetMount(mountpoint="/data", fstype="nfs4", source="nas:/data",
                                           state=rng.choice(["hung", "slow", "ok"]), latency_ms=1800.0),
                           schema.NetMount(mountpoint="/scratch", fstype="nfs", error="Stale file handle")]
        if s.system is not None and s.system.filesystems and rng.random() < 0.1:
            fs = s.system.filesystems[0]
            fs.used_bytes = fs.total_bytes
        if s.system is not None and rng.random() < 0.05:
            s.system.nics = None
        if rng.random() < 0.03:
            s.gpus = None
        if rng.random() < 0.2:
            s.templates = [schema.TemplateInfo(name="train", description="a training run", params={"lr": "float"})]
    k8s = next((p.kubernetes for p in cluster if p.kubernetes is not None), None)
    return snaps, k8s


def views(snaps: list[schema.NodeSnapshot], as_brief: bool) -> list[NodeView]:
    states = ["up"] * 10 + ["stale", "bad"]
    # The brief goes over the wire, as it does between agent and dashboard.
    return [NodeView(host=s.host, state=states[i % len(states)], age_s=0.5, error="bad data" if i % 12 == 11 else None,
                     snap=wire.decode(wire.encode(brief(s)), schema.NodeSnapshot) if as_brief else s, brief=as_brief)
            for i, s in enumerate(snaps)]


def test_every_brief_reading_fold_gives_what_full_snapshots_give() -> None:
    snaps, k8s = troubled()
    full, short = views(snaps, False), views(snaps, True)

    t = summarize(full, {})
    assert dataclasses.asdict(summarize(short, {})) == dataclasses.asdict(t)
    assert t.gpus_lost and t.bonds_degraded and t.gpu_procs  # the data has what the folds look at

    want = alerts(full, {}, b.NOW)
    assert alerts(short, {}, b.NOW) == want
    kinds = {a.source for a in want}
    assert {"gpu", "bond", "mount", "disk", "collector", "node"} <= kinds, kinds

    assert k8s is not None and k8s.pods
    assert LedgerTracker().update(k8s, [v.snap for v in short], b.NOW) == \
        LedgerTracker().update(k8s, [v.snap for v in full], b.NOW)

    # The digest folded from a brief is the digest of the full snapshot, field for field: what makes it
    # safe for the dashboard to fold an old agent's brief in place of the digest it does not publish.
    for f, s in zip(full, short, strict=True):
        assert digest(s.snap) == digest(f.snap), f.host  # type: ignore[arg-type]

    p = Palette({})
    drawn = []
    for f, s in zip(full, short, strict=True):
        for roomy in (False, True):
            drawn.append(render_tile(s, p, roomy=roomy))
            assert drawn[-1] == render_tile(f, p, roomy=roomy), f.host
        assert [c.plain for c in node_row(s, p)] == [c.plain for c in node_row(f, p)], f.host
        assert {k: fn(s) for k, fn in SORT_VALUES.items()} == {k: fn(f) for k, fn in SORT_VALUES.items()}
    texts = ["".join(seg.text for seg in line) for tile in drawn for line in tile]
    assert sum("%" in t for t in texts) > 100 and any(t.startswith("bond ") for t in texts)  # figures, not N/A
    assert cells_of(short) == cells_of(full)
    for f, s in zip(full, short, strict=True):  # the GPU table: rows, sort keys, the user filter
        for gf, gs in zip(f.snap.gpus or (), s.snap.gpus or (), strict=True):  # type: ignore[union-attr]
            assert [c.plain for c in gpu_row(s, gs, p, False)] == [c.plain for c in gpu_row(f, gf, p, False)]
            assert {k: fn(s, gs) for k, fn in GPU_SORT.items()} == {k: fn(f, gf) for k, fn in GPU_SORT.items()}
            assert all(gpu_matches(s, gs, n) == gpu_matches(f, gf, n) for n in ("alice", "root", "h100", "zz"))

    launch = [[(c.name, c.nodes) for c in node_choices(type("State", (), {"nodes": vs}))] for vs in (short, full)]
    assert launch[0] and launch[0] == launch[1]


def test_a_brief_is_under_half_the_bytes_and_leaves_detail_out() -> None:
    snaps, _ = troubled(nodes=40)
    towers = [s for s in snaps if s.gpus and len(s.gpus) == 8 and s.system and s.system.procs]
    assert towers
    s = towers[0]
    full_b, brief_b = wire.encode(s), wire.encode(brief(s))
    assert wire.encode(s) == full_b  # brief() does not touch its input
    assert len(brief_b) * 2.5 < len(full_b), (len(brief_b), len(full_b))
    short = wire.decode(brief_b, schema.NodeSnapshot)
    assert short.system is not None and short.system.procs is None and short.system.cpu_model is None
    assert short.system.cpu is not None and short.system.cpu.per_cpu_pct is None
    assert short.gpus is not None and all(g.uuid is None and g.sm_clock_mhz is None for g in short.gpus)
    assert [p.cmdline for g in short.gpus for p in g.procs or ()] == [None] * sum(len(g.procs or ()) for g in short.gpus)
    # ... and keeps what says "unknown": a GPU without a process list is still None, not [].
    s.gpus[0].procs = None
    assert brief(s).gpus[0].procs is None  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# The read path, against a real redis-server
# ---------------------------------------------------------------------------------------------

def node(host: str) -> schema.NodeSnapshot:
    return schema.NodeSnapshot(
        host=host, ts=b.NOW, seq=1, interval_s=1.0,
        system=schema.System(cpu_count=8, cpu=schema.CpuTimes(util_pct=25.0, per_cpu_pct=[25.0] * 8),
                             procs=[schema.Proc(pid=42, name="python", cmdline="python train.py")]),
        gpus=[schema.Gpu(index=0, uuid="GPU-1", util_pct=90, sm_clock_mhz=1900,
                         procs=[schema.GpuProc(pid=42, name="python", cmdline="python train.py")])])


def test_reader_reads_briefs_and_full_snapshots_where_asked(redis_server: Any) -> None:
    c = redis_server.client()
    for h in ("gpu01", "gpu02", "gpu03"):
        Publisher(c, h, 1.0).publish(node(h))
    # An agent from before briefs: only its full key. It must read as up, in full, not as dead.
    c.set(wire.node_key("old01"), wire.encode(node("old01")), px=600_000)
    c.zadd(wire.NODES_KEY, {"old01": b.NOW})
    pool = redis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    reader = Reader(redis.Redis(connection_pool=pool), clock=lambda: b.NOW + 0.5, brief_from=0)

    st = reader.read(ReadPlan(Level.BRIEFS, frozenset({"gpu02"})))  # the first read learns the nodes
    assert st.plan == ReadPlan(Level.BRIEFS, frozenset({"gpu02"}))
    assert st.plan.in_full("gpu02") and not st.plan.in_full("gpu01")
    by = {v.host: v for v in st.nodes}
    assert {h: v.state for h, v in by.items()} == dict.fromkeys(("gpu01", "gpu02", "gpu03", "old01"), "up")
    assert {h: v.brief for h, v in by.items()} == {"gpu01": True, "gpu02": False, "gpu03": True, "old01": False}
    assert by["gpu01"].snap.system.procs is None  # type: ignore[union-attr]
    assert by["gpu02"].snap.system.procs[0].cmdline == "python train.py"  # type: ignore[union-attr,index]
    assert by["old01"].snap.gpus[0].procs[0].cmdline == "python train.py"  # type: ignore[union-attr,index]
    assert st.totals.nodes_up == 4 and st.totals.gpus_total == 4

    CountingConnection.sends = 0
    st = reader.read(ReadPlan(Level.BRIEFS))
    assert CountingConnection.sends == 1  # steady state: one round trip, briefs and the old agent's full key
    assert [v.brief for v in st.nodes] == [True, True, True, False]

    # Switching to briefs after full reads: the old agent is up at once, in one round trip (a full read takes
    # every digest too, and every payload of a node new to it, so it learnt what each agent writes).
    fresh = Reader(redis.Redis(connection_pool=pool), clock=lambda: b.NOW + 0.5, brief_from=0)
    fresh.read(ALL_FULL)
    CountingConnection.sends = 0
    st = fresh.read(ReadPlan(Level.BRIEFS))
    assert st.node("old01").state == "up" and CountingConnection.sends == 1  # type: ignore[union-attr]
    CountingConnection.sends = 0
    assert fresh.read(ReadPlan(Level.BRIEFS)).node("old01").state == "up" and CountingConnection.sends == 1  # type: ignore[union-attr]

    st = reader.read(ALL_FULL)
    assert st.plan == ALL_FULL and not any(v.brief for v in st.nodes)
    assert all(v.snap.system.procs for v in st.nodes)  # type: ignore[union-attr]

    # A node gone quiet: its keys expire; a brief read shows its last data, greyed as stale.
    c.delete(wire.node_key("gpu03"), wire.brief_key("gpu03"), wire.digest_key("gpu03"))  # as their TTL would
    st = reader.read(ReadPlan(Level.BRIEFS))
    gone = st.node("gpu03")
    assert gone is not None and gone.state == "stale" and gone.snap is not None
    # Below brief_from nodes every read is full, whatever is asked.
    small = Reader(redis_server.client(), brief_from=100)
    small.read(ReadPlan(Level.BRIEFS))
    assert small.read(ReadPlan(Level.BRIEFS)).plan == ALL_FULL


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_app_reads_briefs_on_the_overview_and_full_data_for_detail(redis_server: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import clustertop.read.plan

    monkeypatch.setattr(clustertop.read.plan, "BRIEF_FROM_NODES", 0)  # briefs from the first node on
    procs = [b.gpu_proc(4242, "python", "bob", 5.5, pod="train-7f9c")]
    snaps = [b.node("gpu-01", gpus=[b.gpu(0, 90, procs=procs), b.gpu(1, 10)]),
             b.node("gpu-02", gpus=[b.gpu(0, 50, procs=[b.gpu_proc(77, "torch", "carol", 2.0)])])]
    b.publish(redis_server.client(), snaps)
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="brief"), redis_server.client)
    # Below the big overview's size (overview.BIG_W x BIG_H): there the busiest GPUs' few nodes are read in
    # full beside the digests (tests/dashboard/test_overview_big.py); this is the compact overview's read.
    async with app.run_test(size=(148, 44)) as pilot:
        await b.wait_reads(pilot)
        assert app.view.state.plan == ReadPlan(Level.DIGESTS)
        app.refresh_now()  # the first read took every payload of nodes it had not seen; then digests only
        await b.wait_until(pilot, lambda: app.view.state.plan.level is Level.DIGESTS, "digests on the overview")
        assert all(v.state == "up" and v.snap is None and v.digest is not None for v in app.view.state.nodes)
        assert app.view.state.totals.gpus_total == 3 and app.view.state.totals.gpus_busy == 3
        assert "gpu-01" in app.export_screenshot()

        # The GPU table: rows from briefs, the selected GPU's processes from its node in full (a brief
        # has no VRAM per process: it would read N/A). Asked for at once, "reading…" meanwhile.
        await pilot.press("3")
        assert isinstance(app.screen, GpusScreen)
        procs_table = app.screen.query_one("#procs-table", LiveTable)
        await b.wait_until(pilot, lambda: procs_table.row_count == 1, "process of gpu 0")
        assert app.view.state.plan == ReadPlan(Level.GPUS, frozenset({"gpu-01"}))
        assert [c.plain for c in procs_table.get_row_at(0)][:4] == ["4242", "bob", "pod:ml/train-7f9c", "5.5 GiB"]
        await pilot.press("down", "down")  # gpu-02's card: another node
        title = app.screen.query_one("#procs-title")
        await b.wait_until(pilot, lambda: app.view.state.plan == ReadPlan(Level.GPUS, frozenset({"gpu-02"})),
                           "gpu-02 in full")
        await b.wait_until(pilot, lambda: procs_table.row_count == 1 and "gpu-02 GPU 0: 1" in str(title.render()),
                           "gpu-02's process")
        assert [c.plain for c in procs_table.get_row_at(0)][:4] == ["77", "carol", "user:carol", "2.0 GiB"]

        # k on a node known only from its brief (its screen opened a moment ago): no picker built from
        # a brief's processes (no start times: nothing could be signalled safely); a read is asked for.
        from clustertop.dashboard.actions import actions_of

        await pilot.press("1")
        app.refresh_now()
        await b.wait_until(pilot, lambda: app.view.state.plan == ReadPlan(Level.DIGESTS), "digests on the overview")
        reads = app.finished_reads
        actions_of(app).ask_pick_process("gpu-01", "TERM")
        await pilot.pause()
        assert any("reading its processes" in n.message for n in app._notifications)
        await b.wait_until(pilot, lambda: app.finished_reads > reads, "the read it asked for")

        # A node's screen: digests for the header, that node in full.
        app.open_node("gpu-01")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        app.refresh_now()
        await b.wait_until(pilot, lambda: app.view.state.plan == ReadPlan(Level.DIGESTS, frozenset({"gpu-01"})),
                           "that node in full")
        v = app.view.state.node("gpu-01")
        assert v is not None and not v.brief and v.snap is not None and v.snap.gpus is not None
        assert v.snap.gpus[0].procs and v.snap.gpus[0].procs[0].used_mem_bytes is not None

        await pilot.press("1")
        app.refresh_now()
        await b.wait_until(pilot, lambda: app.view.state.plan == ReadPlan(Level.DIGESTS), "digests again")


@pytest.mark.anyio
async def test_detail_screen_over_briefs_with_the_store_down_says_so_and_does_not_spin(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import clustertop.read.plan

    monkeypatch.setattr(clustertop.read.plan, "BRIEF_FROM_NODES", 0)
    b.publish(redis_server.client(), [b.node("gpu-01", gpus=[b.gpu(0, 90)])])
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="brief"), redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        assert app.view.state.plan == ReadPlan(Level.DIGESTS)
        redis_server.stop()
        app.refresh_now()
        await b.wait_until(pilot, lambda: app.view.unreachable, "the store seen down")
        # The storage screen needs full snapshots the last read did not have: it asks for one read,
        # which fails; the header says why, and the next attempt waits for the refresh timer.
        reads = app.finished_reads
        await pilot.press("4")
        await pilot.pause(0.5)
        assert app.finished_reads - reads <= 2, app.finished_reads - reads
        assert "store unreachable" in app.screen.query_one(ClusterHeader).text
