"""Pilot tests of the dashboard against a REAL redis-server and the embedded store.

What a person sees: the overview's totals for known data, every screen, the filter, drill-down,
help, the command palette, theme switching and quit.
"""

from __future__ import annotations

from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.gpus import GpusScreen
from clustertop.dashboard.screens.help import HelpScreen
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.nodes import NodesScreen
from clustertop.dashboard.screens.overview import OverviewScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.header import ClusterHeader
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.dashboard.widgets.tiles import NodeTiles
from clustertop.store import embedded
from tests.support import builders as b

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture(params=["redis-server", "embedded"])
def store(request: pytest.FixtureRequest) -> Any:
    """A client factory for a real redis-server, or for the embedded (fakeredis) store."""
    if request.param == "redis-server":
        srv = request.getfixturevalue("redis_server")
        return srv.client
    _server, factory = embedded()
    return factory


def app_for(factory: Any, **kw: Any) -> Any:
    settings = Settings(frozen_time=b.NOW + 0.5, refresh_s=kw.pop("refresh_s", 0.2), source_label="test", **kw)
    return make_app(settings, factory)


def header_text(app: Any) -> str:
    return app.screen.query_one(ClusterHeader).text


async def test_overview_shows_cluster_totals(store: Any) -> None:
    b.publish(store(), b.demo_cluster(), cluster=[b.ceph("HEALTH_WARN"), b.queues(41)])
    app = app_for(store)
    async with app.run_test(size=(200, 50)) as pilot:
        await b.wait_reads(pilot)
        text = header_text(app)
        # 5 towers x 2 GPUs: utils (90-10i, 5i) -> 9 of 10 at or above 10 % (the 5 % card is idle);
        # mean util 37.5 %; power sum(50 + 2u) = 1250 W; VRAM 10 x 4 GiB of 10 x 11 GiB.
        assert "8/8 nodes up" in text
        assert "10 GPUs 9 busy" in text
        assert "38 % GPU util" in text
        assert "40/110 GiB VRAM" in text
        assert "1.2 kW" in text
        # RAM: 5 x 128 GiB + 3 x 4 GiB = 652 GiB; cores 5 x 32 + 3 x 4 = 172.
        assert "652 GiB RAM" in text and "172 cores" in text
        assert "Ceph HEALTH_WARN" in text and "41 queued" in text
        tiles = app.screen.query_one(NodeTiles)
        assert [t.host for t in tiles.tiles] == [s.host for s in sorted(b.demo_cluster(), key=lambda s: s.host)]


async def test_navigation_drill_down_help_and_quit(store: Any) -> None:
    b.publish(store(), b.demo_cluster(), hist=12)
    app = app_for(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("2")
        assert isinstance(app.screen, NodesScreen)
        await b.wait_until(pilot, lambda: app.screen.query_one(LiveTable).row_count == 8, "nodes rows")
        await pilot.press("3")
        assert isinstance(app.screen, GpusScreen)
        await b.wait_until(pilot, lambda: app.screen.query_one("#gpus-table", LiveTable).row_count == 10, "gpu rows")
        await pilot.press("1")
        assert isinstance(app.screen, OverviewScreen)
        # Tiles are sorted by host: arm-01 arm-02 arm-03 gpu-01 ...; right x3 -> gpu-01.
        await pilot.press("right", "right", "right", "enter")
        assert isinstance(app.screen, NodeScreen) and app.screen.host == "gpu-01"
        await b.wait_until(pilot, lambda: len(app.screen.points) == 13, "history read on drill-down")
        assert "GPU util %" in str(app.screen.query_one("#plots").render())
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("q")
    assert app.return_value == 0


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_node_screen_sections_are_drawn_whole(size: tuple[int, int]) -> None:
    """Every section of a node's screen gets the rows its text takes at its width: a grid row of
    height auto once lost each section's last line (its margin was taken out of it), so an ARM
    board's "GPUs" had no "none" under it and a 6-core board showed 3 cores."""
    from textual.widgets import Static

    _server, factory = embedded()
    b.publish(factory(), b.demo_cluster(), hist=12)
    app = app_for(factory)
    async with app.run_test(size=size) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen) and len(app.screen.points) == 13
                           and "none" in app.screen.query_one("#gpus", Static).visual.plain, "the node's sections")
        await pilot.pause()
        for sec in app.screen.query(".section").results(Static):
            if not sec.display:  # a section with nothing to say (no container engine on this node) is hidden
                continue
            visual = sec.visual
            rows = len(visual.wrap(sec.content_region.width)) if hasattr(visual, "wrap") else None
            assert rows is not None and sec.region.height >= rows, (sec.id, sec.region, visual.plain)
        # The plots share the width, side by side where each keeps 60 columns: plotext, finding no
        # terminal here, would clip each to 80 columns.
        lines = app.screen.query_one("#plots", Static).visual.plain.splitlines()
        assert max(len(line) for line in lines) >= size[0] - 8
        across = 2 if size[0] >= 200 else 1  # arm-01: CPU and network, no GPU plot
        assert max(line.count("┌") for line in lines) == across, lines


