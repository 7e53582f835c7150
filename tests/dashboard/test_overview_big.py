"""The overview on a big terminal (issue 16): at 200x60 and 384x108 it fills the screen with the cluster
trends (seeded from the nodes' history streams, not starting empty), the busiest GPUs and their owners,
and the alert timeline; at 80x24 it keeps the compact layout. Checked with the seed's 15 nodes and at
1,000 nodes, on the real app with data written through the real Publisher (the simulated cluster).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.dashboard.screens.overview import OverviewScreen
from clustertop.dashboard.widgets.busiest import BusiestGpus, busiest, owners
from clustertop.dashboard.widgets.plots import PlotPanel
from clustertop.dashboard.widgets.tiles import NodeTiles
from clustertop.read.reader import Reader
from clustertop.store import embedded
from clustertop.wire import schema
from tests.dashboard.test_dashboard_snapshots import app_for, wait_first_read
from tests.support import builders as b


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def sim_client(nodes: int | None = None, history_s: float = 3600) -> Any:
    """The demo cluster (seed 1, fixed node keys), an hour of history, one tick at b.NOW."""
    from clustertop.sim.simulate import SimCluster, make_publishers, prefill_history, publish

    _server, factory = embedded()
    client = factory()
    sim = SimCluster(seed=1, nodes=nodes)
    sim.keys = {h: b.node_key(h) for h in sim.hosts}
    pubs = make_publishers(sim, client, 600.0)
    prefill_history(client, sim, b.NOW, seconds=history_s)
    publish(client, sim, b.NOW, pubs)
    return factory


async def settled(pilot: Any) -> None:
    """First read, the trends seeded from the history streams, and their charts drawn."""
    assert isinstance(pilot.app.screen, OverviewScreen)
    await wait_first_read(pilot)
    await pilot.pause()


@pytest.mark.parametrize("size", [(200, 60), (384, 108)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_big_overview_15_nodes(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(sim_client()), terminal_size=size, run_before=settled)


def test_big_overview_1000_nodes(snap_compare: Any) -> None:
    assert snap_compare(app_for(sim_client(1000, history_s=300)), terminal_size=(384, 108), run_before=settled)


@pytest.mark.anyio
async def test_the_big_layout_fills_the_screen_and_the_trends_start_full() -> None:
    app = app_for(sim_client())
    async with app.run_test(size=(200, 60)) as pilot:
        await settled(pilot)
        screen = app.screen
        assert screen.big
        # The trends reach back an hour (the history streams), not to when the app started.
        assert screen.seed and screen.seed[0].ts <= b.NOW - 3000
        assert all(p.gpu_util_pct is not None and 0 <= p.gpu_util_pct <= 100 for p in screen.seed[-10:])
        util = screen.query_one("#ov-util", PlotPanel)
        assert "60 min ago" in str(util.render()) and "fills while" not in str(util.render())
        # Every part has rows on screen; nothing is left empty below the tiles.
        tiles = screen.query_one(NodeTiles)
        body = [tiles, screen.query_one("#big"), screen.query_one("#alerts")]
        assert sum(w.outer_size.height for w in body) >= 60 - 2 - 1 - 1  # header 2, footer 1, slack 1
        assert tiles.outer_size.height <= 30 and tiles.max_scroll_y == 0  # all 15 tiles, no scrolling
        # The busiest GPUs, each with its owner from the node's own report.
        panel = screen.query_one(BusiestGpus)
        text = str(panel.render())
        assert text.startswith("Busiest GPUs")
        lines = text.splitlines()[1:]
        assert len(lines) == 10  # the seed cluster has 10 GPUs, all shown
        assert all("N/A" not in ln.split("%")[-1] for ln in lines[:3]), lines[:3]


@pytest.mark.anyio
async def test_80x24_keeps_the_compact_layout() -> None:
    app = app_for(sim_client(history_s=60))
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        screen = app.screen
        assert not screen.big and not screen.query_one("#big").display
        assert screen.query_one("#sparks").display


@pytest.mark.anyio
async def test_1000_nodes_owners_come_from_the_busiest_nodes_snapshots() -> None:
    app = app_for(sim_client(1000, history_s=60))
    async with app.run_test(size=(200, 60)) as pilot:
        await settled(pilot)
        screen = app.screen
        # The first read took digests only (1,000 nodes); the overview then asks for the busiest nodes' snapshots.
        assert screen.read_plan().full_hosts and len(screen.read_plan().full_hosts) <= 40
        app.refresh_now()
        await b.wait_fresh(pilot)
        await pilot.pause()
        text = str(screen.query_one(BusiestGpus).render())
        rows = text.splitlines()[1:]
        assert rows and sum("N/A" not in r for r in rows) >= len(rows) // 2, rows


def test_busiest_ranks_known_values_and_keeps_hostile_text_inert() -> None:
    _server, factory = embedded()
    client = factory()
    hot = b.tower("gpu-01", (97, 12), ts=b.NOW)
    assert hot.gpus is not None
    hot.gpus[0].procs = [b.gpu_proc(11, "python", "alice", 9.0, pod="train\u202eevil\x1b[2J")]
    odd = b.tower("gpu-02", (50, 50), ts=b.NOW)
    assert odd.gpus is not None
    odd.gpus[0].util_pct = math.nan  # type: ignore[assignment]
    odd.gpus[1].util_pct = 2**64 - 1  # the largest a msgpack uint carries
    b.publish(client, [hot, odd])
    state = Reader(client, clock=lambda: b.NOW + 0.5).read()
    rows = busiest(state.nodes, 10)
    assert [(r.host, r.index) for r in rows][:2] == [("gpu-01", 0), ("gpu-01", 1)]
    assert all(r.util_pct <= 100 for r in rows)  # NaN and 2**64 are not ranked as busy
    words = owners(rows[0].gpu)
    assert "\x1b" not in words and "\u202e" not in words and "train" in words
    assert owners(None) == "N/A"
    assert busiest(state.nodes, 0) == [] and busiest([], 5) == []


def test_owner_words_name_pods_and_users() -> None:
    g = schema.Gpu(index=0, procs=[b.gpu_proc(1, user="bob", mem_gib=1.0),
                                   b.gpu_proc(2, user="root", mem_gib=5.0, pod="train-x-0")])
    words = owners(g)
    assert words.startswith("pod ") and "train-x-0" in words and words.endswith("bob")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_trend_charts_are_made_between_refreshes_and_shown_by_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The charts (plotext, ~28 ms at 384x108) are off the refresh that finds them due: made PLOT_AFTER_S later in
    idle time, shown by the next refresh; with no refresh by PLOT_EVERY_S after they were made, shown then."""
    import clustertop.dashboard.screens.overview as ov

    app = app_for(sim_client())
    async with app.run_test(size=(200, 60)) as pilot:
        await settled(pilot)
        screen = app.screen
        util, power = screen.query_one("#ov-util", PlotPanel), screen.query_one("#ov-power", PlotPanel)
        drawn = util.draws, power.draws
        assert all(drawn)  # the seed read's charts, drawn at once (idle time)
        screen._last_plot = -1e18  # due (the app's clock is frozen: the data's clock never moves 5 s on)
        reads = app.finished_reads
        app.refresh_now()
        await b.wait_reads(pilot, reads + 1)
        assert (util.draws, power.draws) == drawn  # nothing rendered by the refresh that found them due
        await b.wait_until(pilot, lambda: util._ready is not None and power._ready is not None, "the charts made")
        assert (util.draws, power.draws) == drawn  # made, not shown: no repaint of their own between refreshes
        made = util._ready[2]
        assert "60 min ago" in made and "GPU util" in made
        app.refresh_now()
        await b.wait_reads(pilot, reads + 2)
        assert (util.draws, power.draws) == (drawn[0] + 1, drawn[1] + 1)
        assert util._ready is None and str(util.render()) == made
        # No refresh comes (a long refresh_s): the charts made are shown PLOT_EVERY_S after.
        monkeypatch.setattr(ov, "PLOT_EVERY_S", 0.3)
        screen._last_plot = -1e18
        app.refresh_now()
        await b.wait_reads(pilot, reads + 3)
        await b.wait_until(pilot, lambda: util.draws == drawn[0] + 2, "the charts shown without a refresh")
        assert util._ready is None
