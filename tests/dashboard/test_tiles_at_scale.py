"""The node tiles at a size where most of them are off screen (issue 18: 10,000 nodes).

A read compares only the tiles in view; the others let go of what they drew and are drawn from their
node's new data when scrolled to, never shown with the data of an earlier read. The busiest GPUs' quick
path (``max`` in C) ranks as the full sort does with every kind of bad figure in the lists.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App, ComposeResult

from clustertop.dashboard.widgets.busiest import busiest
from clustertop.dashboard.widgets.palette import Palette
from clustertop.dashboard.widgets.tiles import NodeTiles
from clustertop.read.model import NodeView
from clustertop.wire.digest import digest
from tests.dashboard.test_scale_draw import busiest_by_sort, troubled_views
from tests.support import builders as b


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TilesApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.palette = Palette({})
        self.tiles = NodeTiles(id="tiles")

    def compose(self) -> ComposeResult:
        yield self.tiles


def views(n: int, cpu: float, seq: int) -> list[NodeView]:
    out = []
    for i in range(n):
        s = b.tower(f"node-{i:04d}", cpu=cpu, seq=seq)
        out.append(NodeView(host=s.host, state="up", age_s=0.0, digest=digest(s)))
    return out


def text(lines: list[Any]) -> str:
    return "".join(seg.text for line in lines for seg in line)


@pytest.mark.anyio
async def test_off_screen_tiles_are_let_go_and_drawn_from_the_new_read_when_scrolled_to() -> None:
    app = TilesApp()
    async with app.run_test(size=(100, 24)) as pilot:
        tiles = app.tiles
        first = views(300, 40.0, 1)
        tiles.set_nodes(first)
        await pilot.pause()
        top, bottom = tiles._visible_tiles()
        assert top == 0 and 0 < bottom < 300
        assert all(t.lines for t in tiles.tiles[:bottom]) and not tiles.tiles[-1].lines  # drawn as seen
        assert " 40 %" in text(tiles.tiles[0].lines)
        # Scroll to the end (the last tiles drawn), back to the top, and read again: every node's CPU moved.
        tiles.scroll_end(animate=False)
        await pilot.pause()
        assert tiles.tiles[-1].lines and " 40 %" in text(tiles.tiles[-1].lines)
        tiles.scroll_home(animate=False)
        await pilot.pause()
        second = views(300, 87.0, 2)
        changed = tiles.set_nodes(second)
        assert 0 < changed <= bottom  # the tiles in view, not 300
        await pilot.pause()
        assert " 87 %" in text(tiles.tiles[0].lines) and tiles.views is second
        # Off screen: nothing kept of the first read (its lines or its signature) ...
        assert all(not t.lines and not t.sig for t in tiles.tiles[bottom + tiles.columns * 2:])
        # ... and drawn from the second when scrolled to.
        tiles.scroll_end(animate=False)
        await pilot.pause()
        last = text(tiles.tiles[-1].lines)
        assert " 87 %" in last and " 40 %" not in last
        assert id(second[-1].digest) in tiles.tiles[-1].sig
        # A node joining moves every tile: the whole grid again, as before.
        third = views(301, 87.0, 3)
        assert tiles.set_nodes(third) == 301


def test_busiest_quick_path_ranks_as_the_full_sort_with_bad_figures_anywhere_in_a_list() -> None:
    nodes = troubled_views()
    # Bad figures where ``max`` would meet them first or last: bools, None, absurd, negative.
    for i, v in enumerate(nodes):
        d = v.digest
        if d is None or not d.gpu_util_pct:
            continue
        if i % 5 == 0:
            d.gpu_util_pct[0] = True  # type: ignore[call-overload]  # what a hostile digest may hold
        if i % 6 == 1:
            d.gpu_util_pct[-1] = 101
        if i % 9 == 2:
            d.gpu_util_pct = [None] * len(d.gpu_util_pct)
        if i % 13 == 4:
            d.gpu_util_pct = [True, False]  # type: ignore[list-item]
    for limit in (1, 7, 40, 10_000):
        got = busiest(nodes, limit)
        assert [(x.host, x.index, x.util_pct) for x in got] == busiest_by_sort(nodes, limit), limit