async def test_nodes_filter_sort_and_enter(store: Any) -> None:
    snaps = b.demo_cluster()
    b.publish(store(), snaps)
    app = app_for(store)
    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("2")
        table = app.screen.query_one(LiveTable)
        await b.wait_until(pilot, lambda: table.row_count == 8, "8 rows")
        await pilot.press("slash", *"gpu-0")
        await b.wait_until(pilot, lambda: table.row_count == 5, "filtered to the 5 towers")
        await pilot.press(*"3")
        await b.wait_until(pilot, lambda: table.row_count == 1, "filtered to gpu-03")
        await pilot.press("escape")  # clears the filter, stays on the screen
        assert isinstance(app.screen, NodesScreen)
        await b.wait_until(pilot, lambda: table.row_count == 8, "filter cleared")
        # Sort by CPU (5th in the cycle: host, state, age, trust, cpu), then reverse.
        await pilot.press("s", "s", "s", "s", "s")
        assert table.sort_column == "cpu"
        cpu_by_host = {s.host: s.system.cpu.util_pct for s in snaps}
        order = [table.get_row_at(i)[0].plain for i in range(table.row_count)]
        assert [cpu_by_host[h] for h in order] == sorted(cpu_by_host.values())
        await pilot.press("S")
        order = [table.get_row_at(i)[0].plain for i in range(table.row_count)]
        assert [cpu_by_host[h] for h in order] == sorted(cpu_by_host.values(), reverse=True)
        table.move_cursor(row=0)
        await pilot.press("enter")
        assert isinstance(app.screen, NodeScreen) and app.screen.host == order[0] == "gpu-05"


async def test_command_palette_goes_to_node_and_switches_theme(store: Any) -> None:
    b.publish(store(), b.demo_cluster())
    app = app_for(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"go to node gpu-04")
        from textual.command import CommandList

        def found() -> bool:  # the search runs in the background: wait for its hit, not a fixed pause
            lists = app.screen.query(CommandList)
            return bool(lists) and lists.first().option_count > 0 and \
                "gpu-04" in str(lists.first().get_option_at_index(0).prompt)

        await b.wait_until(pilot, found, "the palette's hit")
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen), "node screen from palette")
        assert app.screen.host == "gpu-04"
        assert app.theme == "dark"
        ok_dark = app.palette["ok"]
        await pilot.press("escape", "t")
        assert app.theme == "light"
        assert app.palette["ok"] != ok_dark  # widgets took the new theme's severity colours


async def test_gpus_screen_shows_processes_of_selected_gpu(store: Any) -> None:
    procs = [b.gpu_proc(4242, "python", "bob", 5.5, pod="train-7f9c")]
    snaps = [b.node("gpu-01", gpus=[b.gpu(0, 90, procs=procs), b.gpu(1, None, None, temp=None, power_w=None)])]
    b.publish(store(), snaps)
    app = app_for(store)
    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("3")
        procs_table = app.screen.query_one("#procs-table", LiveTable)
        await b.wait_until(pilot, lambda: procs_table.row_count == 1, "process of gpu 0")
        row = [c.plain for c in procs_table.get_row_at(0)]
        assert row[:4] == ["4242", "bob", "pod:ml/train-7f9c", "5.5 GiB"]
        gpus_table = app.screen.query_one("#gpus-table", LiveTable)
        unknown = [c.plain for c in gpus_table.get_row("gpu-01\x1f1")]
        # A GPU that reports nothing shows N/A everywhere, never 0.
        assert unknown[3].strip().endswith("N/A") and unknown[5] == "N/A" and unknown[6] == "N/A"
        await pilot.press("down")
        await b.wait_until(pilot, lambda: procs_table.row_count == 0, "no processes on gpu 1")
        title = str(app.screen.query_one("#procs-title").render())
        assert "processes on gpu-01 GPU 1: none · row 2 of " in title, title  # none, not "0"


