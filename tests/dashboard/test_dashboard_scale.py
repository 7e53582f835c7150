"""The dashboard at the benchmark's scale: 1,000 simulated nodes x 8 GPUs in a REAL redis-server.

Correctness only (speed belongs to ``bench/dashboard_refresh.py``): the tables hold every row
while cells are built for the rows in view only; sorting, the cursor, the filter and drill-down
work over the whole list; the selection stays on its GPU across refreshes. Also: the one-pass
``summarize`` and the leaner ``alerts`` give exactly what the plain field-by-field versions give.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.gpus import GpusScreen
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.nodes import NodesScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.header import ClusterHeader
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.read.cluster import Alert, Totals, alerts, summarize
from clustertop.read.reader import NodeView, Reader
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from clustertop.wire import schema
from clustertop.wire.digest import GPU_BUSY_PCT, GPU_HOT_C
from tests.support import builders as b

NODES, GPUS = 1000, 8
ROWS = NODES * GPUS


@pytest.fixture
def sim_store(redis_server: Any) -> Any:
    """1,000 towers x 8 GPUs published once through the real publisher; returns (client factory, sim)."""
    client = redis_server.client()
    client.flushdb()
    sim = SimCluster(seed=7, nodes=NODES, gpus_per_node=GPUS)
    pubs = make_publishers(sim, client, 600.0)  # long TTL: nothing expires during the test
    publish(client, sim, b.NOW, pubs)
    return redis_server.client, sim, pubs


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_for(factory: Any) -> Any:
    return make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="scale"), factory)


def busiest_first(app: Any) -> list[float | None]:
    utils = [g.util_pct for v in app.view.state.nodes for g in v.snap.gpus if not g.lost]
    return sorted(utils, key=lambda u: -1 if u is None else u, reverse=True)


@pytest.mark.anyio
async def test_gpus_screen_8000_rows(sim_store: Any) -> None:
    factory, sim, pubs = sim_store
    app = app_for(factory)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("3")
        assert isinstance(app.screen, GpusScreen)
        table = app.screen.query_one("#gpus-table", LiveTable)
        await b.wait_until(pilot, lambda: table.row_count == ROWS, "8,000 GPU rows")
        assert "8000 GPUs" in app.screen.query_one(ClusterHeader).text
        # Virtualised: every row is there to sort and move over, cells exist only for rows seen.
        assert table.cells_built < 200
        title = str(app.screen.query_one("#procs-title").render())
        assert f"row 1 of {ROWS}" in title

        # The cursor reaches the last GPU (end), pages, and comes back (home).
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == ROWS - 1 and table.cursor_key == f"gpu{NODES:04d}\x1f{GPUS - 1}"
        assert f"row {ROWS} of {ROWS}" in str(app.screen.query_one("#procs-title").render())
        assert f"gpu{NODES:04d}" in app.export_screenshot().replace("&#160;", " ")  # drawn, not just counted
        await pilot.press("home", "pagedown")
        assert 0 < table.cursor_row < ROWS - 1
        await pilot.press("home")
        assert table.cursor_row == 0

        # Sort by utilisation (node, #, name, util: the 4th), reversed: the busiest GPU first.
        await pilot.press("s", "s", "s", "s", "S")
        assert table.sort_column == "util" and table.sort_reverse
        _v0, g0 = table.item_at(0)
        assert g0.util_pct == busiest_first(app)[0]
        shown = [table.get_row_at(i)[3].plain for i in range(3)]
        assert shown[0].strip().endswith(f"{g0.util_pct} %")

        # The selection follows its GPU across a refresh that changes every value (and the order).
        await pilot.press("down", "down", "down")
        picked = table.cursor_key
        assert picked is not None
        built = table.cells_built
        publish(factory(), sim, b.NOW + 1, pubs)
        app.refresh_now()
        await b.wait_fresh(pilot)
        assert table.cursor_key == picked and table.keys[table.cursor_row] == picked
        assert 0 < table.cells_built - built <= table.size.height  # a refresh builds the rows in view only
        host, index = picked.split("\x1f")
        assert f"processes on {host} GPU {index}" in str(app.screen.query_one("#procs-title").render())
        assert table.get_row_at(0)[3].plain.strip().endswith(f"{busiest_first(app)[0]} %")  # re-sorted

        # The filter narrows 8,000 rows to one node's 8 GPUs; Esc clears it and stays here.
        await pilot.press("slash", *"gpu0042")
        await b.wait_until(pilot, lambda: table.row_count == GPUS, "one node's GPUs")
        assert all(k.startswith("gpu0042\x1f") for k in table.keys)
        await pilot.press("escape")
        await b.wait_until(pilot, lambda: table.row_count == ROWS, "filter cleared")
        assert isinstance(app.screen, GpusScreen)


@pytest.mark.anyio
async def test_nodes_screen_1000_rows_sort_end_and_enter(sim_store: Any) -> None:
    factory, _sim, _pubs = sim_store
    app = app_for(factory)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("2")
        assert isinstance(app.screen, NodesScreen)
        table = app.screen.query_one("#nodes-table", LiveTable)
        await b.wait_until(pilot, lambda: table.row_count == NODES, "1,000 node rows")
        assert table.cells_built < 100
        # Sort by CPU (host, state, age, trust, cpu), reversed: the busiest node first, N/A last.
        await pilot.press("s", "s", "s", "s", "s", "S")
        cpu = {v.host: v.snap.system.cpu.util_pct for v in app.view.state.nodes}
        order = [cpu[h] for h in table.keys]
        assert order == sorted(order, reverse=True)
        assert table.get_row_at(0)[0].plain == table.keys[0]
        # The last row is reachable and Enter opens exactly that node.
        await pilot.press("end")
        last = table.keys[-1]
        assert table.cursor_key == last
        await pilot.press("enter")
        assert isinstance(app.screen, NodeScreen) and app.screen.host == last


# ---------------------------------------------------------------------------------------------
# summarize and alerts: the fast versions against the plain ones, on 1,000 nodes with trouble
# ---------------------------------------------------------------------------------------------


def plain_summarize(nodes: list[NodeView]) -> Totals:
    """The field-by-field fold summarize replaced (its cluster-payload part is unchanged)."""

    def add(a: Any, x: Any) -> Any:
        return a if x is None else (x if a is None else a + x)

    t = Totals(nodes_total=len(nodes))
    weighted, cores, util_sum, util_n = 0.0, 0, 0, 0
    for n in nodes:
        if n.state == "up":
            t.nodes_up += 1
        elif n.state == "stale":
            t.nodes_stale += 1
        elif n.state == "bad":
            t.nodes_bad += 1
        else:
            t.nodes_down += 1
        if n.state != "up" or n.snap is None:
            continue
        s = n.snap.system
        if s is not None:
            if s.cpu_count is not None:
                t.cpu_cores = add(t.cpu_cores, s.cpu_count)
                if s.cpu is not None and s.cpu.util_pct is not None:
                    weighted += s.cpu.util_pct * s.cpu_count
                    cores += s.cpu_count
                    t.cpu_nodes += 1
            t.load1 = add(t.load1, s.load1)
            if s.mem is not None and s.mem.total_bytes is not None:
                t.mem_total_bytes = add(t.mem_total_bytes, s.mem.total_bytes)
                t.mem_used_bytes = add(t.mem_used_bytes, s.mem.used_bytes)
                t.mem_nodes += 1
            for nic in s.nics or ():
                if nic.kind in (None, "physical", "bond"):
                    t.net_rx_bytes_s = add(t.net_rx_bytes_s, nic.rx_bytes_s)
                    t.net_tx_bytes_s = add(t.net_tx_bytes_s, nic.tx_bytes_s)
        if n.snap.gpus is not None:
            t.gpu_nodes += 1
            t.gpus_total = add(t.gpus_total, len(n.snap.gpus))
            t.gpus_busy = t.gpus_busy or 0
            t.gpu_procs = t.gpu_procs or 0
            for g in n.snap.gpus:
                if g.lost:
                    t.gpus_lost += 1
                    continue
                if g.name:
                    t.models[g.name] = t.models.get(g.name, 0) + 1
                if g.util_pct is not None:
                    util_sum += g.util_pct
                    util_n += 1
                    t.gpus_busy += g.util_pct >= GPU_BUSY_PCT
                t.vram_total_bytes = add(t.vram_total_bytes, g.mem_total_bytes)
                t.vram_used_bytes = add(t.vram_used_bytes, g.mem_used_bytes)
                t.power_mw = add(t.power_mw, g.power_mw)
                t.power_limit_mw = add(t.power_limit_mw, g.power_limit_mw)
                t.cuda_cores = add(t.cuda_cores, g.cuda_cores)
                t.gpu_procs += len(g.procs or ())
        if n.snap.bonds is not None:
            t.bonds_total = add(t.bonds_total, len(n.snap.bonds))
            t.bonds_degraded = add(t.bonds_degraded, sum(1 for x in n.snap.bonds if x.degraded))
    if t.cpu_nodes and t.cpu_cores:
        t.cpu_util_pct = weighted / cores if cores else None
    if util_n:
        t.gpu_util_pct = util_sum / util_n
    return t


def plain_gpu_alerts(nodes: list[NodeView]) -> list[tuple[str, str | None, str, str]]:
    """The per-GPU and per-collector checks as they were written before (every GPU, every check)."""
    out = []
    for n in nodes:
        if n.state in ("down", "stale") or n.snap is None:
            continue
        for name, st in sorted(n.snap.collectors.items()):
            if not st.ok and st.error:
                out.append(("warning", n.host, name, f"collector {name} failing: {st.error}"))
        for g in n.snap.gpus or ():
            if g.lost:
                out.append(("critical", n.host, f"gpu{g.index}", f"GPU {g.index} lost: {g.error or 'fell off the bus'}"))
                continue
            hot = g.temp_slowdown_c - 5 if g.temp_slowdown_c else GPU_HOT_C
            if g.temp_c is not None and g.temp_c >= hot:
                out.append(("warning", n.host, f"gpu{g.index}", f"GPU {g.index} hot: {g.temp_c} °C"))
            if g.ecc_uncorrected:
                out.append(("critical", n.host, f"gpu{g.index}",
                            f"GPU {g.index}: {g.ecc_uncorrected} uncorrected ECC errors"))
            if g.throttle_reasons and any(r in ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
                                          for r in g.throttle_reasons):
                out.append(("warning", n.host, f"gpu{g.index}",
                            f"GPU {g.index} throttled: {', '.join(g.throttle_reasons)}"))
    return out


def troubled_cluster(redis_server: Any) -> list[NodeView]:
    """1,000 nodes read back from Redis, then given every kind of trouble the folds look at."""
    client = redis_server.client()
    client.flushdb()
    sim = SimCluster(seed=3, nodes=NODES, gpus_per_node=GPUS)
    publish(client, sim, b.NOW, make_publishers(sim, client, 600.0))
    nodes = Reader(client, clock=lambda: b.NOW + 0.5).read().nodes
    rng = random.Random(11)
    for v in nodes:
        assert v.snap is not None
        v.state = rng.choice(["up"] * 12 + ["stale", "down", "bad"])
        for g in v.snap.gpus or ():
            b.trouble_gpu(g, rng.random())
        if rng.random() < 0.05:
            v.snap.collectors["zfs"] = schema.CollectorStatus(ok=False, error="pool unavailable")
            v.snap.collectors["bonds"] = schema.CollectorStatus(ok=False, error="no sysfs")
        if rng.random() < 0.03 and v.snap.system is not None:
            v.snap.system.cpu = None
        if rng.random() < 0.03:
            v.snap.gpus = None
        v.digest = None  # folded again from the changed snapshot (clustertop.wire.digest.view_digest)
    return nodes


def test_summarize_and_alerts_match_the_plain_folds_at_scale(redis_server: Any) -> None:
    nodes = troubled_cluster(redis_server)
    fast = summarize(nodes, {})
    # summarize adds the nodes bucket by bucket (read.cluster: so the bucket summaries' merge equals it to the
    # bit), so a float sum may differ from this read-order fold in its last bits; every count is exact.
    got, want = dataclasses.asdict(fast), dataclasses.asdict(plain_summarize(nodes))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k
    assert fast.gpus_lost > 0 and fast.nodes_down > 0 and fast.gpu_util_pct is not None  # the data has trouble

    got = [a for a in alerts(nodes, {}) if a.source in ("gpu", "collector")]
    want = plain_gpu_alerts(nodes)
    assert len(got) == len(want) > 100
    order = {"critical": 0, "warning": 1, "info": 2}
    want.sort(key=lambda w: (order[w[0]], w[1] or "", w[2]))  # the same stable sort alerts() ends with
    assert [(a.severity, a.node, a.subject, a.message) for a in got] == want
    assert all(isinstance(a, Alert) for a in got)
