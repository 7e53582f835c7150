"""What the screens build per refresh at scale gives what the plain full build gives.

Speed is ``bench/dashboard_refresh.py``'s; these check that the cheaper ways of drawing are the same
drawing: the busiest GPUs kept in a heap rank exactly as a sort of every card does (absurd figures
left out), the heat grid drawn line by line repaints only the lines whose tiles changed and shows
what its cells say; the GPU table's rows (keys, records, sort values) are the plain build's for every
filter and column; and text whose height did not change (a GPU's health lines, a section of figures, the
energy sections, an alert feed read that says the same) no longer lays the screen out or redraws it every
refresh.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.app import make_app
from clustertop.dashboard.messages import AlertFeedRead
from clustertop.dashboard.screens.energy import EnergyScreen
from clustertop.dashboard.screens.gpus import (
    SORT_VALUES,
    GpusScreen,
    gpu_key,
    gpu_rows,
    sort_value,
    sort_values,
)
from clustertop.dashboard.screens.gpus import matches as gpu_matches
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.busiest import busiest
from clustertop.dashboard.widgets.heatgrid import HeatGrid, cells_of, level
from clustertop.dashboard.widgets.palette import Palette
from clustertop.dashboard.widgets.steady import steady_update
from clustertop.dashboard.widgets.table import sorted_order
from clustertop.read.model import view_digest
from clustertop.read.reader import NodeView
from clustertop.store.resp import Client
from clustertop.wire.digest import digest
from tests.dashboard.test_dashboard_energy import text_of, write_ledger
from tests.support import builders as b
from tests.wire.test_brief import troubled


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def troubled_views() -> list[NodeView]:
    """A troubled simulated cluster (lost, hot, ECC GPUs, silent nodes), every fourth node not up, and
    digests carrying the figures a hostile node can write: -1, 2**64 - 1, None."""
    snaps, _ = troubled(seed=11, nodes=150)
    out = []
    for i, s in enumerate(snaps):
        d = digest(s)
        if d.gpu_util_pct and i % 7 == 3:
            d.gpu_util_pct[0] = 2**64 - 1
            d.gpu_util_pct[-1] = -1
        if d.gpu_util_pct and i % 11 == 5:
            d.gpu_util_pct[1] = None
        out.append(NodeView(host=s.host, state="up" if i % 4 else "stale", age_s=0.5, snap=s, digest=d))
    return out


def busiest_by_sort(nodes: list[NodeView], limit: int) -> list[tuple[str, int, float]]:
    """The ranking as it was written first: every card, ``fmt.known``, one sort."""
    ranked = []
    for v in nodes:
        if v.state != "up":
            continue
        d = view_digest(v)
        for i, u in enumerate((d.gpu_util_pct if d is not None else None) or ()):
            known = fmt.known(u, 0, fmt.MAX_PCT)
            if known is not None:
                ranked.append((-known, v.host, i))
    ranked.sort()
    return [(host, i, -neg) for neg, host, i in ranked[:max(0, limit)]]


def test_busiest_from_a_heap_ranks_as_the_full_sort_does() -> None:
    nodes = troubled_views()
    for limit in (0, 1, 5, 27, 40, 10_000):
        got = busiest(nodes, limit)
        assert [(x.host, x.index, x.util_pct) for x in got] == busiest_by_sort(nodes, limit), limit
    top = busiest(nodes, 10_000)
    assert len(top) > 500 and all(0 <= x.util_pct <= 100 for x in top)  # 2**64 - 1 and -1 left out
    # Ties (many cards at 100 %) keep node name, then index order; the card is the one read in full.
    assert all(x.gpu is not None and x.gpu.index == x.index for x in top[:40])


def gpu_rows_plainly(nodes: list[NodeView], needle: str) -> tuple[list[str], list[Any]]:
    """The GPU table's rows as they were first built: one (node, GPU) pair and one key per card."""
    items = [(v, g) for v in nodes if v.snap is not None and v.state != "down" and v.snap.gpus
             for g in v.snap.gpus if not needle or gpu_matches(v, g, needle)]
    return [gpu_key(v.host, g.index) for v, g in items], items