async def test_read_only_setting_and_wall_imply_read_only() -> None:
    _server, factory = embedded()
    app = make_app(Settings(wall=True), factory)
    assert app.settings.effective_read_only
    from clustertop.dashboard import app as app_module

    app_module.WRITE_ACTIONS.add("kill_process")
    try:
        assert app.check_action("kill_process", ()) is False
        assert app.check_action("quit", ()) is True
    finally:
        app_module.WRITE_ACTIONS.discard("kill_process")


async def test_narrow_terminal_folds_whole_columns_instead_of_cutting_the_table(store: Any) -> None:
    """At 80 columns the nodes and GPU tables drop their least wanted columns (in their FOLD order)
    so what is left fits the screen; wide, every column is back. Sorting cycles only what is shown."""
    from clustertop.dashboard.screens.gpus import GPU_FOLD
    from clustertop.dashboard.screens.nodes import COLUMNS, FOLD

    b.publish(store(), b.demo_cluster())
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("2")
        table = app.screen.query_one(LiveTable)
        await b.wait_until(pilot, lambda: table.row_count == 8, "nodes rows")
        await pilot.pause()
        shown = table.shown_columns
        folded = [k for k, _ in COLUMNS if k not in shown]
        assert folded and set(folded) == set(FOLD[:len(folded)])  # the first of FOLD, nothing else
        assert table.virtual_size.width <= table.scrollable_content_region.width  # no sideways scroll
        header = table.render_line(0).text
        for key, label in COLUMNS:
            assert (label in header) == (key in shown)
        for _ in range(len(shown) + 1):  # one full cycle of s: only columns on screen
            await pilot.press("s")
            assert table.sort_column in shown
        await pilot.press("3")
        gpus = app.screen.query_one("#gpus-table", LiveTable)
        await b.wait_until(pilot, lambda: gpus.row_count == 10, "gpu rows")
        await pilot.pause()
        assert "name" not in gpus.shown_columns and set(gpus.column_keys) - set(gpus.shown_columns) <= set(GPU_FOLD)
        assert gpus.virtual_size.width <= gpus.scrollable_content_region.width
        n = len(gpus.column_keys) - len(gpus.shown_columns)
        assert gpus.render_line(0).text.rstrip().endswith(f"+{n} more")
        await pilot.resize_terminal(220, 50)
        await pilot.pause()
        await b.wait_until(pilot, lambda: gpus.shown_columns == gpus.column_keys, "every column back when wide")
        assert "more" not in gpus.render_line(0).text