def test_gpu_rows_and_their_sort_values_are_the_plain_build_for_every_filter_and_column() -> None:
    nodes = troubled_views()
    for i, v in enumerate(nodes[::9]):  # some nodes down (listed nowhere), some with no GPU list at all
        v.state = "down" if i % 2 else v.state
    cache: Any = None
    for needle in ("", "gpu0", "h100", "alice", "root", "zz-nobody", "", "gpu01"):
        keys, items, cache = gpu_rows(nodes, needle, cache)
        want_keys, want_items = gpu_rows_plainly(nodes, needle)
        assert keys == want_keys and len(items) == len(want_items), needle
        assert all(a[0] is b[0] and a[1] is b[1] for a, b in zip(items, want_items, strict=True)), needle
        for column in SORT_VALUES:
            got = sort_values(items, column)
            assert got == [sort_value(it, column) for it in items], (needle, column)
            for reverse in (False, True):  # so the table shows the same rows in the same order
                assert sorted_order(got, reverse) == sorted_order([sort_value(it, column) for it in want_items], reverse)
    assert len(gpu_rows(nodes)[0]) > 500 and not gpu_rows(nodes, "zz-nobody")[0]
    # Unchanged cards keep their key objects (the table's same-rows test is then a pointer compare);
    # a node whose cards changed gets new keys.
    keys1, _, cache = gpu_rows(nodes, "", None)
    keys2, _, cache = gpu_rows(nodes, "", cache)
    assert all(a is b for a, b in zip(keys1, keys2, strict=True))
    first = next(v for v in nodes if v.state != "down" and v.snap is not None and v.snap.gpus)
    assert first.snap is not None and first.snap.gpus is not None
    first.snap.gpus = first.snap.gpus[1:]
    keys3, _, cache = gpu_rows(nodes, "", cache)
    assert keys3 == gpu_rows_plainly(nodes, "")[0] and len(keys3) == len(keys2) - 1


class GridApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.grid = HeatGrid(id="heat")

    def compose(self) -> ComposeResult:
        yield self.grid


@pytest.mark.anyio
async def test_heat_grid_repaints_only_the_lines_whose_tiles_changed() -> None:
    nodes = [NodeView(host=f"gpu{i:03d}", state="up", snap=b.tower(f"gpu{i:03d}", (10 + i % 80, 95)))
             for i in range(60)]
    app = GridApp()
    async with app.run_test(size=(120, 40)) as pilot:
        grid = app.grid
        cells = cells_of(nodes)
        grid.show(cells, Palette({}))
        await pilot.pause()
        tw, th, cols, rows = grid.preset
        assert cols * rows >= len(cells) and th >= 2
        text = grid.render().plain
        for c in cells[:: max(1, len(cells) // 10)]:  # every tile names its GPU and says its level in a word
            assert f"{c.host}/{c.index}" in text and level(c)[0] in text
        before = list(grid.lines)
        refreshed: list[Any] = []
        original = grid.refresh

        def counting(*regions: Any, **kw: Any) -> Any:
            refreshed.append(regions)
            return original(*regions, **kw)

        grid.refresh = counting  # type: ignore[method-assign]
        changed = list(cells)
        changed[cols + 1] = changed[cols + 1]._replace(util_pct=None, problem="LOST")  # one tile, 2nd tile row
        grid.show(changed, Palette({}))
        await pilot.pause()
        differ = [y for y, (a, c) in enumerate(zip(before, grid.lines, strict=True)) if a != c]
        gap = 1 if th >= 3 else 0
        assert differ and all(th + gap <= y < 2 * th + gap for y in differ)  # that tile's lines only
        assert len(refreshed) == len(differ) and all(len(r) == 1 and r[0].height == 1 for r in refreshed)
        assert "LOST" in grid.render().plain
        refreshed.clear()
        grid.show(list(changed), Palette({}))  # the same cells again: nothing to repaint
        assert refreshed == []


@pytest.mark.anyio
async def test_gpu_table_refresh_lays_the_screen_out_only_when_the_detail_changes_height(redis_server: Any) -> None:
    b.publish(redis_server.client(), b.demo_cluster())
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="t"), redis_server.client)
    layouts: list[int] = []
    original = Screen._refresh_layout

    def counting(self: Screen[Any], *a: Any, **kw: Any) -> None:
        if isinstance(self, GpusScreen):
            layouts.append(1)
        original(self, *a, **kw)

    Screen._refresh_layout = counting  # type: ignore[method-assign]
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("3")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, GpusScreen)
            detail = str(screen.query_one("#gpu-detail").render())
            assert detail.strip()  # the selected GPU's health is shown
            await pilot.pause()
            layouts.clear()
            for _ in range(3):
                before = app.finished_reads
                app.refresh_now()
                await b.wait_until(pilot, lambda before=before: app.finished_reads > before, "a read")
                await pilot.pause()
            assert layouts == []  # same data, same height: repainted lines only
            assert str(screen.query_one("#gpu-detail").render()) == detail
    finally:
        Screen._refresh_layout = original  # type: ignore[method-assign]


@pytest.mark.anyio
async def test_energy_screen_redraws_its_sections_only_when_the_ledgers_change(redis_server: Any) -> None:
    client = Client.from_url(redis_server.url)
    b.publish(redis_server.client(), [b.node("gpu-01", gpus=[b.gpu(0, 90), b.gpu(1, 0)])])
    write_ledger(client, "gpu-01", b.NOW - 600, [b.gpu_proc(4242, user="alice", mem_gib=6.0)])
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="t"), redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, EnergyScreen)
        await b.wait_until(pilot, lambda: screen.windows is not None, "the ledgers read")
        await pilot.pause()
        updates: list[str] = []
        for widget in screen.query("#energy Static"):
            original = widget.update

            def counting(*a: Any, _id: Any = widget.id, _orig: Any = original, **kw: Any) -> None:
                updates.append(_id)
                _orig(*a, **kw)

            widget.update = counting  # type: ignore[method-assign]
        for _ in range(3):  # cluster reads: the ledgers are the same
            before = app.finished_reads
            app.refresh_now()
            await b.wait_until(pilot, lambda before=before: app.finished_reads > before, "a read")
        assert updates == []
        assert "alice" in text_of(app, "#energy-user")
        windows = screen.windows
        screen.action_reload()  # a ledger read: the figures are drawn again from it
        await b.wait_until(pilot, lambda: screen.windows is not windows, "the ledgers read again")
        await pilot.pause()
        assert "energy-summary" in updates and "energy-user" in updates
        assert "alice" in text_of(app, "#energy-user")


class StaticApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("", id="s")


@pytest.mark.anyio
async def test_steady_update_lays_out_only_when_the_height_may_change() -> None:
    app = StaticApp()
    async with app.run_test(size=(40, 10)) as pilot:
        widget = app.query_one("#s", Static)
        layouts: list[bool] = []
        original = widget.refresh

        def counting(*regions: Any, layout: bool = False, **kw: Any) -> Any:
            layouts.append(layout)
            return original(*regions, layout=layout, **kw)

        widget.refresh = counting  # type: ignore[method-assign]
        shape = steady_update(widget, Content("rx 1 MB/s\ntx 2 MB/s"), None)
        assert layouts[-1] and shape == (2, 40)  # first draw: laid out
        shape = steady_update(widget, Content("rx 9 MB/s\ntx 8 MB/s"), shape)
        assert not layouts[-1]  # new figures, same two lines: repainted only
        shape = steady_update(widget, Content("rx 9 MB/s\ntx 8 MB/s\nbond0 degraded"), shape)
        assert layouts[-1] and shape == (3, 40)  # a third line
        shape = steady_update(widget, Content("x" * 60), shape)
        assert layouts[-1] and shape is None  # a line that may wrap: its height is the layout's to find
        shape = steady_update(widget, Content("y" * 60), shape)
        assert layouts[-1]
        await pilot.pause()
        assert str(widget.render()).startswith("y")


@pytest.mark.anyio
async def test_an_unchanged_alert_feed_read_does_not_redraw_the_screen(redis_server: Any) -> None:
    b.publish(redis_server.client(), b.demo_cluster())
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="t"), redis_server.client)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await b.wait_until(pilot, lambda: app.alert_feed.read is not None, "the alert state read")
        version, read = app.view.version, app.alert_feed.read
        assert read is not None and read.state is None and not read.present  # nothing evaluates alerts here
        app.post_message(AlertFeedRead(dataclasses.replace(read)))  # the same answer 5 s later
        await pilot.pause()
        assert app.view.version == version
        changed = dataclasses.replace(read, text="evaluated by gpu-01 (verified), 1 s ago", present=True)
        app.post_message(AlertFeedRead(changed))
        await pilot.pause()
        assert app.view.version == version + 1 and app.alert_feed.read == changed


@pytest.mark.anyio
async def test_heat_grid_lines_fill_the_new_width_after_a_resize() -> None:
    app = GridApp()
    async with app.run_test(size=(120, 40)) as pilot:
        app.grid.show([], Palette({}))  # "no GPUs reported": the same line at every width
        await pilot.pause()
        assert app.grid.render_line(0).cell_length == app.grid.size.width == 120
        await pilot.resize_terminal(150, 40)
        await pilot.pause()
        grid = app.grid
        assert grid.size.width == 150
        assert all(grid.render_line(y).cell_length == 150 for y in range(grid.size.height))
        assert "no GPUs reported" in grid.render().plain