async def test_tiles_grow_when_every_node_fits_and_shrink_when_not(store: Any) -> None:
    """A small cluster on a big terminal gets 8-line tiles (load, network, disks, GPU heat and power);
    when the grid would have to scroll, 4-line tiles again."""
    from clustertop.dashboard.widgets.tiles import TILE_H, TILE_H_ROOMY

    b.publish(store(), b.demo_cluster())
    app = app_for(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        tiles = app.screen.query_one(NodeTiles)
        await pilot.pause()
        assert tiles.tile_h == TILE_H_ROOMY
        gpu = next(i for i, v in enumerate(tiles.views) if v.host == "gpu-01")
        tiles._rerender(gpu)
        text = ["".join(s.text for s in line) for line in tiles.tiles[gpu].lines]
        assert len(text) == TILE_H_ROOMY and all(len(t) == 24 for t in text)
        assert text[4].startswith("load ") and text[5].startswith("net") and text[6].startswith("disk")
        assert text[7].startswith("hot 60 °C") and text[7].rstrip().endswith("W")
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await b.wait_until(pilot, lambda: tiles.tile_h == TILE_H, "compact tiles when the grid scrolls")
        tiles._rerender(gpu)
        assert len(tiles.tiles[gpu].lines) == TILE_H


async def test_overview_repaints_only_the_tile_lines_that_changed(store: Any) -> None:
    """Every node publishes every second, but most tiles look the same as before: only the lines
    whose cells differ are drawn again (the rest of the grid stays as Textual has it)."""
    b.publish(store(), [b.tower(f"gpu-{i:02d}", cpu=30.0 + i) for i in range(12)])
    app = app_for(store)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        tiles = app.screen.query_one(NodeTiles)
        await pilot.pause()
        drawn: list[int] = []
        render_line = tiles.render_line
        tiles.render_line = lambda y: (drawn.append(y), render_line(y))[1]  # type: ignore[method-assign]
        # A new tick from every node (new seq), and one of them busier: its CPU and load lines change.
        b.publish(store(), [b.tower(f"gpu-{i:02d}", seq=2, cpu=87.0 if i == 3 else 30.0 + i) for i in range(12)])
        app.refresh_now()
        await b.wait_fresh(pilot)
        await pilot.pause()
        assert tiles.views[3].snap is not None and tiles.views[3].snap.seq == 2
        assert 1 <= len(set(drawn)) <= 2, drawn  # one tile's CPU and load lines, not the grid's 40 lines
        assert " 87 %" in app.export_screenshot().replace("&#160;", " ")
        # A node joining moves tiles: then the whole grid is drawn again.
        drawn.clear()
        b.publish(store(), [b.tower("gpu-00a", seq=1)])
        app.refresh_now()
        await b.wait_fresh(pilot)
        await pilot.pause()
        assert len(set(drawn)) > 20 and "gpu-00a" in app.export_screenshot()


async def test_tiles_drawn_at_another_height_are_redrawn_whole_not_compared(store: Any) -> None:
    """A read landing between a resize (new tile height) and its repaint: lines of different
    heights are not compared line by line; the grid is drawn again."""
    b.publish(store(), [b.tower(f"gpu-{i:02d}") for i in range(4)])
    app = app_for(store)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        tiles = app.screen.query_one(NodeTiles)
        await pilot.pause()
        t = tiles.tiles[0]
        assert t.lines
        t.lines, t.sig = t.lines[:3], ()  # as if drawn at another height, and due for new data
        assert tiles.set_nodes(list(tiles.views)) == 1  # no ValueError from a strict zip
        assert len(tiles.tiles[0].lines) == tiles.tile_h


async def test_header_uses_short_words_where_the_totals_would_take_three_rows() -> None:
    """80 columns, a cluster with trouble: the one-machine line keeps to two rows (plus status)
    in short words, the trouble still in words; a wide terminal keeps the long ones."""
    from textual.app import App, ComposeResult

    from clustertop.dashboard.widgets.header import ClusterHeader, status_line, totals_line
    from clustertop.read.cluster import Totals

    t = Totals(nodes_total=15, nodes_up=14, gpus_total=12, gpus_busy=7, gpus_lost=1, gpu_util_pct=88.0,
               vram_used_bytes=72 << 30, vram_total_bytes=110 << 30, power_mw=1_900_000, mem_total_bytes=448 << 30,
               mem_used_bytes=200 << 30, cpu_cores=96, cpu_util_pct=30.0, ceph_status="HEALTH_WARN",
               bonds_total=16, bonds_degraded=1, tasks_queued=41)

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield ClusterHeader()

    for width, words in ((80, ["14/15 up", "1 lost", "Ceph WARN", "1 bond degraded", "41 queued"]),
                         (200, ["14/15 nodes up", "Ceph HEALTH_WARN", "bonds 15 ok / 1 degraded"])):
        app = One()
        async with app.run_test(size=(width, 24)) as pilot:
            header = app.query_one(ClusterHeader)
            header.show(t, status_line(t, "", 1.0, None, None, 2.0, "overview"))
            await pilot.pause()
            for w in words:
                assert w in header.text, (width, w, header.text)
            assert header.size.height <= 3, header.size.height
            # Every row is whole facts: a figure never ends a row with its unit on the next.
            facts = {f.plain for f in totals_line(t) + totals_line(t, compact=True)}
            facts |= {f.plain for f in status_line(t, "", 1.0, None, None, 2.0, "overview")}
            rows = [header.render_line(y).text.strip() for y in range(header.size.height)]  # as drawn
            assert rows == header.text.splitlines()
            for row in rows:
                assert all(f in facts for f in row.split(" · ")), (width, row)
            if width == 200:  # a terminal made narrow: the header chooses again
                await pilot.resize_terminal(80, 24)
                await pilot.pause()
                assert "1 bond degraded" in header.text and header.size.height <= 3
